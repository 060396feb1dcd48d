"""VICReg's loss (Bardes, Ponce & LeCun, ICLR 2022, sec. 3; facebookresearch/vicreg main_vicreg.py
`VICReg.forward`): invariance + variance + covariance on the embeddings of two views."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidssl.losses.barlow_twins import off_diagonal

__all__ = ["vicreg_loss", "vicreg_terms"]


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(invariance, variance, covariance) terms, unweighted, for (N, D) embeddings of two views:
    - invariance: mean squared error between z1 and z2 (over N and D);
    - variance: mean_d relu(1 - sqrt(Var(z[:, d]) + 1e-4)) / 2 summed over the two branches (unbiased variance);
    - covariance: sum of squared off-diagonal entries of each branch's covariance (centred, / (N - 1)), / D,
      summed over the two branches.
    The official code's formula exactly. solo-learn's variance term (solo/losses/vicreg.py) lacks the / 2, so
    its value is twice this one at the same weights. float32 math whatever the inputs' dtype."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"vicreg needs two (N, D) embeddings of the same shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    n, d = z1.shape
    if n < 2:
        raise ValueError("vicreg needs at least 2 samples (batch variance)")
    z1, z2 = z1.float(), z2.float()
    invariance = F.mse_loss(z1, z2)
    z1, z2 = z1 - z1.mean(dim=0), z2 - z2.mean(dim=0)
    std1, std2 = torch.sqrt(z1.var(dim=0) + 1e-4), torch.sqrt(z2.var(dim=0) + 1e-4)
    variance = F.relu(1 - std1).mean() / 2 + F.relu(1 - std2).mean() / 2
    cov1, cov2 = z1.T @ z1 / (n - 1), z2.T @ z2 / (n - 1)
    covariance = off_diagonal(cov1).pow(2).sum() / d + off_diagonal(cov2).pow(2).sum() / d
    return invariance, variance, covariance


def vicreg_loss(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0) -> torch.Tensor:
    """sim_weight * invariance + var_weight * variance + cov_weight * covariance (`vicreg_terms`), the
    official coefficients 25 / 25 / 1. Give it the whole global batch (under torchrun the embeddings gathered
    with gradient, as the official FullGatherLayer; its invariance term is per GPU, whose average over GPUs
    is the same mean)."""
    inv, var, cov = vicreg_terms(z1, z2)
    return sim_weight * inv + var_weight * var + cov_weight * cov
