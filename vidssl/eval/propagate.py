"""Label propagation through dense features (the CRW evaluation protocol; ajabri/videowalk code/test.py and
code/utils/test_utils.py).

For each frame t the context is frame 0 (with its given labels) plus the `n_context` previous frames (with
their predicted soft labels; by default indices before 0 are padded with frame 0, as the reference pads the
video; `context_pad` offers the other references' rules, see context_indices). Affinities are cosine
similarities; on the short-term frames only keys within `radius` feature cells count, frame 0 is unrestricted
unless `restrict_first`. `radius_shape` "circle": Euclidean distance < radius (CRW, ajabri/videowalk
code/utils/__init__.py MaskedAttention); "square": |dy| <= radius and |dx| <= radius (DINO's
`size_mask_neighborhood`, facebookresearch/dino eval_video_segmentation.py restrict_neighborhood; Spa-then-Temp's
square `neighbor_range` window of side 2 radius + 1, vcl/models/common/affinity_utils.py spatial_neighbor).
The `topk` best keys, jointly over all context locations, are weighted by softmax(similarity / temperature)
and their labels summed.

Where the reference computes every query against every key of all 21 frames and then masks, here the
short-term frames are computed tile by tile against only the window the radius can reach, so the work per frame
drops from 21 (h w)^2 C to about (h w)^2 C + 20 h w (tile + 2 radius)^2 C multiply-adds, with identical results.
As the affinities do not depend on the labels, all frames' top-k keys are found first (each key window is
multiplied once against every target frame that has it in context, one GEMM), then the labels are propagated.
Memory is bounded by `budget_mb` per tile plus O(T h w topk) for the kept keys.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CONTEXT_PADS = ("first", "none", "after_first")


def context_indices(t: int, n_context: int, context_pad: str = "first") -> list[int]:
    """Short-term context of frame t, frames t-n_context .. t-1. Where those start before the video:
    "first" clamps them to 0 (copies of frame 0: CRW pads the video with them, ajabri/videowalk
    code/data/vos.py); "none" leaves them out, frame 0 stays once (Spa-then-Temp vcl/models/trackers/
    vanilla_tracker.py key_start = max(0, t - precede_frames)); "after_first" leaves frame 0 out too, as it is
    the first frame already (DINO's queue of predicted frames, facebookresearch/dino eval_video_segmentation.py)."""
    if context_pad == "first":
        return [max(j, 0) for j in range(t - n_context, t)]
    if context_pad not in CONTEXT_PADS:
        raise ValueError(f"context_pad must be one of {CONTEXT_PADS}, not {context_pad!r}")
    return [j for j in range(t - n_context, t) if j >= (context_pad == "after_first")]


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


SHAPES = ("circle", "square")


def _radius_offsets(radius: float, shape: str = "circle") -> int:
    """The largest |offset| along one axis that the neighbourhood reaches."""
    if shape == "square":
        return max(int(math.floor(radius)), 0)
    return max(int(math.ceil(radius)) - 1, 0)


def _within(dy: torch.Tensor, dx: torch.Tensor, radius: float, shape: str) -> torch.Tensor:
    """Which offsets (dy, dx) lie in the neighbourhood."""
    if shape == "circle":
        return dy ** 2 + dx ** 2 < radius ** 2
    if shape == "square":
        return (dy.abs() <= radius) & (dx.abs() <= radius)
    raise ValueError(f"radius_shape must be one of {SHAPES}, not {shape!r}")


def _predict_dense(q: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, local_from: int, radius: float | None,
                   topk: int, temperature: float, weighting: str, chunk: int, shape: str = "circle") -> torch.Tensor:
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
            d = pos[s:s + chunk, None, :] - pos[None, :, :]  # (c, hw, 2)
            far = ~_within(d[..., 0], d[..., 1], radius, shape)  # (c, hw)
            sc = scores.view(-1, n, h * w)
            sc[:, local_from:] = sc[:, local_from:].masked_fill(far[:, None], float("-inf"))
        vals, idx = scores.topk(min(topk, scores.shape[-1]), dim=-1)
        wts = _weights(vals, temperature, weighting)
        out[:, s:s + chunk] = (lf[:, idx] * wts[None]).sum(-1)
    return out.view(-1, h, w)


class _Tiles:
    """Square query tiles (`tile` x `tile` cells) and, for each, the window of key cells that the radius can
    reach ((tile + 2R)^2 cells, R = ceil(radius) - 1), with the flat (h w) position of every cell."""

    def __init__(self, h: int, w: int, radius: float, tile: int, device, shape: str = "circle"):
        S, R = tile, _radius_offsets(radius, shape)
        self.h, self.w, self.S, self.R, self.Wk = h, w, S, R, S + 2 * R
        self.origins = [(y, x) for y in range(0, h, S) for x in range(0, w, S)]
        self.n = len(self.origins)
        a, u = torch.arange(S, device=device), torch.arange(self.Wk, device=device)
        d = u[None, :] - R - a[:, None]  # offset of window cell u from query cell a, (S, Wk)
        self.near = _within(d[:, None, :, None], d[None, :, None, :], radius, shape).reshape(S * S, -1)
        self._a, self._u = a, u

    def _cells(self, i: int, offsets: torch.Tensor):
        y0, x0 = self.origins[i]
        ys, xs = y0 + offsets, x0 + offsets
        ok = ((ys >= 0) & (ys < self.h))[:, None] & ((xs >= 0) & (xs < self.w))[None, :]
        pos = ys.clamp(0, self.h - 1)[:, None] * self.w + xs.clamp(0, self.w - 1)[None, :]
        return pos.flatten(), ok.flatten()

    def query_cells(self, i: int):
        """Flat positions (clamped) and validity of tile i's S^2 query cells."""
        return self._cells(i, self._a)

    def key_cells(self, i: int):
        """Flat positions (clamped) of tile i's Wk^2 window cells, and which keys each query may use."""
        pos, ok = self._cells(i, self._u - self.R)
        return pos, self.near & ok[None, :]

    def cut(self, x: torch.Tensor, i: int, size: int, shift: int) -> torch.Tensor:
        """x (T, C, h, w) -> the (T, C, size^2) block of tile i starting `shift` cells above/left of its
        origin, zeros outside the map (strided copies, no gather)."""
        y0, x0 = self.origins[i][0] - shift, self.origins[i][1] - shift
        out = x.new_zeros(x.shape[0], x.shape[1], size, size)
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + size, self.h), min(x0 + size, self.w)
        out[:, :, ya - y0:yb - y0, xa - x0:xb - x0] = x[:, :, ya:yb, xa:xb]
        return out.flatten(2)


def _first_frame_topk(flat: torch.Tensor, topk: int, workspace: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every frame's queries against all of frame 0 (unrestricted): top-k (values, positions), (T, hw, k);
    frame 0's rows are left unset."""
    T, C, hw = flat.shape
    k = min(topk, hw)
    vals = torch.empty(T, hw, k, device=flat.device)
    pos = torch.empty(T, hw, k, device=flat.device, dtype=torch.long)
    rows = max(1, workspace.numel() // hw)
    for t in range(1, T):
        for r in range(0, hw, rows):
            q = flat[t, :, r:r + rows].t()
            scores = torch.mm(q, flat[0], out=workspace[:len(q) * hw].view(len(q), hw))
            vals[t, r:r + rows], pos[t, r:r + rows] = scores.topk(k, dim=-1)
    return vals, pos


def _tile_affinities(q: torch.Tensor, windows: torch.Tensor, first: tuple[torch.Tensor, torch.Tensor] | None,
                     blocked: torch.Tensor, key_pos: torch.Tensor, hw: int, n_context: int, topk: int,
                     workspace: torch.Tensor, context_pad: str = "first") -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k keys of every target frame for the queries of one tile.

    q (T, S^2, C): the tile's queries in every frame; windows (T, C, Wk^2): its key window in every frame;
    first: the queries' top-k (values, positions) in frame 0 unrestricted, (T, S^2, k), or None when frame 0
    is radius-restricted too. For a block of target frames, each query gets one score row [frame 0's top-k |
    frame 0's window if restricted | n_context window slots]; context frame j of target t sits in slot
    j mod n_context, so each key frame is multiplied once against all the targets that have it in context
    (one GEMM written in place), and one top-k per row covers the whole context. Returns (values, key ids),
    (T, S^2, k), key id = frame * hw + position; frame 0's rows are left unset. `workspace` (a flat float
    buffer, reused so that large blocks are not allocated and faulted in again for every tile) bounds the
    number of target frames per block.
    """
    T, S2, C = q.shape
    Wk2 = windows.shape[-1]
    G = 0 if first is None else first[0].shape[-1]
    first_local = int(first is None)
    off = G + first_local * Wk2  # first ring column
    L = off + n_context * Wk2
    k = min(topk, L)
    vals = torch.empty(T, S2, k, device=q.device)
    ids = torch.empty(T, S2, k, device=q.device, dtype=torch.long)
    block = max(1, min(T - 1, workspace.numel() // (S2 * L)))
    for a in range(1, T, block):
        b = min(a + block, T)
        qa = q[a:b].reshape(-1, C)
        scores = workspace[:len(qa) * L].view(len(qa), L)
        if G:
            scores[:, :G] = first[0][a:b].reshape(-1, G)
        if first_local:
            torch.mm(qa, windows[0], out=scores[:, G:off])
        first_real = int(context_pad == "after_first")  # the first key frame with a context slot of its own
        for j in range(max(a - n_context, first_real), b - 1):  # key frame j serves targets j+1 .. j+n, slot j mod n
            t0, t1 = max(a, j + 1), min(b, j + n_context + 1)
            if t1 > t0:
                c = off + (j % n_context) * Wk2
                torch.mm(q[t0:t1].reshape(-1, C), windows[j], out=scores[(t0 - a) * S2:(t1 - a) * S2, c:c + Wk2])
        for j in range(max(a - n_context, 1 - n_context), first_real):  # slots before the first real key frame
            t0, t1 = a, min(b, j + n_context + 1)
            if t1 > t0:
                rows, c = slice((t0 - a) * S2, (t1 - a) * S2), off + (j % n_context) * Wk2
                if context_pad == "first" and j < 0:  # copies of frame 0
                    scores[rows, c:c + Wk2] = scores[rows, off:off + Wk2]
                else:  # no key there (weight 0 if a top-k must reach it)
                    scores[rows, c:c + Wk2] = float("-inf")
        scores[:, G:].view(b - a, S2, -1, Wk2).masked_fill_(blocked[:, None], float("-inf"))
        v, col = scores.view(b - a, S2, L).topk(k, dim=-1)
        slot, cell = (col - G).div(Wk2, rounding_mode="floor"), (col - G).remainder(Wk2)
        ring = slot - first_local
        t = torch.arange(a, b, device=q.device)[:, None, None]
        frame = (t - n_context + (ring - t + n_context).remainder(max(n_context, 1))).clamp_min(0)
        frame = torch.where(ring < 0, 0, frame)  # frame 0's own window (first_local)
        local_ids = frame * hw + key_pos[cell.clamp_min(0)]
        ids[a:b] = torch.where(col < G, first[1][a:b].gather(-1, col.clamp(max=G - 1)), local_ids) if G else local_ids
        vals[a:b] = v
    return vals, ids


@torch.no_grad()
def propagate_labels(feats: torch.Tensor, labels0: torch.Tensor, *, n_context: int = 20, radius: float | None = 12,
                     topk: int = 10, temperature: float = 0.05, restrict_first: bool = False,
                     weighting: str = "softmax", minmax_norm: bool = False, radius_shape: str = "circle",
                     context_pad: str = "first", output_minmax: bool = False, tile: int | None = None,
                     budget_mb: float | None = None, progress: bool = False) -> torch.Tensor:
    """Propagate first-frame soft labels through a video.

    feats: (T, C, h, w) L2-normalised features; labels0: (K, h, w) soft labels of frame 0 at feature
    resolution. Returns (T, K, h, w) soft labels, frame 0 = labels0. `radius=None` disables the spatial
    restriction. `minmax_norm` rescales each predicted channel to [0, 1] over space (UVC's norm_mask) before
    it is stored and fed back; `output_minmax` does the same to the returned maps only (see _output_minmax).
    `radius_shape` and `context_pad`: see the module docstring and context_indices. Runs on feats' device;
    `budget_mb` bounds one tile's score buffer (default 32 MB on the CPU, 1 GB on a GPU). `tile` is the side of
    the square query tiles (the results do not depend on it): 5 on the CPU (the fastest measured), 16 on a GPU,
    where small tiles would be launch-bound (a 49-frame 480p video takes ~133k PyTorch ops with 5x5 tiles, ~19k
    with 16x16 tiles, for twice the
    multiply-adds); the GPU choice is not yet timed on a GPU.
    """
    T, C, h, w = feats.shape
    if labels0.shape[-2:] != (h, w):
        raise ValueError(f"labels0 is {tuple(labels0.shape[-2:])} but features are {(h, w)}")
    if topk < 1:
        raise ValueError("topk must be >= 1")
    if radius_shape not in SHAPES:
        raise ValueError(f"radius_shape must be one of {SHAPES}, not {radius_shape!r}")
    context_indices(1, 1, context_pad)  # checks the name
    labels0 = labels0.to(device=feats.device, dtype=torch.float32)
    if radius is None or radius <= 0:
        preds = _propagate_unrestricted(feats, labels0, n_context, topk, temperature, weighting, minmax_norm,
                                        context_pad)
        return _output_minmax(preds) if output_minmax else preds
    # The affinities do not depend on the labels: find every frame's top-k keys first, tile by tile, then
    # propagate the labels frame by frame (the reference also computes all affinities first).
    hw, K = h * w, labels0.shape[0]
    maps = feats.float().contiguous()  # (T, C, h, w); encoders may hand over channels-last maps
    flat = maps.flatten(2)  # (T, C, hw)
    tile = tile or (16 if feats.is_cuda else 5)
    tiles = _Tiles(h, w, radius, tile, feats.device, radius_shape)
    budget = int((budget_mb or (1024 if feats.is_cuda else 32)) * 2 ** 20)
    k = min(topk, (0 if restrict_first else hw) + (n_context + restrict_first) * tiles.Wk ** 2)
    row = (topk + (n_context + 1) * tiles.Wk ** 2) * tile ** 2  # the most one target frame of a tile needs
    workspace = torch.empty(max(budget // 4, hw, row), device=feats.device)  # reused: no page faults per block
    first = None if restrict_first else _first_frame_topk(flat, topk, workspace)
    weights = torch.empty(T, hw, k, device=feats.device)
    ids = torch.empty(T, hw, k, device=feats.device, dtype=torch.long)
    order = range(tiles.n)
    if progress:
        from tqdm import tqdm
        order = tqdm(order, desc="affinities", unit="tile", leave=False)
    for i in order:
        q = tiles.cut(maps, i, tiles.S, 0).transpose(1, 2).contiguous()  # (T, S^2, C)
        windows = tiles.cut(maps, i, tiles.Wk, tiles.R)  # (T, C, Wk^2)
        key_pos, allowed = tiles.key_cells(i)
        query_pos, keep = tiles.query_cells(i)
        v, j = _tile_affinities(q, windows, first and (first[0][:, query_pos], first[1][:, query_pos]), ~allowed,
                                key_pos, hw, n_context, topk, workspace, context_pad)
        weights[1:, query_pos[keep]] = _weights(v[1:, keep], temperature, weighting)
        ids[1:, query_pos[keep]] = j[1:, keep]
    bank = torch.empty(T * hw, K, device=feats.device)  # labels of every (frame, position)
    bank[:hw] = labels0.flatten(1).t()
    for t in range(1, T):
        pred = torch.einsum("pkc,pk->pc", bank[ids[t]], weights[t])
        bank[t * hw:(t + 1) * hw] = _minmax(pred.t().reshape(K, h, w)).flatten(1).t() if minmax_norm else pred
    preds = bank.view(T, h, w, K).permute(0, 3, 1, 2).contiguous()
    return _output_minmax(preds) if output_minmax else preds


def _output_minmax(preds: torch.Tensor) -> torch.Tensor:
    """Per-frame, per-channel min-max over space of the returned maps (frame 0 and channels whose maximum is 0
    left as they are), after propagation: DINO's norm_mask and Spa-then-Temp's output normalisation, which
    neither feeds back. They normalise after upsampling to the frame; here at feature resolution (bilinear
    upsampling commutes with the per-channel affine map, only the extremes may differ slightly)."""
    out = preds.clone()
    flat = out[1:].flatten(2)  # (T-1, K, hw)
    lo, hi = flat.min(-1, keepdim=True)[0], flat.max(-1, keepdim=True)[0]
    flat.copy_(torch.where(hi > 0, (flat - lo) / (hi - lo).clamp_min(1e-12), flat))
    return out


def _propagate_unrestricted(feats, labels0, n_context, topk, temperature, weighting, minmax_norm,
                            context_pad="first") -> torch.Tensor:
    T = feats.shape[0]
    preds = torch.empty(T, *labels0.shape, device=feats.device)
    preds[0] = labels0
    for t in range(1, T):
        frames = [0] + context_indices(t, n_context, context_pad)
        pred = _predict_dense(feats[t].float(), feats[frames].float(), preds[frames], 0, None, topk, temperature,
                              weighting, 4096)
        preds[t] = _minmax(pred) if minmax_norm else pred
    return preds


@torch.no_grad()
def propagate_labels_dense(feats: torch.Tensor, labels0: torch.Tensor, *, n_context: int = 20,
                           radius: float | None = 12, topk: int = 10, temperature: float = 0.05,
                           restrict_first: bool = False, weighting: str = "softmax", radius_shape: str = "circle",
                           context_pad: str = "first", chunk: int = 1024) -> torch.Tensor:
    """The same protocol computed the straightforward way the reference does (every query against every key of
    all context frames, then the radius mask). Slow; kept as the yardstick for tests and benchmarks."""
    T = feats.shape[0]
    labels0 = labels0.to(device=feats.device, dtype=torch.float32)
    preds = torch.empty(T, *labels0.shape, device=feats.device)
    preds[0] = labels0
    for t in range(1, T):
        ctx = [0] + context_indices(t, n_context, context_pad)
        local_from = 0 if restrict_first else 1
        preds[t] = _predict_dense(feats[t].float(), feats[ctx].float(), preds[ctx], local_from, radius, topk,
                                  temperature, weighting, chunk, radius_shape)
    return preds
