"""SimCLR on single video frames (Chen, Kornblith, Norouzi, Hinton, ICML 2020; official code
google-research/simclr: run.py, model.py, model_util.py `projection_head`, objective.py `add_contrastive_loss`,
data_util.py).

Two views of a frame with SimCLR's augmentation (random resized crop 0.08-1, flip, colour jitter of strength
1.0 = brightness/contrast/saturation 0.8 and hue 0.2 with p 0.8, grayscale p 0.2, Gaussian blur p 0.5 with sigma
0.1-2 and a kernel of 10% of the side; `SIMCLR_VIEW`); both views go through the backbone and the projection
MLP in one pass (the official code concatenates them into one batch, so BatchNorm sees both); loss: NT-Xent
(vidssl.losses.contrastive.info_nce_loss, temperature 0.1). Under torchrun the negatives are the global batch:
every rank gathers both views' projections with gradient and computes the loss of the whole global batch
(the official TPU code gathers with `tpu_cross_replica_concat` and lets each replica score its own anchors,
which gives the same gradient). Evaluation reads the backbone.

Projection head (v1, `num_proj_layers=2`): Linear(C) - BN - ReLU - Linear(128) - BN. Deviations: the Linear
layers keep a bias (vidssl.models.heads.mlp; followed by BN it has no effect) and the last BN has no affine
parameters (the official one keeps its scale: MoCo v3's simplification); colour jitter follows torchvision's
conventions (vidssl/data/views.py) where the official TF code adds a brightness delta. The residual blocks'
last BN scale starts at zero (the official resnet.py `init_zero=True`).

The loss is the paper's mean over the 2N anchors; the official code's is twice that (the sum of two means).
"""
from __future__ import annotations

import dataclasses

import torch

from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.views import SIMCLR_VIEW, augment_views
from vidssl.dist import gather_with_grad
from vidssl.losses.contrastive import info_nce_loss
from vidssl.methods.base import Method, decay_groups, embedding_std, frame_backbone, register
from vidssl.models.heads import mlp


# SimCLR's ImageNet augmentation, colour strength 1.0 (paper appendix A; data_util.py `preprocess_for_train`,
# `color_jitter`, `random_blur` with kernel height // 10): no solarisation.
@register("simclr")
class SimCLR(Method):
    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None,
                 proj_hidden: int | None = None, proj_dim: int = 128, proj_layers: int = 2,
                 temperature: float = 0.1, crop_size: int = 224, min_scale: float = 0.08,
                 zero_init_residual: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"method.temperature must be > 0, got {temperature}")
        if not 0 < min_scale <= 1:
            raise ValueError(f"method.min_scale must lie in (0, 1], got {min_scale}")
        self.backbone = frame_backbone(backbone, backbone_kwargs, "simclr", zero_init_residual)
        c = self.backbone.out_channels
        self.projector = mlp(c, proj_hidden or c, proj_dim, num_layers=proj_layers, batch_norm=True, last_bn=True)
        self.temperature = temperature
        self.view = dataclasses.replace(SIMCLR_VIEW, size=crop_size, scale=(min_scale, 1.0))

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("frame", 1, d.img_size, "square", frame_skip=1)])

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        frames = batch["frame"][:, 0]  # (B, H, W, 3)
        return {**batch, "views": [augment_views(frames, self.view, generator) for _ in range(2)]}

    def forward(self, batch: dict) -> dict:
        v1, v2 = batch["views"]
        z1, z2 = self.projector(self.backbone.forward_global(torch.cat([v1, v2]))).chunk(2)
        loss = info_nce_loss(gather_with_grad(z1), gather_with_grad(z2), self.temperature)
        return {"loss": loss, "z_std": embedding_std(z1)}

    def param_groups(self) -> list[dict]:
        return decay_groups(self)  # the official LARS excludes biases and BN from decay and adaptation
