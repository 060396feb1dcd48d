"""VICReg on single video frames (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022; official code facebookresearch/vicreg main_vicreg.py).

Two views of a frame (the official augmentations.py TrainTransform = BYOL's asymmetric recipe,
vidssl/data/views.py BYOL_VIEWS), one network backbone -> expander (8192-8192-8192: Linear-BN-ReLU twice with
biases, a last Linear without bias, as main_vicreg.py `Projector`) and the loss
25 * invariance + 25 * variance + 1 * covariance (vidssl.losses.vicreg, the official formula). Each view goes
through the network in its own pass. Under torchrun the embeddings are gathered with gradient (the official
FullGatherLayer: vidssl.dist.gather_with_grad) and the variance and covariance terms use the global
batch; here the invariance term does too (the official one is per GPU, and DDP's average over GPUs of the
per-GPU means is the same global mean).

Optimisation (official): LARS, lr 0.2 x batch / 256 (--base-lr), weight decay 1e-6, biases and BatchNorm
parameters without weight decay or LARS adaptation (one lr for all), 10 warm-up epochs then cosine to 0.001 of
the peak, batch 2048, SyncBatchNorm; the paper trains 1000 epochs. Backbone residual blocks start with their
last BN at zero (zero_init_residual=True, the official resnet.py).
"""
from __future__ import annotations

import dataclasses

from vidssl.data.views import BYOL_VIEWS
from vidssl.dist import gather_with_grad
from vidssl.losses.vicreg import vicreg_terms
from vidssl.methods.base import FrameViewsMethod, decay_groups, embedding_std, frame_backbone, register
from vidssl.models.heads import linear_bn_mlp, parse_sizes


@register("vicreg")
class VICReg(FrameViewsMethod):
    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None,
                 expander: str = "8192-8192-8192", sim_weight: float = 25.0, var_weight: float = 25.0,
                 cov_weight: float = 1.0, crop_size: int = 224, min_scale: float = 0.08,
                 zero_init_residual: bool = True):
        super().__init__()
        self.backbone = frame_backbone(backbone, backbone_kwargs, "vicreg", zero_init_residual)
        sizes = parse_sizes(expander, "method.expander")
        self.projector = linear_bn_mlp([self.backbone.out_channels, *sizes], hidden_bias=True)
        self.weights = (sim_weight, var_weight, cov_weight)
        self.views = tuple(dataclasses.replace(v, size=crop_size, scale=(min_scale, 1.0)) for v in BYOL_VIEWS)

    def forward(self, batch: dict) -> dict:
        z1, z2 = (self.projector(self.backbone.forward_global(x)) for x in batch["views"])
        terms = vicreg_terms(gather_with_grad(z1), gather_with_grad(z2))
        loss = sum(w * t for w, t in zip(self.weights, terms))
        inv, var, cov = (t.detach() for t in terms)
        return {"loss": loss, "invariance": inv, "variance": var, "covariance": cov, "z_std": embedding_std(z1)}

    def param_groups(self) -> list[dict]:
        return decay_groups(self)
