"""Label propagation through dense features (the CRW evaluation protocol; ajabri/videowalk code/test.py and
code/utils/test_utils.py).

For each frame t the context is frame 0 (with its given labels) plus the `n_context` previous frames (with
their predicted soft labels; indices before 0 are padded with frame 0, as the reference pads the video).
Affinities are cosine similarities; on the short-term frames only keys within `radius` feature cells
(Euclidean distance < radius) count, frame 0 is unrestricted unless `restrict_first`. The `topk` best keys,
jointly over all context locations, are weighted by softmax(similarity / temperature) and their labels summed.

Where the reference computes every query against every key of all 21 frames and then masks, the local frames
are computed here tile by tile against only the window that the radius can reach, so the work per frame drops
from 21 (h w)^2 C to about (h w)^2 C + 20 h w (tile + 2 radius)^2 C multiply-adds, with identical results.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def context_indices(t: int, n_context: int) -> list[int]:
    """Short-term context of frame t: frames t-n_context .. t-1, clamped at 0 (the reference's padding)."""
    return [max(j, 0) for j in range(t - n_context, t)]


def _weights(vals: torch.Tensor, temperature: float, weighting: str) -> torch.Tensor:
    if weighting == "softmax":
        return F.softmax(vals / temperature, dim=-1)
    if weighting == "exp_renorm":  # DINO's form (exp, zero outside the top-k, divide by the sum); no max shift
        w = torch.exp(vals / temperature)
        return w / w.sum(-1, keepdim=True)
    raise ValueError(f"weighting must be 'softmax' or 'exp_renorm', not {weighting!r}")


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-channel min-max over space, (K, h, w)."""
    flat = x.flatten(1)
    lo, hi = flat.min(1, keepdim=True)[0], flat.max(1, keepdim=True)[0]
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(x)


def _radius_offsets(radius: float) -> int:
    return max(int(math.ceil(radius)) - 1, 0)


def _predict_dense(q: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, local_from: int, radius: float | None,
                   topk: int, temperature: float, weighting: str, chunk: int) -> torch.Tensor:
    """Every query against every key. q (C, h, w); keys (F, C, h, w); labels (F, K, h, w); frames >= local_from
    get the radius mask. Returns (K, h, w)."""
    C, h, w = q.shape
    n = keys.shape[0]
    qf = q.flatten(1).t()  # (hw, C)
    kf = keys.flatten(2).permute(1, 0, 2).reshape(C, n * h * w)
    lf = labels.flatten(2).permute(1, 0, 2).reshape(labels.shape[1], n * h * w)
    out = torch.empty(labels.shape[1], h * w, device=q.device, dtype=labels.dtype)
    if radius is not None:
        yy, xx = torch.meshgrid(torch.arange(h, device=q.device), torch.arange(w, device=q.device), indexing="ij")
        pos = torch.stack([yy.flatten(), xx.flatten()], 1).float()
    for s in range(0, h * w, chunk):
        scores = qf[s:s + chunk] @ kf  # (c, n hw)
        if radius is not None and local_from < n:
            far = torch.cdist(pos[s:s + chunk], pos) >= radius  # (c, hw)
            sc = scores.view(-1, n, h * w)
            sc[:, local_from:] = sc[:, local_from:].masked_fill(far[:, None], float("-inf"))
        vals, idx = scores.topk(topk, dim=-1)
        wts = _weights(vals, temperature, weighting)
        out[:, s:s + chunk] = (lf[:, idx] * wts[None]).sum(-1)
    return out.view(-1, h, w)


class _Windows:
    """Tile geometry for the radius-restricted frames. The features (and labels) of each context frame are cut
    once into overlapping (tile + 2R)^2 windows, one per query tile, and reused for every target frame that
    has the frame in its context."""

    def __init__(self, h: int, w: int, radius: float, tile: int, device):
        self.h, self.w, self.S, self.R = h, w, tile, _radius_offsets(radius)
        self.Wk = self.S + 2 * self.R
        self.nty, self.ntx = math.ceil(h / tile), math.ceil(w / tile)
        self.pad = (self.R, self.R + self.ntx * tile - w, self.R, self.R + self.nty * tile - h)
        a, u = torch.arange(self.S, device=device), torch.arange(self.Wk, device=device)
        dy = u[None, :] - self.R - a[:, None]  # offset of window cell u from query cell a, (S, Wk)
        d2 = dy[:, None, :, None] ** 2 + dy[None, :, None, :] ** 2  # (S, S, Wk, Wk)
        near = (d2 < radius ** 2).reshape(self.S ** 2, self.Wk ** 2)
        inside = self.cut(torch.ones(1, h, w, device=device))[..., 0] > 0  # (nty, ntx, Wk^2): not padding
        self.allowed = near[None, None] & inside[:, :, None, :]  # (nty, ntx, S^2, Wk^2)

    def cut(self, x: torch.Tensor) -> torch.Tensor:
        """(D, h, w) -> windows (nty, ntx, Wk^2, D)."""
        D = x.shape[0]
        cols = F.unfold(F.pad(x[None], self.pad), kernel_size=self.Wk, stride=self.S)
        return cols.view(D, self.Wk ** 2, self.nty, self.ntx).permute(2, 3, 1, 0).contiguous()

    def queries(self, q: torch.Tensor) -> torch.Tensor:
        """(C, h, w) -> (nty, ntx, S^2, C)."""
        C, S = q.shape[0], self.S
        qp = F.pad(q, (0, self.ntx * S - self.w, 0, self.nty * S - self.h))
        return qp.view(C, self.nty, S, self.ntx, S).permute(1, 3, 2, 4, 0).reshape(self.nty, self.ntx, S * S, C)

    def uncut(self, pred: torch.Tensor) -> torch.Tensor:
        """(nty, ntx, S^2, K) -> (K, h, w)."""
        S, K = self.S, pred.shape[-1]
        out = pred.view(self.nty, self.ntx, S, S, K).permute(4, 0, 2, 1, 3).reshape(K, self.nty * S, self.ntx * S)
        return out[:, :self.h, :self.w]


def _predict_tiled(q: torch.Tensor, global_keys: torch.Tensor, global_labels: torch.Tensor,
                   local: list[tuple[torch.Tensor, torch.Tensor]], win: _Windows, topk: int, temperature: float,
                   weighting: str) -> torch.Tensor:
    """Global keys (G, C, h, w) unrestricted; `local` = [(feature windows, label windows)] of the restricted
    frames. Top-k is taken per frame first, then over the union (the same set as one joint top-k)."""
    K = global_labels.shape[1] if global_labels.shape[0] else local[0][1].shape[-1]
    C = q.shape[0]
    gk = global_keys.flatten(2).permute(1, 0, 2).reshape(C, -1)  # (C, G hw)
    gl = global_labels.flatten(2).permute(0, 2, 1).reshape(-1, K)  # (G hw, K)
    kk = min(topk, win.Wk ** 2)
    preds = []
    for ty, qrow in enumerate(win.queries(q)):  # qrow (ntx, S^2, C)
        ntx, S2 = qrow.shape[:2]
        vals, labs = [], []
        if gk.shape[1]:
            v, i = (qrow @ gk).topk(min(topk, gk.shape[1]), dim=-1)
            vals.append(v)
            labs.append(gl[i])  # (ntx, S^2, k, K)
        allowed = win.allowed[ty]
        for kwin, lwin in local:
            s = torch.bmm(qrow, kwin[ty].transpose(1, 2)).masked_fill_(~allowed, float("-inf"))
            v, i = s.topk(kk, dim=-1)
            vals.append(v)
            labs.append(lwin[ty].gather(1, i.view(ntx, -1, 1).expand(-1, -1, K)).view(ntx, S2, kk, K))
        v, i = torch.cat(vals, -1).topk(topk, dim=-1)
        wts = _weights(v, temperature, weighting)
        picked = torch.cat(labs, 2).gather(2, i[..., None].expand(-1, -1, -1, K))
        preds.append((picked * wts[..., None]).sum(2))
    return win.uncut(torch.stack(preds))


@torch.no_grad()
def propagate_labels(feats: torch.Tensor, labels0: torch.Tensor, *, n_context: int = 20, radius: float | None = 12,
                     topk: int = 10, temperature: float = 0.05, restrict_first: bool = False,
                     weighting: str = "softmax", minmax_norm: bool = False, tile: int = 8,
                     progress: bool = False) -> torch.Tensor:
    """Propagate first-frame soft labels through a video.

    feats: (T, C, h, w) L2-normalised features; labels0: (K, h, w) soft labels of frame 0 at feature
    resolution. Returns (T, K, h, w) soft labels, frame 0 = labels0. `radius=None` disables the spatial
    restriction. `minmax_norm` rescales each predicted channel to [0, 1] over space (UVC's norm_mask) before
    it is stored and fed back. Runs on feats' device.
    """
    T, C, h, w = feats.shape
    if labels0.shape[-2:] != (h, w):
        raise ValueError(f"labels0 is {tuple(labels0.shape[-2:])} but features are {(h, w)}")
    if topk < 1:
        raise ValueError("topk must be >= 1")
    labels0 = labels0.to(device=feats.device, dtype=torch.float32)
    preds = torch.empty(T, *labels0.shape, device=feats.device, dtype=labels0.dtype)
    preds[0] = labels0
    steps = range(1, T)
    if progress:
        from tqdm import tqdm
        steps = tqdm(steps, desc="propagate", leave=False)
    win = _Windows(h, w, radius, tile, feats.device) if radius is not None and radius > 0 else None
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # frame -> (feature windows, label windows)
    for t in steps:
        ctx = context_indices(t, n_context)
        local_frames = ([0] if restrict_first else []) + ctx
        global_frames = [] if restrict_first else [0]
        q = feats[t].float()
        if win is None:
            frames = global_frames + local_frames
            pred = _predict_dense(q, feats[frames].float(), preds[frames], 0, None, topk, temperature, weighting, 4096)
        else:
            for j in set(local_frames) - cache.keys():
                cache[j] = (win.cut(feats[j].float()), win.cut(preds[j]))
            pred = _predict_tiled(q, feats[global_frames].float(), preds[global_frames],
                                  [cache[j] for j in local_frames], win, topk, temperature, weighting)
            for j in [j for j in cache if j < t + 1 - n_context and not (restrict_first and j == 0)]:
                del cache[j]  # no later frame has it in context
        preds[t] = _minmax(pred) if minmax_norm else pred
    return preds


@torch.no_grad()
def propagate_labels_dense(feats: torch.Tensor, labels0: torch.Tensor, *, n_context: int = 20,
                           radius: float | None = 12, topk: int = 10, temperature: float = 0.05,
                           restrict_first: bool = False, weighting: str = "softmax", chunk: int = 1024) -> torch.Tensor:
    """The same protocol computed the straightforward way the reference does (every query against every key of
    all context frames, then the radius mask). Slow; kept as the yardstick for tests and benchmarks."""
    T = feats.shape[0]
    labels0 = labels0.to(device=feats.device, dtype=torch.float32)
    preds = torch.empty(T, *labels0.shape, device=feats.device)
    preds[0] = labels0
    for t in range(1, T):
        ctx = [0] + context_indices(t, n_context)
        local_from = 0 if restrict_first else 1
        preds[t] = _predict_dense(feats[t].float(), feats[ctx].float(), preds[ctx], local_from, radius, topk,
                                  temperature, weighting, chunk)
    return preds
