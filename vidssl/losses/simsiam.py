"""SimSiam's loss (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021, eq. 1-2;
facebookresearch/simsiam main_simsiam.py: nn.CosineSimilarity on (p, z.detach()))."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["simsiam_loss"]


def simsiam_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over samples of -cos(p, stop_grad(z)) for (N, D) predictions `p` and projections `z`; no gradient
    reaches `z`. The symmetrised SimSiam loss is simsiam_loss(p1, z2) / 2 + simsiam_loss(p2, z1) / 2.
    float32 math whatever the inputs' dtype; a float32 scalar in [-1, 1]."""
    if p.shape != z.shape:
        raise ValueError(f"simsiam_loss: prediction {tuple(p.shape)} and projection {tuple(z.shape)} differ "
                         "(views of unequal batch sizes?)")
    # cosine_similarity: x.y / max(|x| |y|, eps), nn.CosineSimilarity's formula in the official code
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=-1).mean()
