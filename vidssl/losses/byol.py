"""BYOL's regression loss (Grill et al., NeurIPS 2020, eq. 2): the mean squared error between the
l2-normalised prediction and the l2-normalised target projection, 2 - 2 cos(p, z)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["byol_loss"]


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over samples of 2 - 2 cos(p, sg(z)) for (..., D) predictions `p` and targets `z`; no gradient
    reaches `z`. Computed in float32 whatever the inputs' dtype (bf16/fp16 under autocast); a float32 scalar."""
    if p.shape != z.shape:
        raise ValueError(f"prediction and target shapes differ: {tuple(p.shape)} vs {tuple(z.shape)}")
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.detach().float(), dim=-1)
    return (2.0 - 2.0 * (p * z).sum(dim=-1)).mean()
