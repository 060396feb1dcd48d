"""TAP-Vid point-tracking data, read without running code.

Pickles (the official files; google-deepmind/tapnet tapnet/tapvid/README.md), through the restricted unpickler
of vidssl/io/pickles.py:
  - TAP-Vid-DAVIS: a dict name -> {video uint8 (T, H, W, 3), points float32 (N, T, 2) x, y in [0, 1],
    occluded bool (N, T)};
  - TAP-Vid-RGB-Stacking: a list of such dicts;
  - TAP-Vid-Kinetics shards: a list (or dict) of such dicts whose `video` is a list of JPEG bytes, one per frame.
Videos without names are `video_<i>` (their index in the file); a folder of pickles (all Kinetics shards) names
them <shard>_video_<i>.

The plain layout (no pickle): a folder of <video>.npz, each with `points` and `occluded` as above and either
`video` (uint8 (T, H, W, 3)) or, beside it, the frames as a folder <video>/ of images or a file <video>.mp4
(or any video extension vidssl reads). `convert_to_npz` writes a pickle once in this layout.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vidssl.io.pickles import safe_load_pickle


@dataclass
class TapVidVideo:
    name: str
    video: np.ndarray  # uint8 (T, H, W, 3)
    points: np.ndarray  # float32 (N, T, 2) x, y in [0, 1]
    occluded: np.ndarray  # bool (N, T)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name) or "video"


def decode_frames(frames, source: str) -> np.ndarray:
    """`video` as stored: a uint8 array (T, H, W, 3), or a list of encoded images (JPEG/PNG bytes)."""
    if isinstance(frames, np.ndarray) and frames.dtype != object:
        video = frames
    elif len(frames) and isinstance(frames[0], (bytes, bytearray, np.bytes_)):
        import cv2

        decoded = []
        for i, b in enumerate(frames):
            img = cv2.imdecode(np.frombuffer(bytes(b), np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{source}: frame {i} is not a decodable image")
            decoded.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        if len({d.shape for d in decoded}) != 1:
            raise ValueError(f"{source}: frames differ in size")
        video = np.stack(decoded)
    else:
        video = np.asarray(frames)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"{source}: `video` must be (T, H, W, 3) frames, got shape {video.shape}")
    if video.dtype != np.uint8:
        if np.issubdtype(video.dtype, np.floating) and video.max() <= 1.0:
            video = video * 255.0
        video = np.clip(np.round(video), 0, 255).astype(np.uint8)
    return video


def _check(item, source: str, video: np.ndarray | None = None) -> TapVidVideo:
    if not hasattr(item, "keys"):
        raise ValueError(f"{source}: expected a dict with video, points, occluded; got {type(item).__name__}")
    missing = [k for k in ("points", "occluded") + (("video",) if video is None else ()) if k not in item]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing} (has {sorted(map(str, item.keys()))})")
    video = decode_frames(item["video"], source) if video is None else video
    points = np.asarray(item["points"], np.float32)
    occluded = np.asarray(item["occluded"]).astype(bool)
    T = video.shape[0]
    if T < 2:
        raise ValueError(f"{source}: {T} frame(s): a point track needs at least 2")
    if points.ndim != 3 or points.shape[1:] != (T, 2):
        raise ValueError(f"{source}: points must be (N, {T}, 2) for {T} frames, got {points.shape}")
    if occluded.shape != points.shape[:2]:
        raise ValueError(f"{source}: occluded must be {points.shape[:2]}, got {occluded.shape}")
    bad = ~np.isfinite(points).all(-1) & ~occluded
    if bad.any():
        n, t = np.argwhere(bad)[0]
        raise ValueError(f"{source}: points must be finite where visible; point {n} at frame {t} is "
                         f"{points[n, t].tolist()} ({int(bad.sum())} such)")
    return TapVidVideo("", video, points, occluded)


def _named_items(data, path: str) -> list[tuple[str, object]]:
    if isinstance(data, dict) and {"video", "points", "occluded"} <= set(data):
        return [("video_0", data)]  # a single video
    if isinstance(data, dict):
        return [(str(k), v) for k, v in data.items()]
    if isinstance(data, (list, tuple)):
        return [(f"video_{i}", v) for i, v in enumerate(data)]
    raise ValueError(f"{path}: expected a dict name -> video or a list of videos, got {type(data).__name__}")


def _pickle_videos(path: str, names: list[str] | None) -> Iterator[TapVidVideo]:
    items = _named_items(safe_load_pickle(path), path)
    if names is not None:
        known = {n for n, _ in items}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise KeyError(f"{path}: no video(s) {unknown}; it holds {sorted(known)[:10]}...")
        items = [(n, v) for n, v in items if n in set(names)]
    for name, item in items:
        v = _check(item, f"{path}[{name}]")
        v.name = _safe_name(name)
        yield v


def _frames_beside(root: str, stem: str) -> np.ndarray:
    from vidssl.io import VIDEO_EXTENSIONS, VideoReader, list_frames, read_image

    folder = os.path.join(root, stem)
    if os.path.isdir(folder):
        paths = list_frames(folder)
        if not paths:
            raise FileNotFoundError(f"{folder}: no frames")
        return np.stack([read_image(p) for p in paths])
    for ext in VIDEO_EXTENSIONS:
        path = os.path.join(root, stem + ext)
        if os.path.isfile(path):
            with VideoReader(path) as r:
                return r.get_frames(range(r.num_frames)).numpy()
    raise FileNotFoundError(f"{os.path.join(root, stem)}.npz has no `video`, and there is no frame folder "
                            f"{folder}/ or video file {folder}.mp4 beside it")


def _npz_videos(root: str, names: list[str] | None) -> Iterator[TapVidVideo]:
    stems = sorted(os.path.splitext(n)[0] for n in os.listdir(root) if n.endswith(".npz"))
    if not stems:
        raise FileNotFoundError(f"{root}: no <video>.npz files (the plain TAP-Vid layout)")
    if names is not None:
        unknown = [n for n in names if n not in stems]
        if unknown:
            raise KeyError(f"{root}: no video(s) {unknown}")
        stems = [s for s in stems if s in set(names)]
    for stem in stems:
        path = os.path.join(root, stem + ".npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                item = {k: z[k] for k in z.files}
        except Exception as e:  # not an npz, damaged, or object arrays (which would need unpickling): never run
            raise ValueError(f"{path}: not a readable .npz of plain arrays ({type(e).__name__}: {e})") from None
        video = None if "video" in item else _frames_beside(root, stem)
        v = _check(item, path, video)
        v.name = stem
        yield v


def _shard_videos(root: str, names: list[str] | None) -> Iterator[TapVidVideo]:
    """Every pickle of a folder (TAP-Vid-Kinetics' *_of_0010.pkl shards), videos named <shard>_<name>."""
    shards = sorted(n for n in os.listdir(root) if n.endswith(".pkl"))
    for shard in shards:
        stem = os.path.splitext(shard)[0]
        for v in _pickle_videos(os.path.join(root, shard), None):
            v.name = _safe_name(f"{stem}_{v.name}")
            if names is None or v.name in names:
                yield v


def count_videos(path: str) -> int | None:
    """How many videos `path` holds when that is cheap to know (a folder), else None."""
    if os.path.isdir(path) and any(n.endswith(".npz") for n in os.listdir(path)):
        return sum(n.endswith(".npz") for n in os.listdir(path))
    return None


def read_tapvid(path: str, names: list[str] | None = None) -> Iterator[TapVidVideo]:
    """The videos of a TAP-Vid pickle (DAVIS dict, RGB-Stacking list, Kinetics shard), of a folder of
    pickles (the Kinetics shards; videos named <shard>_<name>) or of a plain-layout folder, one at a time (JPEG
    frames are decoded as each video is reached). `names`: only these videos."""
    if os.path.isdir(path):
        files = os.listdir(path)
        if not any(n.endswith(".npz") for n in files) and any(n.endswith(".pkl") for n in files):
            return _shard_videos(path, names)
        return _npz_videos(path, names)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (a TAP-Vid .pkl or a folder of <video>.npz)")
    return _pickle_videos(path, names)


def write_npz(video: TapVidVideo, folder: str) -> str:
    """One video as <folder>/<name>.npz (video, points, occluded), written atomically."""
    from vidssl.io.atomic import atomic_write

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, video.name + ".npz")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, video=video.video, points=video.points, occluded=video.occluded)

    atomic_write(path, write)
    return path


def convert_to_npz(pickle_path: str, folder: str) -> list[str]:
    """Convert a TAP-Vid pickle once to the plain layout (<folder>/<video>.npz); returns the paths."""
    return [write_npz(v, folder) for v in read_tapvid(pickle_path)]
