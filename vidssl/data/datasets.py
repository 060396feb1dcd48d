"""Datasets over video files and frame folders, yielding clips as dicts.

Nothing is scanned up front: a video is opened when a clip of it is asked for, so a list of 200k Kinetics
files costs nothing to build. A video that fails to decode is skipped (the next one is used instead) and its
path travels with the batch under "skipped", for the trainer to count and write to the run's folder.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from vidssl.data.samplers import frame_step, random_clip_indices
from vidssl.io import VIDEO_EXTENSIONS, VideoDecodeError, open_video
from vidssl.io.frames import IMAGE_EXTENSIONS


def discover_sources(root: str, extensions=VIDEO_EXTENSIONS) -> list[str]:
    """Videos and frame folders under `root` (searched recursively, sorted), or listed in a text file
    (one path per line; relative paths are relative to the file; '#' starts a comment)."""
    if os.path.isfile(root):
        base = os.path.dirname(os.path.abspath(root))
        with open(root) as f:
            lines = [ln.split("#")[0].strip() for ln in f]
        paths = [ln.split()[0] for ln in lines if ln]
        sources = [p if os.path.isabs(p) else os.path.join(base, p) for p in paths]
        missing = [p for p in sources if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(f"{root}: {len(missing)} listed paths do not exist, e.g. {missing[0]}")
        return sources
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data.root {root!r} is neither a folder nor a list file")
    sources = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        lower = [f.lower() for f in filenames]
        sources += [os.path.join(dirpath, f) for f, lf in zip(filenames, lower) if lf.endswith(tuple(extensions))]
        if any(lf.endswith(IMAGE_EXTENSIONS) for lf in lower):
            sources.append(dirpath)  # a frame folder
    if not sources:
        raise FileNotFoundError(f"no videos ({', '.join(extensions)}) or frame folders under {root}")
    return sorted(sources)


class ClipDataset(torch.utils.data.Dataset):
    """Random clips of `clip_len` frames from a list of videos / frame folders.

    Index with an int or with (index, seed) from StepBatchSampler; with a seed every random choice is
    reproducible. Each video contributes `clips_per_video` items per epoch (the reference draws 5 random clips
    per Kinetics video). Returns {"clip": uint8 (T, H, W, 3) after `transform`, "video": index, "skipped": [...]}.
    """

    def __init__(self, sources: list[str], clip_len: int = 4, frame_rate: float | None = 8.0,
                 frame_skip: int | None = None, clips_per_video: int = 1,
                 transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 backend: str = "auto", folder_fps: float = 0.0, max_skips: int = 20):
        if not sources:
            raise ValueError("no video sources")
        self.sources, self.clip_len = list(sources), clip_len
        self.frame_rate, self.frame_skip, self.clips_per_video = frame_rate, frame_skip, clips_per_video
        self.transform, self.backend, self.folder_fps, self.max_skips = transform, backend, folder_fps, max_skips

    def __len__(self) -> int:
        return len(self.sources) * self.clips_per_video

    def load_clip(self, video: int, rng: np.random.Generator) -> torch.Tensor:
        with open_video(self.sources[video], backend=self.backend, fps=self.folder_fps) as reader:
            step = frame_step(reader.fps, self.frame_rate, self.frame_skip)
            return reader.get_frames(random_clip_indices(reader.num_frames, self.clip_len, step, rng))

    def __getitem__(self, item) -> dict:
        index, seed = item if isinstance(item, tuple) else (item, int(item))
        video = index // self.clips_per_video
        skipped = []
        for attempt in range(self.max_skips + 1):
            rng = np.random.default_rng([seed, attempt])
            try:
                clip = self.load_clip(video, rng)
                break
            except VideoDecodeError as e:
                skipped.append(f"{e.path}\t{e.reason}")
                video = (video + 1) % len(self.sources)
        else:
            raise RuntimeError(f"{self.max_skips + 1} videos in a row failed to decode; last: {skipped[-1]}")
        if self.transform is not None:
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            clip = self.transform(clip, g)
        return {"clip": clip, "video": video, "skipped": skipped}


def collate_clips(samples: list[dict]) -> dict:
    return {"clip": torch.stack([s["clip"] for s in samples]),
            "video": torch.tensor([s["video"] for s in samples]),
            "skipped": [p for s in samples for p in s["skipped"]]}
