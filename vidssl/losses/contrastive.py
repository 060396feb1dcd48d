"""Contrastive (InfoNCE-family) losses: MoCo's queue loss; SimCLR's NT-Xent and MoCo v3's loss join it."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["moco_loss"]


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo's InfoNCE (He et al. 2020, eq. 1; facebookresearch/moco moco/builder.py): for L2-normalised queries
    q (N, D), positive keys k (N, D) and negatives queue (K, D), the cross-entropy of the logits
    [q.k, q.queue^T] / temperature with the positive at index 0, averaged over the N queries. No gradient
    reaches k or the queue. float32 math whatever the input dtype."""
    if q.shape != k.shape or q.shape[1] != queue.shape[1]:
        raise ValueError(f"moco_loss: q {tuple(q.shape)}, k {tuple(k.shape)} and queue {tuple(queue.shape)} "
                         f"must share the embedding size (and q, k the batch)")
    q, k, queue = q.float(), k.detach().float(), queue.detach().float()
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
