"""Which frame indices make a clip, and which clips make a batch (deterministic, so resume is exact)."""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch


def frame_step(video_fps: float, frame_rate: float | None = None, frame_skip: int | None = None) -> float:
    """Distance between consecutive clip frames, in source frames.

    `frame_rate` resamples the video to that many frames per second, as the CRW reference does for Kinetics
    (torchvision VideoClips with frame_rate=8); `frame_skip` takes every k-th frame (frame folders, or videos
    with unknown fps). Exactly one of them is used; frame_rate wins when the video has a known fps.
    """
    if frame_rate and video_fps > 0:
        return video_fps / frame_rate  # < 1 repeats frames of a slow video, as torchvision's resampling does
    if frame_skip:
        return float(frame_skip)
    if frame_rate:  # fps unknown (a frame folder without data.fps): consecutive frames
        return 1.0
    raise ValueError("set data.frame_rate or data.frame_skip")


def clip_indices(num_frames: int, clip_len: int, step: float, start: float) -> list[int]:
    """`clip_len` indices start, start+step, ... (floored, as torchvision's resampling does), clamped to the
    last frame when the video is too short."""
    return [min(int(math.floor(start + k * step)), num_frames - 1) for k in range(clip_len)]


def random_clip_start(num_frames: int, clip_len: int, step: float, rng: np.random.Generator) -> float:
    """A start uniform over all starts that keep the whole clip inside the video (0 when none does)."""
    span = (clip_len - 1) * step
    max_start = max(num_frames - 1 - span, 0.0)
    start = math.floor(rng.uniform(0, max_start + 1)) if max_start >= 1 else 0
    return min(start, max_start)


def random_clip_indices(num_frames: int, clip_len: int, step: float, rng: np.random.Generator) -> list[int]:
    """A clip whose start is uniform over all starts that keep the whole clip inside the video."""
    return clip_indices(num_frames, clip_len, step, random_clip_start(num_frames, clip_len, step, rng))


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches of (dataset index, sample seed) for steps start_step .. max_steps-1.

    Epoch e is a permutation of the dataset drawn from (seed, e); the stream of samples is split across
    ranks. Each sample carries its own seed, so every random choice downstream (clip start, crops) is a
    function of (seed, position) alone: a run resumed at step k sees exactly the batches an uninterrupted
    run sees, whatever the number of DataLoader workers.
    """

    def __init__(self, dataset_len: int, batch_size: int, max_steps: int, seed: int = 0, start_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        if dataset_len <= 0:
            raise ValueError("the dataset is empty")
        self.n, self.batch_size, self.max_steps = dataset_len, batch_size, max_steps
        self.seed, self.start_step, self.rank, self.world_size = seed, start_step, rank, world_size
        self._perm_epoch, self._perm = -1, None

    def _item(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.n)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g).tolist(), epoch
        return self._perm[offset], (self.seed * 2_654_435_761 + position) % (2**63)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        global_batch = self.batch_size * self.world_size
        for step in range(self.start_step, self.max_steps):
            first = step * global_batch + self.rank * self.batch_size
            yield [self._item(first + j) for j in range(self.batch_size)]

    def __len__(self) -> int:
        return max(self.max_steps - self.start_step, 0)
