"""MoCo v3 on single video frames (Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision
Transformers", ICCV 2021; official code facebookresearch/moco-v3 moco/builder.py, main_moco.py, vits.py).

Two views of a frame with BYOL's asymmetric augmentation (main_moco.py follows it: vidssl/data/views.py
BYOL_VIEWS, crop scale `min_scale`-1). The base encoder is backbone -> projector -> predictor, the momentum
encoder a copy of backbone -> projector whose momentum goes 0.99 -> 1 along a half cosine (`--moco-m-cos`,
main_moco.py `adjust_moco_momentum`). Loss: mocov3_loss(q1, k2) + mocov3_loss(q2, k1)
(vidssl.losses.contrastive; the other keys of the batch are the negatives, x 2 temperature); temperature 1.0 for
ResNets, 0.2 for ViTs (configs/mocov3_vit.yaml). Each view passes alone (BN per view, as builder.py).

Heads (builder.py `_build_mlp`: Linear - BN - ReLU between layers, hidden 4096, output 256):
- ResNet (`MoCo_ResNet`): projector 2 layers ending in a BN without affine, predictor 2 layers without last BN;
- ViT (`MoCo_ViT`): projector 3 layers, predictor 2 layers, both ending in a BN without affine.
`proj_layers` and `pred_last_bn` default to these by backbone kind (the paper's text says 3-layer projectors;
the released ResNet code uses 2). The official Linear layers have no bias; here (vidssl.models.heads.mlp) they
keep one, which does nothing before a BN and adds one bias vector at the end of the ResNet predictor.

Distributed: the official code gathers the keys (no gradient) and offsets each rank's labels by rank x N. Here
every rank gathers the queries with gradient (vidssl.dist.gather_with_grad) and the keys without, and
computes the loss of the whole global batch: the same gradient after DDP's averaging, one code path.

Optimisation (main_moco.py): ResNet-50 LARS, lr 0.3 x batch / 256 (0.6 for 100 epochs), wd 1.5e-6 (1e-6 at
100/300 epochs), biases and norms excluded from decay and adaptation (moco/optimizer.py: ndim <= 1), 10 warm-up
epochs then cosine, `zero_init_residual=True`, SyncBN; ViT AdamW lr 1.5e-4 x batch / 256, wd 0.1 on every
parameter (`exclude_bias_norm: false`), 40 warm-up epochs, `--stop-grad-conv1` (`stop_grad_conv1`: the patch
projection stays at its random init, the paper's "random patch projection").

Deviations: the momentum encoder moves after each optimizer step with this step's momentum (the official code
moves it at the start of the next step with that step's); timm's ViT keeps its learned position embedding and
init (vits.py: fixed 2D sin-cos embedding, xavier init; and 12 heads for ViT-Small: set
`backbone_kwargs.num_heads: 12`). Evaluation reads the base backbone (main_lincls.py loads `base_encoder`).
"""
from __future__ import annotations

import dataclasses

import torch

from vidssl.data.views import BYOL_VIEWS, ViewRecipe
from vidssl.dist import gather, gather_with_grad
from vidssl.losses.contrastive import mocov3_loss
from vidssl.methods.base import FrameViewsMethod, decay_groups, embedding_std, frame_backbone, register
from vidssl.models.ema import momentum_copy
from vidssl.models.heads import mlp
from vidssl.optim.schedules import cosine_ramp


@register("mocov3")
class MoCoV3(FrameViewsMethod):
    ddp_kwargs = {"broadcast_buffers": False}  # BN statistics of the momentum encoder stay per rank

    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None, hidden: int = 4096,
                 dim: int = 256, proj_layers: int | None = None, pred_last_bn: bool | None = None,
                 temperature: float = 1.0, base_momentum: float = 0.99, final_momentum: float = 1.0,
                 crop_size: int = 224, min_scale: float = 0.08, zero_init_residual: bool = True,
                 stop_grad_conv1: bool = False, exclude_bias_norm: bool = True):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"method.temperature must be > 0, got {temperature}")
        if not 0.0 <= base_momentum <= 1.0 or not 0.0 <= final_momentum <= 1.0:
            raise ValueError(f"method.base_momentum and method.final_momentum must lie in [0, 1], got "
                             f"{base_momentum} and {final_momentum}")
        self.backbone = frame_backbone(backbone, backbone_kwargs, "mocov3", zero_init_residual)
        vit = getattr(self.backbone, "is_vit", False)
        if stop_grad_conv1:
            if not vit:
                raise ValueError(f"method.stop_grad_conv1 freezes a ViT's patch projection; "
                                 f"method.backbone={backbone!r} is not a ViT")
            self.backbone.model.patch_embed.proj.requires_grad_(False)
        c = self.backbone.out_channels
        self.projector = mlp(c, hidden, dim, num_layers=proj_layers or (3 if vit else 2), last_bn=True)
        self.predictor = mlp(dim, hidden, dim, num_layers=2, last_bn=vit if pred_last_bn is None else pred_last_bn)
        self.momentum_backbone = momentum_copy(self.backbone)
        self.momentum_projector = momentum_copy(self.projector)
        self.temperature, self.exclude_bias_norm = temperature, exclude_bias_norm
        self.base_momentum, self.final_momentum = base_momentum, final_momentum
        self.views: tuple[ViewRecipe, ...] = tuple(
            dataclasses.replace(v, size=crop_size, scale=(min_scale, 1.0)) for v in BYOL_VIEWS)

    def forward(self, batch: dict) -> dict:
        x1, x2 = batch["views"]
        q1, q2 = (self.predictor(self.projector(self.backbone.forward_global(x))) for x in (x1, x2))
        with torch.no_grad():
            k1, k2 = (self.momentum_projector(self.momentum_backbone.forward_global(x)) for x in (x1, x2))
        t = self.temperature
        loss = (mocov3_loss(gather_with_grad(q1), gather(k2), t) + mocov3_loss(gather_with_grad(q2), gather(k1), t))
        return {"loss": loss, "z_std": embedding_std(k1)}

    def param_groups(self) -> list[dict]:
        if self.exclude_bias_norm:  # LARS (moco/optimizer.py): no decay nor adaptation for ndim <= 1
            return decay_groups(self)
        return super().param_groups()  # AdamW for ViTs: weight decay on every parameter

    def schedules(self, max_steps: int) -> dict:
        return {"ema_momentum": lambda s: cosine_ramp(s, max_steps, self.base_momentum, self.final_momentum)}

    def momentum_pairs(self) -> list:
        return [(self.backbone, self.momentum_backbone), (self.projector, self.momentum_projector)]
