"""Pieces shared by the multi-crop methods (SwAV, DINO): one backbone pass per crop resolution, checks of the
multi-crop settings, and DINO's projection head.

Multi-crop (Caron et al. 2020, sec. 3.2): a few large "global" crops and several small "local" ones of the
same image. Crops of one size are concatenated into one batch so the backbone runs once per resolution
(facebookresearch/swav src/resnet50.py `forward` with its `idx_crops`; facebookresearch/dino utils.py
`MultiCropWrapper`), and the per-crop outputs are concatenated crop-major: rows [c * B, (c + 1) * B) are crop c.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["multicrop_forward", "check_multicrop", "DINOHead"]


def multicrop_forward(fn: Callable[[torch.Tensor], torch.Tensor], crops: Sequence[torch.Tensor]) -> torch.Tensor:
    """`fn` over a list of crop batches (each (B, 3, s, s)), run once per run of consecutive crops of equal size;
    returns the outputs of all crops concatenated in crop order ((n_crops * B, ...))."""
    if not crops:
        raise ValueError("multicrop_forward needs at least one crop batch")
    outs, start = [], 0
    while start < len(crops):
        end = start + 1
        while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
            end += 1
        outs.append(fn(torch.cat(list(crops[start:end])) if end - start > 1 else crops[start]))
        start = end
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def check_multicrop(backbone: nn.Module, backbone_name: str, global_size: int, local_size: int,
                    local_crops: int) -> None:
    """ValueErrors for settings multi-crop cannot run with: a video backbone, local crops larger than global."""
    if getattr(backbone, "is_video", False):
        raise ValueError(f"method.backbone={backbone_name!r} is a 3D video backbone; multi-crop methods embed single "
                         f"frames: use a 2D backbone (resnet18/50, timm:vit_small_patch16_224, ...)")
    if local_crops < 0:
        raise ValueError(f"method.local_crops must be >= 0, got {local_crops}")
    if local_crops and local_size > global_size:
        raise ValueError(f"method.local_size={local_size} is larger than method.global_size={global_size}: local "
                         f"crops must be the small ones")


class DINOHead(nn.Module):
    """DINO's projection head (facebookresearch/dino vision_transformer.py `DINOHead`): an MLP with GELUs
    (in -> hidden -> ... -> bottleneck, `layers` Linear layers, optional BatchNorm), L2 normalisation, then a
    weight-normalised Linear without bias to `out_dim`, its norm fixed to 1 when `norm_last_layer` (weight_g
    frozen). Linear layers start from a truncated normal (std 0.02) and zero biases, as the official.
    `embed(x)` is the L2-normalised bottleneck, `forward(x) = last_layer(embed(x))`."""

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True):
        super().__init__()
        if layers < 1:
            raise ValueError(f"DINOHead needs layers >= 1, got {layers}")
        mods: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(dim, hidden_dim), *([nn.BatchNorm1d(hidden_dim)] if use_bn else []), nn.GELU()]
            dim = hidden_dim
        mods.append(nn.Linear(dim, bottleneck_dim))
        self.mlp = nn.Sequential(*mods)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.last_layer.parametrizations.weight.original0  # the norm of each output row
        with torch.no_grad():
            g.fill_(1.0)
        g.requires_grad_(not norm_last_layer)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(self.embed(x))
