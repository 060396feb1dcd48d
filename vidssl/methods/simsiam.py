"""SimSiam on single video frames (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021;
official code facebookresearch/simsiam simsiam/builder.py and main_simsiam.py).

Two views of a frame with the same augmentation (MoCo v2's, main_simsiam.py: crop 0.2-1, jitter 0.4/0.4/0.4/0.1
with p 0.8, grayscale 0.2, blur p 0.5, flip); one encoder f = backbone -> 3-layer projector
(Linear-BN-ReLU x 2 at the backbone's width, Linear to `dim`, BatchNorm without affine), a predictor h
(Linear(dim, 512)-BN-ReLU-Linear(dim), bottleneck) and the loss
D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 with D = -cos (vidssl.losses.simsiam). No momentum encoder: the stop-
gradient alone prevents collapse. Each view goes through the network in its own pass (BN per view), as the
official code. Optimisation (official): SGD momentum 0.9, lr 0.05 x batch / 256, weight decay 1e-4 on every
parameter, cosine decay; the predictor's lr is fixed (`fix_pred_lr`, the official --fix-pred-lr, used for the
paper's results): a `static_lr` parameter group. The backbone's last BN of each residual block starts at zero
(torchvision's zero_init_residual=True in the official builder).

Deviations: the last projector Linear has no bias (the official one keeps a frozen bias, which the following
BatchNorm removes anyway); the cosine lr decays per step, not per epoch.

This file also holds what the frame methods of this family share (SimSiam, Barlow Twins, VICReg, W-MSE):
`FrameViewsMethod` (one frame per item, one augmented view per recipe), `frame_backbone` and `linear_bn_mlp`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.views import ViewRecipe, augment_views
from vidssl.losses.simsiam import simsiam_loss
from vidssl.methods.base import Method, register
from vidssl.methods.densecl import mocov2_views
from vidssl.models.backbones import build_backbone


def frame_backbone(name: str, kwargs: dict | None, method: str, zero_init_residual: bool = False) -> nn.Module:
    """A 2D backbone for a method that trains on single frames (ValueError naming `method.backbone` for a 3D
    video network). `zero_init_residual`: the last BatchNorm of every residual block starts at zero
    (torchvision's option, used by the official SimSiam / Barlow Twins / VICReg codes)."""
    net = build_backbone(name, **(kwargs or {}))
    if net.is_video:
        raise ValueError(f"method.backbone={name!r} is a 3D video backbone, but {method} trains on single frames: "
                         "use a 2D backbone (e.g. resnet50, resnet18)")
    if zero_init_residual:
        for m in net.modules():
            last_bn = getattr(m, "bn3", None) if hasattr(m, "conv3") else getattr(m, "bn2", None)
            if hasattr(m, "downsample") and isinstance(last_bn, nn.BatchNorm2d):  # torchvision's residual blocks
                nn.init.zeros_(last_bn.weight)
    return net


def linear_bn_mlp(dims: Sequence[int], hidden_bias: bool = False, last_bias: bool = False,
                  last_bn: bool = False) -> nn.Sequential:
    """Linear(dims[i], dims[i+1])-BatchNorm1d-ReLU for every layer but the last, then Linear to dims[-1] (and a
    BatchNorm1d without affine if `last_bn`). The projectors of SimSiam (no biases, last BN), Barlow Twins
    (no biases) and VICReg (hidden biases), built as the official codes do."""
    if len(dims) < 2:
        raise ValueError(f"an MLP needs at least an input and an output size, got {list(dims)}")
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1], bias=hidden_bias), nn.BatchNorm1d(dims[i + 1]),
                   nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=False))
    return nn.Sequential(*layers)


def z_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the std over the batch of the L2-normalised embedding (~0 when collapsed)."""
    return nn.functional.normalize(z.detach().float(), dim=1).std(dim=0).mean()


class FrameViewsMethod(Method):
    """One frame per item (the largest square at a random position along the long side, resized to
    `data.img_size`); on the device, one augmented view per recipe of `self.views`, each (B, 3, s, s)."""

    views: tuple[ViewRecipe, ...]

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("frame", 1, d.img_size, "square", frame_skip=1)])

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        frames = batch["frame"][:, 0]  # (B, H, W, 3)
        return {**batch, "views": [augment_views(frames, r, generator) for r in self.views]}


@register("simsiam")
class SimSiam(FrameViewsMethod):
    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None, dim: int = 2048,
                 pred_dim: int = 512, proj_hidden: int | None = None, fix_pred_lr: bool = True,
                 crop_size: int = 224, min_scale: float = 0.2, zero_init_residual: bool = True):
        super().__init__()
        self.backbone = frame_backbone(backbone, backbone_kwargs, "simsiam", zero_init_residual)
        width = self.backbone.out_channels
        hidden = proj_hidden or width  # official: the backbone's width (2048 for ResNet-50)
        self.projector = linear_bn_mlp([width, hidden, hidden, dim], last_bn=True)
        self.predictor = linear_bn_mlp([dim, pred_dim, dim], last_bias=True)
        self.fix_pred_lr = fix_pred_lr
        self.views = (mocov2_views(crop_size, min_scale),) * 2

    def forward(self, batch: dict) -> dict:
        x1, x2 = batch["views"]
        z1, z2 = self.projector(self.backbone.forward_global(x1)), self.projector(self.backbone.forward_global(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = simsiam_loss(p1, z2) / 2 + simsiam_loss(p2, z1) / 2
        return {"loss": loss, "z_std": z_std(z1)}

    def param_groups(self) -> list[dict]:
        encoder = [*self.backbone.parameters(), *self.projector.parameters()]
        return [{"name": "encoder", "params": [p for p in encoder if p.requires_grad]},
                {"name": "predictor", "params": list(self.predictor.parameters()), "static_lr": self.fix_pred_lr}]
