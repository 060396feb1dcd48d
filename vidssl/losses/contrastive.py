"""Contrastive (InfoNCE-family) losses: MoCo's queue loss, SimCLR's NT-Xent and MoCo v3's loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["moco_loss", "info_nce_loss", "mocov3_loss"]


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


def info_nce_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. ICML 2020, eq. 1 and Algorithm 1): the 2N embeddings of z1 (N, D) and
    z2 (N, D) are L2-normalised; each one's positive is the other view of its sample, its negatives the other
    2N - 2 views; cross-entropy of the cosine similarities / temperature, averaged over the 2N anchors (the
    paper's 1/2N sum). The official code (google-research/simclr objective.py `add_contrastive_loss`) sums
    the two directions' means, i.e. twice this value. float32 math whatever the input dtype."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"info_nce_loss: z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} must both be (N, D)")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # a view is never its own negative
    idx = torch.arange(n, device=z.device)
    targets = torch.cat([idx + n, idx])  # view 1 of sample i <-> view 2 of sample i
    return F.cross_entropy(logits, targets)


def mocov3_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo v3's loss (Chen, Xie, He ICCV 2021, Algorithm 1; facebookresearch/moco-v3 moco/builder.py
    `contrastive_loss`): q (N, D) and k (N, D) are L2-normalised, the logits q k^T / temperature have the
    positives on the diagonal (the other keys of the batch are the negatives); cross-entropy averaged over the
    N queries, times 2 * temperature as the official code. No gradient reaches k. float32 math."""
    if q.shape != k.shape or q.ndim != 2:
        raise ValueError(f"mocov3_loss: q {tuple(q.shape)} and k {tuple(k.shape)} must both be (N, D)")
    q, k = F.normalize(q.float(), dim=1), F.normalize(k.detach().float(), dim=1)
    logits = (q @ k.T) / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device)) * (2 * temperature)
