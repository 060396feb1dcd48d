"""Barlow Twins' redundancy-reduction loss (Zbontar et al., ICML 2021, eq. 1-2; facebookresearch/barlowtwins
main.py `BarlowTwins.forward`)."""
from __future__ import annotations

import torch

__all__ = ["barlow_twins_loss", "batch_standardize", "off_diagonal"]


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The off-diagonal entries of a square (D, D) matrix as a flat (D * (D - 1),) tensor."""
    d = m.shape[0]
    if m.shape != (d, d):
        raise ValueError(f"off_diagonal needs a square matrix, got {tuple(m.shape)}")
    return m.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


def batch_standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(z - mean) / sqrt(var + eps) per dimension over the batch, biased variance: what the official
    BatchNorm1d(affine=False) does in training mode."""
    mean = z.mean(dim=0)
    var = z.var(dim=0, unbiased=False)
    return (z - mean) / torch.sqrt(var + eps)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051, scale: float = 1.0) -> torch.Tensor:
    """For the (N, D) embeddings of two views: C = bn(z1)^T bn(z2) / N (the cross-correlation of the batch-
    standardised embeddings, BatchNorm without affine, biased variance, eps 1e-5) and
    loss = scale * (sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2).

    Give it the whole global batch (under torchrun: the embeddings gathered with gradient); the official code
    computes C per GPU with SyncBatchNorm statistics, divides by the global batch and all-reduces C, which is
    the same matrix. `scale` is the official `--scale-loss` of the first release (1/32 there; 1 now).
    float32 math whatever the inputs' dtype."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"barlow_twins_loss needs two (N, D) embeddings of the same shape, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError("barlow_twins_loss needs at least 2 samples (batch statistics)")
    n = z1.shape[0]
    c = batch_standardize(z1.float()).T @ batch_standardize(z2.float()) / n
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return scale * (on_diag + lambd * off_diag)
