"""Per-frame dense maps and per-clip global features from any backbone (2D or video).

Video backbones read frame t from its own clip of `clip_len` frames (indices clamped to the video, i.e.
edge-replicated) and take the temporal output centred on frame t. Temporally strided layers (kernel 3, padding
1, stride s, as in torchvision's video ResNets and S3D) centre output j on input frame s * j (s = the backbone's
`temporal_stride`), so frame t sits at position p = s * floor((clip_len // 2) / s) of its clip (the middle,
rounded down to an output's centre: clip t-4..t+3 and output 1 for clip_len 8 at s 4) and reads output p / s.
Cost: one clip per frame.

Why not cut the video into non-overlapping windows and share each window's T' outputs among its frames (the
earlier scheme)? Then frames k..k+s-1 get the same map, centred on frame k of the window, so a change at
frame t shows up at the window's first frame (up to s-1 frames early), and the maps of consecutive frames
differ by their slot in the window (distance to the temporal zero padding) more than by content: a random
r3d_18 then tracked worse on DAVIS than copying the first mask. `test_video_maps_change_where_the_video_changes`
(tests/test_backbones.py) checks the alignment.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn as nn


def _windows(frames: torch.Tensor, start: int, stop: int, clip_len: int) -> torch.Tensor:
    """Windows start..stop-1 of `frames` (T, 3, H, W) as (n, 3, clip_len, H, W), edge-replicated past T."""
    idx = torch.arange(start * clip_len, stop * clip_len, device=frames.device).clamp_max(frames.shape[0] - 1)
    return frames[idx].unflatten(0, (stop - start, clip_len)).transpose(1, 2)


def centred_clip_indices(frames: torch.Tensor, num_frames: int, clip_len: int, position: int) -> torch.Tensor:
    """Frame indices (n,) -> (n, clip_len) indices of each frame's clip, the frame at `position`, clamped to
    0..num_frames-1."""
    offsets = torch.arange(clip_len) - position
    return (frames[:, None] + offsets[None]).clamp(0, num_frames - 1)


def centre_position(clip_len: int, temporal_stride: int) -> int:
    """Where frame t sits in its clip: the middle, rounded down to a multiple of the temporal stride (the
    centre of an output)."""
    return temporal_stride * ((clip_len // 2) // temporal_stride)


def _global(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    fn = getattr(backbone, "forward_global", None)
    return fn(x) if fn is not None else backbone(x).flatten(2).mean(-1)


@torch.no_grad()
def iter_frame_maps(backbone: nn.Module, frames: torch.Tensor, batch: int = 4, clip_len: int = 8,
                    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[torch.Tensor]:
    """Per-frame maps (b, C, h, w) of `frames` (T, ...) in order, `batch` frames (2D) or `batch` centred clips
    (video) per pass. `prepare` turns a gathered stack of frames into the backbone's input (N, 3, H, W), e.g.
    uint8 HWC -> normalised float on the device (so that only the frames of one pass are converted at a time)."""
    prepare = prepare or (lambda x: x)
    T = frames.shape[0]
    video = getattr(backbone, "is_video", False)
    for s in range(0, T, batch):
        if not video:
            yield backbone(prepare(frames[s:s + batch]))
            continue
        stride = getattr(backbone, "temporal_stride", 1)
        position = centre_position(clip_len, stride)
        idx = centred_clip_indices(torch.arange(s, min(s + batch, T)), T, clip_len, position)  # (b, clip_len)
        x = prepare(frames[idx.flatten()]).unflatten(0, idx.shape).transpose(1, 2)  # (b, 3, clip_len, H, W)
        y = backbone(x)  # (b, C, T', h, w)
        if y.shape[2] != -(-clip_len // stride):
            raise ValueError(f"{type(backbone).__name__}: {y.shape[2]} temporal outputs for a clip of {clip_len} "
                             f"frames, not ceil({clip_len} / temporal_stride {stride}): its temporal_stride is wrong")
        yield y[:, :, position // stride]


@torch.no_grad()
def dense_frame_maps(backbone: nn.Module, frames: torch.Tensor, batch: int = 4, clip_len: int = 8) -> torch.Tensor:
    """Normalised float frames (T, 3, H, W) on the backbone's device -> per-frame maps (T, C, h, w), not
    L2-normalised. 2D backbones: `batch` frames per pass; video backbones: `batch` centred clips per pass."""
    return torch.cat(list(iter_frame_maps(backbone, frames, batch, clip_len)))


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
