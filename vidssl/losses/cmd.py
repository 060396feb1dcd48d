"""CMD's contrastive loss (Huang et al., "Self-supervised Video Representation Learning by Context and Motion
Decoupling", CVPR 2021; official code foolwood/DRL Context-Motion-Decoupling/pretrain.py).

Both CMD tasks (context matching: clip vs I-frame; motion prediction: predicted vs encoded motion-vector
features of every space-time position) score L2-normalised queries against a set of keys with a dot product
divided by a temperature (0.1) and a cross-entropy whose target is the query's own key. The key set holds more
rows than the queries (the other samples' keys, the other positions, the negative motion clips): query i's
positive is key `offset + i`, which lets a process score its queries against keys gathered from every rank.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cmd_nce_loss(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.1, offset: int = 0) -> torch.Tensor:
    """Mean over the N queries of -log softmax_j(<q_i, k_j> / temperature)[offset + i]; q (N, D), k (M, D)
    with M >= offset + N, both L2-normalised here. Float32 math whatever the input dtype."""
    if q.ndim != 2 or k.ndim != 2 or q.shape[1] != k.shape[1]:
        raise ValueError(f"cmd_nce_loss needs q (N, D) and k (M, D), got {tuple(q.shape)} and {tuple(k.shape)}")
    if offset < 0 or offset + q.shape[0] > k.shape[0]:
        raise ValueError(f"positives offset {offset} + {q.shape[0]} queries exceed the {k.shape[0]} keys")
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1)
    logits = q @ k.t() / temperature
    labels = torch.arange(q.shape[0], device=q.device) + offset
    return F.cross_entropy(logits, labels)
