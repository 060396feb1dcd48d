"""A point tracker from any encoder, by label propagation (the baseline of the correspondence papers on TAP-Vid).

Each query (t, y, x) becomes a label map on its query frame: a small Gaussian (sigma in feature cells, centred
at the query's sub-cell position, peak 1). The maps are propagated forward through frames t, t+1, ... and, for
queries after frame 0, backward through t, t-1, ..., 0 (the frame order reversed), with the same propagation as
DAVIS (vidssl/eval/propagate.py). The position in each frame is the weighted mean of the map's `decode_topk`
strongest cells (a soft argmax), cell centres in pixels of the frames given.

Occlusion: `cycle` (GMRW's rule, Shrivastava & Owens 2024): the feature at the tracked position of frame s is
matched back to the query frame (top-k softmax over its cells, the protocol's topk and temperature, decoded the
same way); a point is occluded where this forward-backward cycle misses the query by more than
`cycle_threshold` pixels. `peak`: occluded where the propagated map's peak falls below `peak_threshold` (its
query-frame peak is 1). `none`: always visible.

Queries are independent (TAP-Vid's rule: no query sees another's label; propagation is linear per channel),
grouped by query frame and propagated `chunk` at a time, so memory is O(chunk T h w) whatever the number of
queries.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vidssl.eval.propagate import propagate_labels

OCCLUSION_RULES = ("cycle", "peak", "none")


def query_label_maps(cells_xy: torch.Tensor, size: tuple[int, int], sigma: float = 0.5) -> torch.Tensor:
    """(K, h, w) Gaussians (peak 1) centred at `cells_xy` (K, 2), x, y in feature cells (cell i's centre = i);
    sigma <= 0 gives the one-hot nearest cell."""
    h, w = size
    ys = torch.arange(h, dtype=torch.float32, device=cells_xy.device)
    xs = torch.arange(w, dtype=torch.float32, device=cells_xy.device)
    if sigma <= 0:
        cx = cells_xy[:, 0].round().clamp(0, w - 1).long()
        cy = cells_xy[:, 1].round().clamp(0, h - 1).long()
        maps = torch.zeros(len(cells_xy), h, w, device=cells_xy.device)
        maps[torch.arange(len(cells_xy)), cy, cx] = 1.0
        return maps
    dx = (xs[None, :] - cells_xy[:, 0:1]) ** 2  # (K, w)
    dy = (ys[None, :] - cells_xy[:, 1:2]) ** 2  # (K, h)
    return torch.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * sigma ** 2))


def soft_argmax(maps: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """maps (..., h, w) -> (positions (..., 2) x, y in cells: the value-weighted mean of the top-k cells, peak
    values (...))."""
    h, w = maps.shape[-2:]
    flat = maps.flatten(-2).clamp_min(0)
    vals, idx = flat.topk(min(topk, h * w), dim=-1)
    wts = vals / vals.sum(-1, keepdim=True).clamp_min(1e-12)
    x = ((idx % w).float() * wts).sum(-1)
    y = (idx.div(w, rounding_mode="floor").float() * wts).sum(-1)
    return torch.stack([x, y], -1), vals[..., 0]


def _sample_features(feat: torch.Tensor, cells_xy: torch.Tensor) -> torch.Tensor:
    """Bilinear features at cell positions: feat (S, C, h, w), cells_xy (S, K, 2) -> (S, K, C), L2-normalised."""
    h, w = feat.shape[-2:]
    grid = torch.stack([(cells_xy[..., 0] + 0.5) / w * 2 - 1, (cells_xy[..., 1] + 0.5) / h * 2 - 1], -1)
    out = F.grid_sample(feat, grid[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=False)
    return F.normalize(out[..., 0].transpose(1, 2), dim=-1)


def _cycle_back(feats_path: torch.Tensor, query_feat: torch.Tensor, cells_xy: torch.Tensor, topk: int,
                temperature: float, decode_topk: int) -> torch.Tensor:
    """Match the features at the tracked positions back to the query frame. feats_path (S, C, h, w): the frames
    tracked through; query_feat (C, h, w); cells_xy (S, K, 2) tracked positions. Returns (S, K, 2) cells."""
    C, h, w = query_feat.shape
    f = _sample_features(feats_path, cells_xy)  # (S, K, C)
    sim = f @ query_feat.flatten(1)  # (S, K, hw)
    vals, idx = sim.topk(min(topk, h * w), dim=-1)
    back = torch.zeros_like(sim).scatter_(-1, idx, F.softmax(vals / temperature, dim=-1))
    pos, _ = soft_argmax(back.view(*sim.shape[:2], h, w), decode_topk)
    return pos


def _propagation_kwargs(protocol) -> dict:
    if protocol is None:
        return {}
    return dict(protocol.propagation()) if hasattr(protocol, "propagation") else dict(protocol)


@torch.no_grad()
def track_points(feats: torch.Tensor, query_points: np.ndarray, frame_size: tuple[int, int], protocol=None, *,
                 chunk: int = 64, sigma: float = 0.5, decode_topk: int = 4, occlusion: str = "cycle",
                 cycle_threshold: float | None = None, peak_threshold: float = 0.1,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Track query points through a video.

    feats: (T, C, h, w) L2-normalised frame features (vidssl.eval.encoder.frame_features) of frames of size
    `frame_size` (H, W); query_points: (N, 3) t, y, x in pixels of those frames; protocol: a Protocol or the
    keyword arguments of propagate_labels. `cycle_threshold` is in pixels (default: 2 feature cells).
    Returns tracks (N, T, 2) x, y pixels and occluded (N, T) bool; each query is visible at its own frame."""
    if occlusion not in OCCLUSION_RULES:
        raise ValueError(f"occlusion must be one of {OCCLUSION_RULES}, not {occlusion!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    query_points = np.asarray(query_points, np.float64).reshape(-1, 3)
    T, C, h, w = feats.shape
    H, W = frame_size
    N = len(query_points)
    qt = np.round(query_points[:, 0]).astype(np.int64)
    if N and (qt.min() < 0 or qt.max() >= T):
        raise ValueError(f"query frames must lie in 0..{T - 1}, got {qt.min()}..{qt.max()}")
    prop = _propagation_kwargs(protocol)
    topk, temperature = prop.get("topk", 10), prop.get("temperature", 0.05)
    scale = torch.tensor([w / W, h / H], dtype=torch.float32, device=feats.device)  # pixels -> cells (x, y)
    thr = 2.0 * W / w if cycle_threshold is None else cycle_threshold
    tracks = np.zeros((N, T, 2), np.float32)
    occluded = np.zeros((N, T), bool)
    # (query frame, chunk of query ids) work items; queries at the same frame share their propagation
    items = [(int(q), ids[s:s + chunk]) for q in np.unique(qt) for ids in [np.flatnonzero(qt == q)]
             for s in range(0, len(ids), chunk)]
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="queries", unit="chunk", leave=False)
    for q, ids in items:
        xy_px = torch.tensor(query_points[ids][:, [2, 1]], dtype=torch.float32, device=feats.device)
        cells = xy_px * scale - 0.5  # cell i's centre is pixel (i + 0.5) * W / w
        labels0 = query_label_maps(cells, (h, w), sigma)
        for order in (torch.arange(q, T), torch.arange(q, -1, -1)):  # forward, then backward (reversed frames)
            if len(order) < 2:
                continue
            order = order.to(feats.device)
            sub = feats[order]
            maps = propagate_labels(sub, labels0, **prop)[1:]  # (S, K, h, w), frames order[1:]
            pos, peak = soft_argmax(maps, decode_topk)  # (S, K, 2) cells
            px = (pos + 0.5) / scale
            frames = order[1:].cpu().numpy()
            tracks[ids[:, None], frames[None, :]] = px.transpose(0, 1).cpu().numpy()
            if occlusion == "cycle":
                back = _cycle_back(sub[1:].float(), sub[0].float(), pos, topk, temperature, decode_topk)
                err = ((back + 0.5) / scale - xy_px[None]).norm(dim=-1)  # (S, K) pixels
                occluded[ids[:, None], frames[None, :]] = (err > thr).t().cpu().numpy()
            elif occlusion == "peak":
                occluded[ids[:, None], frames[None, :]] = (peak < peak_threshold).t().cpu().numpy()
        tracks[ids, q] = query_points[ids][:, [2, 1]]
        occluded[ids, q] = False
    return tracks, occluded
