"""SwAV's swapped-prediction loss and its Sinkhorn-Knopp codes (Caron et al., "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", NeurIPS 2020, sec. 3.1; facebookresearch/swav main_swav.py,
`distributed_sinkhorn` and the loss in `train`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sinkhorn", "swav_loss"]


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft codes (N, K) of N samples over K prototypes from their scores (N, K), float32, no gradient.

    The official `distributed_sinkhorn` on one process: Q = exp(scores / epsilon) normalised to sum 1, then
    `iterations` rounds of (every prototype's total -> 1/K, every sample's total -> 1/N), and finally every
    sample's row rescaled to sum 1. Under torchrun call it on the scores of the whole global batch (gathered):
    the official all-reduces exactly these sums. The global maximum is subtracted before the exponential (a
    factor the first normalisation removes; it only avoids overflow for scores far above 1)."""
    if scores.ndim != 2:
        raise ValueError(f"sinkhorn expects scores (N, K), got {tuple(scores.shape)}")
    if epsilon <= 0 or iterations < 0:
        raise ValueError(f"sinkhorn needs epsilon > 0 and iterations >= 0, got {epsilon}, {iterations}")
    s = scores.detach().float() / epsilon
    q = torch.exp(s - s.max())
    n, k = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=0, keepdim=True) * k  # prototypes: equal mass 1/K each
        q /= q.sum(dim=1, keepdim=True) * n  # samples: mass 1/N each
    return q / q.sum(dim=1, keepdim=True)


def swav_loss(scores: list[torch.Tensor], assignments: list[torch.Tensor], temperature: float = 0.1) -> torch.Tensor:
    """Swapped prediction: crop i's codes (for the first len(assignments) crops) are predicted from every other
    crop j's scores, -sum_k a_i[k] log softmax(scores_j / temperature)[k], averaged over samples and over the
    pairs (i, j != i) (main_swav.py: / (n_crops - 1), then / len(crops_for_assign)). Float32, a scalar."""
    if not assignments or len(assignments) > len(scores) or len(scores) < 2:
        raise ValueError(f"swav_loss needs >= 2 crops and 1..n_crops assignments, got {len(scores)} crops and "
                         f"{len(assignments)} assignments")
    log_p = [F.log_softmax(s.float() / temperature, dim=1) for s in scores]
    terms = [-(a.detach().float() * log_p[j]).sum(dim=1).mean()
             for i, a in enumerate(assignments) for j in range(len(scores)) if j != i]
    return torch.stack(terms).mean()
