"""BYOL on single video frames (Grill et al., NeurIPS 2020; official code deepmind-research/byol).

Two augmented views of a frame (the paper's asymmetric recipe, vidssl/data/views.py BYOL_VIEWS); an online
network (backbone -> projector -> predictor) predicts the target network's projection of the other view; the
target (backbone -> projector) is an EMA of the online one with momentum 0.996 -> 1 along a cosine (paper
sec. 3.2). Loss: byol_loss(p1, z2) + byol_loss(p2, z1). Each view goes through the networks in its own pass,
so BatchNorm normalises per view as in the official code; the target runs in train mode (batch statistics)
and keeps its own BN running statistics. Evaluation reads the online backbone.

Data: one frame per item (`data.frame_rate`/`frame_skip` are irrelevant for one frame), the largest square at
a random position along the long side, resized to `data.img_size` (the canvas the views are cut from on the
training device: random resized crops to `crop_size`).
"""
from __future__ import annotations

import dataclasses

import torch

from vidssl.data.views import BYOL_VIEWS, ViewRecipe
from vidssl.losses.byol import byol_loss
from vidssl.methods.base import FrameViewsMethod, decay_groups, embedding_std, register
from vidssl.models.backbones import build_backbone
from vidssl.models.ema import momentum_copy
from vidssl.models.heads import byol_predictor, byol_projector
from vidssl.optim.schedules import cosine_ramp


@register("byol")
class BYOL(FrameViewsMethod):
    ddp_kwargs = {"broadcast_buffers": False}  # BN statistics are not used in training; keep them per rank

    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None, proj_hidden: int = 4096,
                 proj_dim: int = 256, pred_hidden: int = 4096, base_momentum: float = 0.996,
                 final_momentum: float = 1.0, crop_size: int = 224, min_scale: float = 0.08,
                 ema_buffers: str = "own"):
        super().__init__()
        self.backbone = build_backbone(backbone, **(backbone_kwargs or {}))
        self.projector = byol_projector(self.backbone.out_channels, proj_hidden, proj_dim)
        self.predictor = byol_predictor(proj_dim, pred_hidden, proj_dim)
        self.target_backbone = momentum_copy(self.backbone)
        self.target_projector = momentum_copy(self.projector)
        self.base_momentum, self.final_momentum, self.ema_buffers = base_momentum, final_momentum, ema_buffers
        self.views: tuple[ViewRecipe, ...] = tuple(
            dataclasses.replace(v, size=crop_size, scale=(min_scale, 1.0)) for v in BYOL_VIEWS)

    def online(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(self.backbone.forward_global(x)))

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_backbone.forward_global(x))

    def pair_loss(self, views: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """Every view predicts every other view's target; summed over ordered pairs / (views - 1), i.e. the
        symmetrised BYOL loss for two views."""
        p = [self.online(v) for v in views]
        z = [self.target(v) for v in views]
        n = len(views)
        loss = sum(byol_loss(p[i], z[j]) for i in range(n) for j in range(n) if i != j) / (n - 1)
        return loss, {"z_std": embedding_std(z[0])}

    def forward(self, batch: dict) -> dict:
        loss, logs = self.pair_loss(batch["views"])
        return {"loss": loss, **logs}

    def param_groups(self) -> list[dict]:
        return decay_groups(self)

    def schedules(self, max_steps: int) -> dict:
        return {"ema_momentum": lambda s: cosine_ramp(s, max_steps, self.base_momentum, self.final_momentum)}

    def momentum_pairs(self) -> list:
        return [(self.backbone, self.target_backbone), (self.projector, self.target_projector)]
