"""W-MSE (Ermolov et al., "Whitening for Self-Supervised Representation Learning", ICML 2021, sec. 3-4;
official code htdt/self-supervised methods/whitening.py `Whitening2d` and methods/w_mse.py `WMSE.forward`)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ["whiten", "wmse_loss"]


def whiten(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Cholesky whitening of (..., N, D) samples (batched over leading dims): centre over N, covariance
    C = xc^T xc / (N - 1), shrunk to (1 - eps) C + eps I, L = cholesky(C), output xc L^-T, whose covariance is
    the identity (Whitening2d in training mode, without running statistics). Needs N > D unless eps > 0.
    Always float32 with autocast off (a Cholesky in bf16/fp16 is unusable), whatever the input dtype."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        n, d = x.shape[-2:]
        xc = x - x.mean(dim=-2, keepdim=True)
        cov = xc.transpose(-1, -2) @ xc / (n - 1)
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        chol = torch.linalg.cholesky((1 - eps) * cov + eps * eye)
        # W = L^-1 (solve L W = I); rows z = W xc, i.e. z = xc W^T: solve x L^T = xc from the right instead
        return torch.linalg.solve_triangular(chol.transpose(-1, -2), xc, upper=True, left=False)


def wmse_loss(views: Sequence[torch.Tensor], w_size: Optional[int] = None, w_iter: int = 1, eps: float = 0.0,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """W-MSE for a list of (N, D) embeddings, one per view of the same N samples.

    `w_iter` times: a random permutation of the N samples (from `generator`, on the CPU, the same for every
    view) is cut into N / w_size sub-batches; each view's rows in each sub-batch are whitened separately
    (`whiten`); then every pair of views (i < j: one pair for 2 views, 6 for 4) contributes
    2 - 2 mean cos(z_i, z_j) (the official normalised MSE). The loss is the mean over the w_iter draws and the
    pairs. w_size None = N (one sub-batch). Give it the whole global batch (the official code is single-GPU;
    under torchrun gather the embeddings with gradient and draw the same permutation on every rank).
    float32 math whatever the inputs' dtype."""
    views = list(views)
    if len(views) < 2:
        raise ValueError(f"wmse_loss needs at least 2 views, got {len(views)}")
    if any(v.ndim != 2 or v.shape != views[0].shape for v in views):
        raise ValueError(f"wmse_loss needs (N, D) views of the same shape, got {[tuple(v.shape) for v in views]}")
    n, d = views[0].shape
    w = n if w_size is None else w_size
    if w < 2 or n % w:
        raise ValueError(f"wmse_loss: the batch of {n} is not a multiple of w_size={w} (>= 2)")
    if w <= d and eps == 0:
        raise ValueError(f"wmse_loss: w_size={w} must exceed the embedding size {d} (singular covariance), "
                         "or set eps > 0")
    if w_iter < 1:
        raise ValueError(f"wmse_loss: w_iter must be >= 1, got {w_iter}")
    h = torch.stack(views).float()  # (V, N, D)
    pairs = [(i, j) for i in range(len(views)) for j in range(i + 1, len(views))]
    loss = h.new_zeros(())
    for _ in range(w_iter):
        perm = torch.randperm(n, generator=generator).to(h.device)
        # every view's sub-batches whitened in one batched call; rows stay in permuted order for all views,
        # which leaves the row-wise cosines of a pair unchanged
        z = whiten(h[:, perm].reshape(len(views), n // w, w, d), eps).reshape(len(views), n, d)
        z = F.normalize(z, dim=-1)
        for i, j in pairs:
            loss = loss + 2 - 2 * (z[i] * z[j]).sum(dim=-1).mean()
    return loss / (w_iter * len(pairs))
