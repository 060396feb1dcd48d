"""The extraction pipeline's two halves: decoding in DataLoader workers (`DecodedPieces`) and the network on
fixed-size micro-batches (`UnitBatcher`).

A worker reads each of its videos in pieces of consecutive frames (at most the memory budget, starting at
multiples of the clip length), resizes them, and sends lists of pieces of about the budget, so short videos
travel together and a long one streams. The main process queues the pieces' units (frames; windows of
clip_len frames for video backbones) by frame size and runs the network on exactly `size` units at a time,
carrying what is left over to the next batch of pieces, and padding (repeating a unit) only when it must
flush. Why a fixed size: on CPU (oneDNN) a unit's result is bitwise independent of its neighbours and of its
position in a batch of a given size, but batches of other sizes (a batch of 1, or 8 against 16 or more) run
other kernels whose last bits differ. A fixed size makes a video's features independent of how videos were
batched, cut into pieces or split over shards and processes (at a given thread count and device).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset, get_worker_info

from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize, resize_frame, short_side_size
from vidssl.io import VideoDecodeError, open_video
from vidssl.models.dense import dense_frame_maps, global_clip_features


@dataclass
class Piece:
    """Consecutive frames [start, start + len(frames)) of one video, resized, uint8 (n, H, W, 3)."""
    video: int
    start: int
    num_frames: int  # the whole video's
    fps: float
    frames: torch.Tensor

    def pin_memory(self) -> Piece:  # called by the DataLoader when pin_memory=True
        self.frames = self.frames.pin_memory()
        return self


@dataclass
class Failed:
    video: int
    reason: str


def reason_of(e: BaseException, source: str = "") -> str:
    """One line for the manifest and failures.tsv (without the video's path when the error only repeats it)."""
    text = e.reason if isinstance(e, VideoDecodeError) and e.path == source else f"{type(e).__name__}: {e}"
    return text.replace("\t", " ").replace("\n", " ")


def _resize(frames: torch.Tensor, short_side: int) -> torch.Tensor:
    if not short_side:
        return frames
    size = short_side_size(*frames.shape[1:3], short_side)
    return torch.from_numpy(np.stack([resize_frame(f, size) for f in frames.numpy()]))


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class DecodedPieces(IterableDataset):
    """The videos' frames as lists of Pieces of at most `budget_bytes` in all (a piece of `align` frames may
    exceed it alone), and Failed markers. Worker w of W decodes videos w, w + W, ... Pieces start at multiples
    of `align` (the clip length), so no window or clip straddles two pieces."""

    def __init__(self, sources: list[str], short_side: int, align: int, budget_bytes: int, backend: str = "auto"):
        self.sources, self.short_side, self.align = sources, short_side, align
        self.budget, self.backend = budget_bytes, backend

    def _pieces(self, video: int):
        with open_video(self.sources[video], backend=self.backend) as reader:
            T, fps = reader.num_frames, reader.fps
            start, step = 0, self.align  # the first piece measures the frame size
            while start < T:
                frames = _resize(reader.get_frames(range(start, min(start + step, T))), self.short_side)
                yield Piece(video, start, T, fps, frames)
                start += len(frames)
                step = max(self.budget // (_nbytes(frames[0]) * self.align), 1) * self.align

    def __iter__(self):
        info = get_worker_info()
        mine = range(len(self.sources))[info.id::info.num_workers] if info else range(len(self.sources))
        batch, size = [], 0
        for video in mine:
            try:
                for piece in self._pieces(video):
                    if batch and size + _nbytes(piece.frames) > self.budget:
                        yield batch
                        batch, size = [], 0
                    batch.append(piece)
                    size += _nbytes(piece.frames)
            except Exception as e:  # noqa: BLE001 - one bad video must not end a shard: it is recorded
                batch = [x for x in batch if x.video != video]  # its pieces not sent yet: not computed
                size = sum(_nbytes(x.frames) for x in batch if isinstance(x, Piece))
                batch.append(Failed(video, reason_of(e, self.sources[video])))
        if batch:
            yield batch


@dataclass
class _Job:
    """A piece in the queue: its units, how many were sent to the network, and their results so far."""
    piece: Piece
    units: torch.Tensor  # (u, H, W, 3) frames, or (u, clip_len, H, W, 3) windows
    sent: int = 0
    results: list = field(default_factory=list)
    received: int = 0


class UnitBatcher:
    """The network on micro-batches of exactly `size` units of one frame size (module docstring).

    `add(piece)` and `flush()` return events: ("ok", piece, values) when all of a piece's units are computed
    (dense: (n, C, h, w) float16 L2-normalised maps; clip: (ceil(n / clip_len), C) float32 global features)
    and ("failed", video, reason) for the videos of a micro-batch the network refused. `size` comes from the
    budget: as many units as fit in `budget_bytes` of uint8 input, between 2 and `max_units`."""

    def __init__(self, encoder: torch.nn.Module, mode: str, clip_len: int, device: torch.device,
                 budget_bytes: int, max_units: int):
        self.encoder, self.mode, self.clip_len, self.device = encoder, mode, clip_len, device
        self.video = bool(getattr(encoder, "is_video", False))
        self.budget, self.max_units = budget_bytes, max_units
        self.queues: dict[tuple, deque[_Job]] = {}
        self.waiting: dict[tuple, int] = {}  # queued units per frame size

    def size(self, unit: torch.Tensor) -> int:
        return int(min(max(self.budget // max(_nbytes(unit), 1), 2), self.max_units))

    def add(self, piece: Piece) -> list[tuple]:
        frames = piece.frames
        if self.video:  # windows of clip_len frames, the last edge-padded (vidssl/models/dense.py)
            extra = -len(frames) % self.clip_len
            if extra:
                frames = torch.cat([frames, frames[-1:].expand(extra, *frames.shape[1:])])
            units = frames.unflatten(0, (-1, self.clip_len))
        else:
            units = frames
        key = tuple(units.shape[1:])
        self.queues.setdefault(key, deque()).append(_Job(piece, units))
        self.waiting[key] = self.waiting.get(key, 0) + len(units)
        events = []
        size = self.size(units[0])
        while self.waiting[key] >= size:
            events += self._step(key, size)
        while sum(self.waiting[k] * _nbytes(q[0].units[0]) for k, q in self.queues.items() if q) > 2 * self.budget:
            fullest = max((k for k in self.queues if self.queues[k]), key=lambda k: self.waiting[k])
            events += self._step(fullest, self.size(self.queues[fullest][0].units[0]))  # many frame sizes
        return events

    def flush(self) -> list[tuple]:
        events = []
        for key, queue in self.queues.items():
            while queue:
                events += self._step(key, self.size(queue[0].units[0]))
        return events

    def drop(self, video: int) -> None:
        """Forget the queued units of a video that failed."""
        for key, queue in self.queues.items():
            for job in [j for j in queue if j.piece.video == video]:
                queue.remove(job)
                self.waiting[key] -= len(job.units) - job.sent

    def _step(self, key: tuple, size: int) -> list[tuple]:
        """One micro-batch of `size` units from the front of the queue (padded if the queue has fewer)."""
        queue, parts, taken, n = self.queues[key], [], [], 0
        for job in queue:
            k = min(len(job.units) - job.sent, size - n)
            parts.append(job.units[job.sent:job.sent + k])
            taken.append((job, k))
            job.sent += k
            n += k
            if n == size:
                break
        while queue and queue[0].sent == len(queue[0].units):
            queue.popleft()
        self.waiting[key] -= n
        x = torch.cat(parts)
        if n < size:
            x = torch.cat([x, x[-1:].expand(size - n, *x.shape[1:])])
        try:
            out = self._forward(x)
        except Exception as e:  # noqa: BLE001 - these videos are recorded as failed; the shard goes on
            events = []
            for video in dict.fromkeys(job.piece.video for job, _ in taken):
                self.drop(video)
                events.append(("failed", video, reason_of(e)))
            return events
        events, row = [], 0
        for job, k in taken:
            job.results.append(out[row:row + k])
            job.received += k
            row += k
            if job.received == len(job.units):
                events.append(("ok", job.piece, self._values(job)))
        return events

    @torch.no_grad()
    def _forward(self, units: torch.Tensor) -> torch.Tensor:
        """(size, ...) uint8 units -> one result row per unit, on the CPU."""
        x = units.to(self.device, non_blocking=True)
        if self.video:
            x = x.flatten(0, 1)
        x = normalize(x.permute(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
        size = len(units)
        if self.mode == "dense":
            maps = dense_frame_maps(self.encoder, x, batch=size, clip_len=self.clip_len)
            maps = F.normalize(maps.float(), dim=1).half()
            return (maps.unflatten(0, (size, self.clip_len)) if self.video else maps).cpu()
        clip = self.clip_len if self.video else 1  # 2D: one global vector per frame, averaged per clip below
        return global_clip_features(self.encoder, x, clip, batch=size).float().cpu()

    def _values(self, job: _Job) -> np.ndarray:
        out, n = torch.cat(job.results), len(job.piece.frames)
        if self.mode == "dense":
            return (out.flatten(0, 1)[:n] if self.video else out).numpy()
        if self.video:
            return out.numpy()
        window = torch.arange(n) // self.clip_len  # each clip: the mean over its real frames
        sums = torch.zeros(int(window[-1]) + 1, out.shape[1]).index_add_(0, window, out)
        return (sums / torch.bincount(window).unsqueeze(1)).numpy()
