"""Dense self-supervised losses: DenseCL's dense contrastive loss (Wang et al., "Dense Contrastive Learning for
Self-Supervised Visual Pre-Training", CVPR 2021; WXinlong/DenseCL openselfsup/models/densecl.py).

DenseCL's dense loss is split in two pure steps: `match_locations` (which key location is each query
location's positive: the highest cosine similarity of the *backbone* features, argmax) and the MoCo InfoNCE
of every query location against its matched key location and the dense queue (`densecl_dense_loss`, which
calls vidssl.losses.contrastive.moco_loss on the N * S query locations). SCRL's box loss is BYOL's regression
loss on matched box embeddings (vidssl.losses.byol.byol_loss); its box geometry lives in vidssl/methods/scrl.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidssl.losses.contrastive import moco_loss

__all__ = ["match_locations", "densecl_dense_loss"]


def _flat(x: torch.Tensor, what: str) -> torch.Tensor:
    """(N, C, h, w) or (N, C, S) -> (N, C, S)."""
    if x.ndim == 4:
        return x.flatten(2)
    if x.ndim != 3:
        raise ValueError(f"{what}: expected (N, C, h, w) or (N, C, S), got {tuple(x.shape)}")
    return x


@torch.no_grad()
def match_locations(q_feat: torch.Tensor, k_feat: torch.Tensor) -> torch.Tensor:
    """For every query location, the index of the key location with the highest cosine similarity.

    q_feat (N, C, Sq) or (N, C, h, w) and k_feat (N, C, Sk) or (N, C, h', w') -> int64 (N, Sq) indices into
    the Sk flattened key locations (row-major). DenseCL matches on the backbone features, not the projected
    ones (densecl.py: `backbone_sim_matrix.max(dim=2)[1]`). float32 math; no gradient."""
    q = F.normalize(_flat(q_feat, "match_locations q_feat").float(), dim=1)
    k = F.normalize(_flat(k_feat, "match_locations k_feat").float(), dim=1)
    if q.shape[:2] != k.shape[:2]:
        raise ValueError(f"match_locations: q {tuple(q.shape)} and k {tuple(k.shape)} differ in batch or channels")
    return torch.bmm(q.transpose(1, 2), k).argmax(dim=2)


def densecl_dense_loss(q_dense: torch.Tensor, k_dense: torch.Tensor, q_backbone: torch.Tensor,
                       k_backbone: torch.Tensor, dense_queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """DenseCL's dense InfoNCE, averaged over all N * Sq query locations.

    q_dense (N, D, Sq) / k_dense (N, D, Sk): the dense projections (the query's gets the gradient; the keys
    come from the momentum encoder); q_backbone / k_backbone (N, C, Sq / Sk): the backbone features that pick
    each query location's positive (`match_locations`); dense_queue (K, D): the negatives (pooled dense keys of
    past batches). Projections are L2-normalised here; 4-D (N, ., h, w) maps are accepted. No gradient reaches
    the keys, the matching or the queue; float32 math whatever the input dtype."""
    q = F.normalize(_flat(q_dense, "densecl_dense_loss q_dense").float(), dim=1)
    k = F.normalize(_flat(k_dense, "densecl_dense_loss k_dense").detach().float(), dim=1)
    index = match_locations(q_backbone, k_backbone)  # (N, Sq)
    if index.shape != (q.shape[0], q.shape[2]) or k.shape[2] != _flat(k_backbone, "k_backbone").shape[2]:
        raise ValueError(f"densecl_dense_loss: projections q {tuple(q.shape)}, k {tuple(k.shape)} and backbone "
                         f"maps {tuple(q_backbone.shape)}, {tuple(k_backbone.shape)} must share batch and locations")
    positives = torch.gather(k, 2, index[:, None, :].expand(-1, k.shape[1], -1))  # (N, D, Sq)
    flat = lambda x: x.transpose(1, 2).reshape(-1, x.shape[1])  # (N * Sq, D)
    return moco_loss(flat(q), flat(positives), dense_queue, temperature)
