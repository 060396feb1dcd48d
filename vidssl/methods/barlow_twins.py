"""Barlow Twins on single video frames (Zbontar, Jing, Misra, LeCun & Deny, "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", ICML 2021; official code facebookresearch/barlowtwins main.py).

Two views of a frame (BYOL's asymmetric recipe, which the official `Transform` repeats exactly:
vidssl/data/views.py BYOL_VIEWS), one network backbone -> projector (8192-8192-8192: Linear-BN-ReLU twice and
a last Linear, no biases on the Linear layers, as main.py) and the loss on the cross-correlation of the two
batch-standardised embeddings (vidssl.losses.barlow_twins, lambda 0.0051). Each view goes through the network
in its own pass, as the official code.

Under torchrun the embeddings are gathered with gradient and every rank computes the loss on the global batch.
The official code instead computes C = bn(z1)^T bn(z2) / batch per GPU (SyncBatchNorm, so global statistics)
and all-reduces C: the same matrix, hence the same loss and gradients.

Optimisation (official): LARS with two parameter groups, weights at lr 0.2 and biases + BatchNorm parameters
at 0.0048 (x batch / 256), the latter without weight decay or LARS adaptation (`bias_lr_scale` = 0.0048 / 0.2),
weight decay 1.5e-6 (paper; main.py's default is 1e-6), 10 warm-up epochs then cosine to 0.001 of the peak,
batch 2048, 1000 epochs, SyncBatchNorm. Backbone residual blocks start with their last BN at zero
(zero_init_residual=True). `scale` is the first release's --scale-loss (1/32 there, removed later: 1).
"""
from __future__ import annotations

import dataclasses

from vidssl.data.views import BYOL_VIEWS
from vidssl.dist import gather_with_grad
from vidssl.losses.barlow_twins import barlow_twins_loss
from vidssl.methods.base import FrameViewsMethod, decay_groups, embedding_std, frame_backbone, register
from vidssl.models.heads import linear_bn_mlp, parse_sizes


@register("barlow_twins")
class BarlowTwins(FrameViewsMethod):
    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None,
                 projector: str = "8192-8192-8192", lambd: float = 0.0051, scale: float = 1.0,
                 bias_lr_scale: float = 0.0048 / 0.2, crop_size: int = 224, min_scale: float = 0.08,
                 zero_init_residual: bool = True):
        super().__init__()
        self.backbone = frame_backbone(backbone, backbone_kwargs, "barlow_twins", zero_init_residual)
        sizes = parse_sizes(projector, "method.projector")
        self.projector = linear_bn_mlp([self.backbone.out_channels, *sizes])
        self.lambd, self.scale, self.bias_lr_scale = lambd, scale, bias_lr_scale
        self.views = tuple(dataclasses.replace(v, size=crop_size, scale=(min_scale, 1.0)) for v in BYOL_VIEWS)

    def forward(self, batch: dict) -> dict:
        z1, z2 = (self.projector(self.backbone.forward_global(x)) for x in batch["views"])
        loss = barlow_twins_loss(gather_with_grad(z1), gather_with_grad(z2), self.lambd, self.scale)
        return {"loss": loss, "z_std": embedding_std(z1)}

    def param_groups(self) -> list[dict]:
        weights, biases = decay_groups(self)
        return [weights, {**biases, "lr_scale": self.bias_lr_scale}]
