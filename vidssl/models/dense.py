"""Per-frame dense maps and per-clip global features from any backbone (2D or video).

Video backbones read frames by a sliding-clip scheme: the T frames are cut into consecutive, non-overlapping
windows of `clip_len` frames (the last one padded by repeating the last frame), the 3D backbone runs once per
window, and the window's T' temporal outputs are mapped back to its frames by nearest index: frame k of the
window reads output floor(k * T' / clip_len) (T' = ceil(clip_len / temporal_stride) for the video ResNets;
the measured T' is used). Padded frames are dropped. Why: every frame's feature comes from a clip that
contains it (its own window), with the temporal context the backbone was trained on, at the cost of one
backbone pass per window (not per frame, as centred sliding clips would need).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def _windows(frames: torch.Tensor, start: int, stop: int, clip_len: int) -> torch.Tensor:
    """Windows start..stop-1 of `frames` (T, 3, H, W) as (n, 3, clip_len, H, W), edge-replicated past T."""
    idx = torch.arange(start * clip_len, stop * clip_len, device=frames.device).clamp_max(frames.shape[0] - 1)
    return frames[idx].unflatten(0, (stop - start, clip_len)).transpose(1, 2)


def _global(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    fn = getattr(backbone, "forward_global", None)
    return fn(x) if fn is not None else backbone(x).flatten(2).mean(-1)


@torch.no_grad()
def dense_frame_maps(backbone: nn.Module, frames: torch.Tensor, batch: int = 4, clip_len: int = 8) -> torch.Tensor:
    """Normalised float frames (T, 3, H, W) on the backbone's device -> per-frame maps (T, C, h, w), not
    L2-normalised. 2D backbones: `batch` frames per pass; video backbones: `batch` windows per pass."""
    T = frames.shape[0]
    if not getattr(backbone, "is_video", False):
        return torch.cat([backbone(frames[s:s + batch]) for s in range(0, T, batch)])
    n = -(-T // clip_len)
    out = []
    for s in range(0, n, batch):
        y = backbone(_windows(frames, s, min(s + batch, n), clip_len))  # (b, C, T', h, w)
        k = torch.arange(clip_len, device=y.device) * y.shape[2] // clip_len
        out.append(y[:, :, k].transpose(1, 2).flatten(0, 1))  # (b * clip_len, C, h, w)
    return torch.cat(out)[:T]


@torch.no_grad()
def global_clip_features(backbone: nn.Module, frames: torch.Tensor, clip_len: int, batch: int = 4) -> torch.Tensor:
    """Frames (T, 3, H, W) -> (ceil(T / clip_len), C): one vector per non-overlapping window of `clip_len`
    frames. Video backbones: forward_global of the window (the last one edge-padded); 2D backbones: the mean
    of forward_global over the window's (real) frames."""
    T = frames.shape[0]
    n = -(-T // clip_len)
    if getattr(backbone, "is_video", False):
        return torch.cat([_global(backbone, _windows(frames, s, min(s + batch, n), clip_len))
                          for s in range(0, n, batch)])
    per_frame = torch.cat([_global(backbone, frames[s:s + batch * clip_len])
                           for s in range(0, T, batch * clip_len)])
    return torch.stack([per_frame[s:s + clip_len].mean(0) for s in range(0, T, clip_len)])
