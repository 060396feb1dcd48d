"""Datasets over video files and frame folders, yielding clips as dicts.

Nothing is scanned up front: a video is opened when a clip of it is asked for, so a list of 200k Kinetics
files costs nothing to build. A video that fails to decode is skipped (the next one is used instead) and its
path travels with the batch under "skipped", for the trainer to count and write to the run's folder.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from vidssl.data.augment import FrameCrop
from vidssl.data.samplers import clip_indices, frame_step, random_clip_start
from vidssl.data.spec import ClipRequest, DataSpec, PlacementMiss
from vidssl.io import VIDEO_EXTENSIONS, VideoDecodeError, open_video
from vidssl.io.frames import IMAGE_EXTENSIONS

SKIPPED_FOLDERS = ("Annotations",)  # DAVIS / YouTube-VOS masks: PNG folders that are labels, not videos


def _read_list(path: str) -> list[str]:
    """Paths of a list file: one per line, '#' starts a comment, relative paths are relative to the file. A line
    is a path as a whole (spaces allowed); if that does not exist, the line without its last field, or its first
    field (Kinetics-style "path label" lines)."""
    base = os.path.dirname(os.path.abspath(path))
    resolve = lambda p: p if os.path.isabs(p) else os.path.join(base, p)  # noqa: E731
    sources, missing = [], []
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.split("#")[0].strip()
            if not line:
                continue
            candidates = [line, line.rsplit(maxsplit=1)[0], line.split()[0]]
            found = next((resolve(c) for c in candidates if os.path.exists(resolve(c))), None)
            if found is None:
                missing.append(f"line {n}: {resolve(line)}")
            else:
                sources.append(found)
    if missing:
        raise FileNotFoundError(f"{path}: {len(missing)} listed paths do not exist, e.g. {missing[0]}")
    if not sources:
        raise FileNotFoundError(f"{path}: the list file names no videos")
    return sources


def discover_sources(root: str, extensions=VIDEO_EXTENSIONS) -> list[str]:
    """Videos and frame folders under `root` (searched recursively, sorted), a single video file, or the paths
    of a list file (`_read_list`). Folders named Annotations* (DAVIS/YouTube-VOS masks) are not frame folders:
    `data.root` may point at a DAVIS root and train on JPEGImages only."""
    if os.path.isfile(root):
        return [root] if root.lower().endswith(tuple(extensions)) else _read_list(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data.root {root!r} is neither a folder, a video nor a list file")
    sources = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(SKIPPED_FOLDERS))
        lower = [f.lower() for f in filenames]
        sources += [os.path.join(dirpath, f) for f, lf in zip(filenames, lower) if lf.endswith(tuple(extensions))]
        if any(lf.endswith(IMAGE_EXTENSIONS) for lf in lower):
            sources.append(dirpath)  # a frame folder
    if not sources:
        raise FileNotFoundError(f"no videos ({', '.join(extensions)}) or frame folders under {root}")
    return sorted(sources)


OVERLAP_DRAWS = 20  # tries of an overlap class and side within one draw (CSTP redraws until it fits)
PLACEMENT_DRAWS = 3  # draws of a video's plan before it is listed as too short for it


def overlap_shift(req: ClipRequest, rate: float, step: float) -> float:
    """Source frames between the starts of an overlapping clip and its anchor. "frames": the two share
    round(rate * length) frames; "span" (Katou2/CSTP data_process/datasets.py): the start moves by
    (1 - rate) * (length - 1) * step, floored (with a 1e-6 guard: the reference's float floor turns 0.2 * 15
    into 2)."""
    if req.overlap_rule == "span":
        return float(math.floor((1 - rate) * (req.length - 1) * step + 1e-6))
    return (req.length - round(rate * req.length)) * step


class VideoDataset(torch.utils.data.Dataset):
    """Items of a `DataSpec` (see vidssl/data/spec.py) drawn from a list of videos / frame folders.

    Index with an int or with (index, seed) from StepBatchSampler; with a seed every random choice is
    reproducible. Each video contributes `clips_per_video` items per epoch (the CRW reference draws 5 random
    clips per Kinetics video). All requests of an item come from one open reader. Returns the requests' uint8
    tensors, their `<name>_index` frame indices, `<name>_box` crop boxes (top, left, h, w in source pixels, so
    side data such as precomputed flow can be cropped alike) and labels, "path" and "video" (index), and
    "skipped" (videos that failed to decode or are too short for the plan, as "path\treason" lines, replaced
    by the next video).
    """

    def __init__(self, sources: list[str], spec: DataSpec, clips_per_video: int = 1, backend: str = "auto",
                 folder_fps: float = 0.0, max_skips: int = 20):
        if not sources:
            raise ValueError("no video sources")
        self.sources, self.spec, self.clips_per_video = list(sources), spec, clips_per_video
        self.backend, self.folder_fps, self.max_skips = backend, folder_fps, max_skips
        self.crops = {r.name: FrameCrop(r.size, tuple(r.crop_scale), tuple(r.crop_ratio), r.crop)
                      for r in spec.requests}

    def __len__(self) -> int:
        return len(self.sources) * self.clips_per_video

    def _place(self, req: ClipRequest, reader, rng: np.random.Generator, placed: dict) -> tuple[float, float, dict]:
        """(start, step, labels) of one draw of `req`."""
        n = reader.num_frames
        if req.anchor is not None:
            a_start, step = placed[req.anchor]
            span = (req.length - 1) * step
            labels = {}
            if req.placement == "same":
                start = a_start
            elif req.placement == "gap":
                start = a_start + span + (req.gap + 1) * step
            else:  # overlap: before or after the anchor; (class, side) redrawn until it fits, as CSTP's loader
                for _ in range(OVERLAP_DRAWS):
                    k = int(rng.integers(len(req.overlap_choices)))
                    shift = overlap_shift(req, req.overlap_choices[k], step)
                    start = a_start - shift if rng.random() < 0.5 else a_start + shift
                    if 0 <= start <= n - 1 - span:
                        break
                labels[f"{req.name}_overlap"] = k
            if not 0 <= start <= n - 1 - span:
                raise PlacementMiss(reader.path, f"too short for the clip plan ({n} frames; request {req.name!r} "
                                                    f"placed {req.placement} to {req.anchor!r} falls outside)")
            return start, step, labels
        step = frame_step(reader.fps, req.frame_rate, req.frame_skip)
        labels = {}
        if req.rate_choices:  # a rate whose clip fits the video (CSTP draws its pace among those too)
            fits = [k for k, r in enumerate(req.rate_choices) if (req.length - 1) * step * r <= n - 1] or [0]
            k = fits[int(rng.integers(len(fits)))]
            step, labels[f"{req.name}_rate"] = step * req.rate_choices[k], k
        if (req.length - 1) * step > n - 1:  # as torchvision's VideoClips (the CRW reference): no clip, no repeats
            raise VideoDecodeError(reader.path, f"too short for the clip plan ({n} frames; request {req.name!r} "
                                                f"spans {(req.length - 1) * step + 1:.0f})")
        return random_clip_start(n, req.length, step, rng), step, labels

    def load(self, video: int, rng: np.random.Generator) -> dict:
        sample, placed = {}, {}
        with open_video(self.sources[video], backend=self.backend, fps=self.folder_fps) as reader:
            for req in self.spec.requests:
                clips, indices, boxes = [], [], []
                for _ in range(req.count):
                    start, step, labels = self._place(req, reader, rng, placed)
                    placed.setdefault(req.name, (start, step))
                    idx = clip_indices(reader.num_frames, req.length, step, start)
                    clip = reader.get_frames(idx)
                    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
                    same = sample[f"{req.crop_as}_box"].reshape(-1, 4)[:1] if req.crop_as else None  # its region
                    clip, box = self.crops[req.name].crop(clip, g, same)
                    clips.append(clip)
                    boxes.append(box)
                    indices.append(idx)
                    sample.update(labels)
                one = req.count == 1
                sample[req.name] = clips[0] if one else torch.stack(clips)
                sample[f"{req.name}_index"] = torch.tensor(indices[0] if one else indices)
                sample[f"{req.name}_box"] = boxes[0].contiguous() if one else torch.stack(boxes)
        sample["path"] = self.sources[video]
        return sample

    def __getitem__(self, item) -> dict:
        """The item's sample; an unusable video (undecodable, too short, its side data missing: the transform
        raises VideoDecodeError) is replaced by the next one and listed under "skipped". When every video tried
        failed (e.g. the only one), the sample is {"unusable": message, "skipped": [...]}: the trainer lists
        them and stops with that one message instead of retrying the same file."""
        index, seed = item if isinstance(item, tuple) else (item, int(item))
        video = index // self.clips_per_video
        skipped, misses, failed = [], {}, set()  # failed: videos that will fail again (unreadable, too short)
        for attempt in range(self.max_skips + 1):
            if len(failed) == len(self.sources):
                break
            while video in failed:
                video = (video + 1) % len(self.sources)
            rng = np.random.default_rng([seed, attempt])
            try:
                sample = self.load(video, rng)
                if self.spec.transform is not None:
                    sample = self.spec.transform(sample, torch.Generator().manual_seed(int(rng.integers(2**62))))
                return {**sample, "video": video, "skipped": skipped}
            except PlacementMiss as e:  # this draw did not fit: draw again; listed once every draw missed
                misses[video] = misses.get(video, 0) + 1
                if misses[video] == PLACEMENT_DRAWS:
                    skipped.append(f"{e.path}\t{e.reason} in {PLACEMENT_DRAWS} draws")
                    failed.add(video)
                    video = (video + 1) % len(self.sources)
            except VideoDecodeError as e:
                skipped.append(f"{e.path}\t{e.reason}")
                failed.add(video)
                video = (video + 1) % len(self.sources)
        every = len(failed) == len(self.sources)
        what = (f"{'the only video' if len(self.sources) == 1 else f'all {len(failed)} videos'} failed" if every
                else f"{self.max_skips + 1} draws in a row failed")
        first = skipped[0].replace("\t", ": ") if skipped else "its clip plan did not fit"
        return {"unusable": f"no usable training video: {what}; first: {first}", "skipped": skipped}


def collate(samples: list[dict]) -> dict:
    """Stack every tensor and number of the samples; "skipped" lists are joined; anything else becomes a list.
    A batch with an unusable sample is only {"unusable": message, "skipped": [...]}."""
    if any("unusable" in s for s in samples):
        return {"unusable": next(s["unusable"] for s in samples if "unusable" in s),
                "skipped": [p for s in samples for p in s["skipped"]]}
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key == "skipped":
            batch[key] = [p for v in values for p in v]
        elif torch.is_tensor(values[0]):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (int, float, bool)):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
