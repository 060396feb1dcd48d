"""One VideoReader over several decoders: frame indices in, uint8 (T, H, W, 3) RGB tensors out.

Backends: decord, PyAV, torchcodec and OpenCV. All of them are frame-exact: index i is the i-th frame in
presentation order, whichever backend decodes it (tested on real clips). A short clip costs a seek to the
keyframe before the first index plus decoding up to the last one, never a full-video decode.
"""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import Sequence

import numpy as np
import torch

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")

# Fastest first for random short clips, as measured by benchmarks/bench_decode.py (benchmarks/RESULTS.md):
# OpenCV beats decord and PyAV by 15-30% on H.264 mp4. OpenCV's frame count is only an estimate (duration x
# fps) in containers without a sample table (mkv, webm), so "auto" uses it only for the ones that have one.
BACKEND_PREFERENCE = ("opencv", "decord", "torchcodec", "pyav")
EXACT_COUNT_CONTAINERS = (".mp4", ".m4v", ".mov", ".avi")
_MODULE_OF = {"decord": "decord", "torchcodec": "torchcodec", "pyav": "av", "opencv": "cv2"}


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded. `path` names the file, `reason` says what went wrong."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = str(path), str(reason)
        super().__init__(f"{self.path}: {self.reason}")


def check_indices(path: str, indices: Sequence[int], num_frames: int, caller: str) -> list[int]:
    """`indices` as ints, each in [0, num_frames); ValueError when empty, IndexError naming the file, TypeError for
    a string (its characters are no frame numbers) or a fractional index (never silently truncated)."""
    if isinstance(indices, (str, bytes)):
        raise TypeError(f"{caller}: frame indices must be a sequence of integers, got the string {indices!r}")
    try:
        idx = [int(i) for i in indices if not isinstance(i, (str, bytes, bool)) and float(i).is_integer()]
    except (TypeError, ValueError):
        idx = []
    if len(idx) != len(indices):
        raise TypeError(f"{caller}: frame indices must be integers, got {list(indices)[:5]}")
    if not idx:
        raise ValueError(f"{caller} needs at least one index")
    bad = [i for i in idx if not 0 <= i < num_frames]
    if bad:
        raise IndexError(f"{path}: frame indices {bad[:5]} out of range [0, {num_frames})")
    return idx


@functools.lru_cache(maxsize=None)
def _usable(backend: str) -> bool:
    if importlib.util.find_spec(_MODULE_OF[backend]) is None:
        return False
    if backend == "torchcodec":  # installed is not enough: it needs FFmpeg's shared libraries at import
        try:
            import torchcodec.decoders  # noqa: F401
        except Exception:
            return False
    return True


def available_backends() -> list[str]:
    """Installed, importable backends, fastest first."""
    return [b for b in BACKEND_PREFERENCE if _usable(b)]


def _resolve_backend(backend: str, device: str, path: str = "") -> str:
    installed = available_backends()
    if device != "cpu" and not torch.cuda.is_available():
        raise RuntimeError(f"GPU decoding on {device!r} asked for, but CUDA is not available here")
    if backend == "auto":
        if device != "cpu":
            for b in ("torchcodec", "decord"):  # the only ones that decode on the GPU
                if b in installed:
                    return b
            raise RuntimeError(f"GPU decoding on {device!r} needs torchcodec (CUDA build) or decord built with CUDA")
        if not path.lower().endswith(EXACT_COUNT_CONTAINERS):
            installed = [b for b in installed if b != "opencv"] or installed
        if not installed:
            raise RuntimeError("no video backend installed: pip install decord av opencv-python-headless")
        return installed[0]
    if backend not in _MODULE_OF:
        raise ValueError(f"unknown video backend {backend!r}; choose from auto, {', '.join(_MODULE_OF)}")
    if backend not in installed:
        raise RuntimeError(f"video backend {backend!r} is not installed or cannot load (pip install "
                           f"{_MODULE_OF[backend]}; torchcodec also needs FFmpeg's libraries)")
    if device != "cpu" and backend not in ("torchcodec", "decord"):
        raise RuntimeError(f"backend {backend!r} cannot decode on {device!r}; use torchcodec or decord")
    return backend


class VideoReader:
    """Random access to the frames of one video file.

    >>> with VideoReader("clip.mp4") as v:
    ...     clip = v.get_frames([0, 3, 6, 9])   # uint8 tensor (4, H, W, 3), RGB
    """

    def __init__(self, path: str | os.PathLike, backend: str = "auto", device: str = "cpu", num_threads: int = 1):
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise VideoDecodeError(self.path, "no such file")
        self.device = device
        self.backend = _resolve_backend(backend, device, self.path)
        opener = {"decord": _DecordVideo, "pyav": _PyAVVideo, "torchcodec": _TorchCodecVideo,
                  "opencv": _OpenCVVideo}[self.backend]
        try:
            self._impl = opener(self.path, device, num_threads)
        except VideoDecodeError:
            raise
        except Exception as e:  # every decoder has its own exception types
            raise VideoDecodeError(self.path, f"cannot open with {self.backend}: {e}") from e
        if self._impl.num_frames <= 0:
            raise VideoDecodeError(self.path, "no decodable video frames")

    @property
    def num_frames(self) -> int:
        return self._impl.num_frames

    @property
    def fps(self) -> float:
        return self._impl.fps

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at `indices` (any order, repeats allowed) as a uint8 tensor (T, H, W, 3)."""
        idx = check_indices(self.path, indices, self.num_frames, "get_frames")
        uniq = sorted(set(idx))
        try:
            frames = self._impl.read(uniq)
        except VideoDecodeError:
            raise
        except Exception as e:
            raise VideoDecodeError(self.path, f"decoding frames {uniq[0]}..{uniq[-1]} with {self.backend}: {e}") from e
        if frames.shape[0] != len(uniq):
            raise VideoDecodeError(self.path, f"asked for {len(uniq)} frames, decoded {frames.shape[0]} (truncated file?)")
        pos = {f: k for k, f in enumerate(uniq)}
        order = torch.tensor([pos[i] for i in idx])
        return frames if idx == uniq else frames[order.to(frames.device)]

    def close(self) -> None:
        self._impl.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _DecordVideo:
    def __init__(self, path: str, device: str, num_threads: int):
        import decord

        ctx = decord.cpu(0)
        if device != "cpu":
            index = torch.device(device).index or 0
            try:
                ctx = decord.gpu(index)
            except Exception as e:
                raise RuntimeError(f"this decord build has no CUDA decoding ({e})") from e
        self._vr = decord.VideoReader(path, ctx=ctx, num_threads=num_threads)
        self.num_frames, self.fps = len(self._vr), float(self._vr.get_avg_fps())
        self._device = device

    def read(self, indices: list[int]) -> torch.Tensor:
        batch = self._vr.get_batch(indices).asnumpy()
        return torch.from_numpy(batch).to(self._device)

    def close(self) -> None:
        self._vr = None


class _PyAVVideo:
    """PyAV, frame-exact: the packet timestamps (demuxed once, not decoded) map frame index -> pts."""

    def __init__(self, path: str, device: str, num_threads: int):
        import av

        self._container = av.open(path)
        if not self._container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO" if num_threads != 1 else "SLICE"
        pts = [p.pts for p in self._container.demux(self._stream) if p.pts is not None and p.size > 0]
        self._pts = np.sort(np.asarray(pts, dtype=np.int64))
        self.num_frames = len(self._pts)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self._path = path

    def read(self, indices: list[int]) -> torch.Tensor:
        wanted = {int(self._pts[i]): i for i in indices}
        last_pts = int(self._pts[indices[-1]])
        self._container.seek(int(self._pts[indices[0]]), stream=self._stream, backward=True, any_frame=False)
        out: dict[int, np.ndarray] = {}
        for frame in self._container.decode(self._stream):
            if frame.pts in wanted:
                out[wanted[frame.pts]] = frame.to_ndarray(format="rgb24")
            if frame.pts is not None and frame.pts >= last_pts:
                break
        missing = [i for i in indices if i not in out]
        if missing:
            raise VideoDecodeError(self._path, f"frames {missing[:5]} could not be decoded (truncated file?)")
        return torch.from_numpy(np.stack([out[i] for i in indices]))

    def close(self) -> None:
        self._container.close()


class _TorchCodecVideo:
    def __init__(self, path: str, device: str, num_threads: int):
        from torchcodec.decoders import VideoDecoder

        self._dec = VideoDecoder(path, device=device, seek_mode="exact", dimension_order="NHWC")
        meta = self._dec.metadata
        self.num_frames = int(meta.num_frames)
        self.fps = float(meta.average_fps or 0.0)

    def read(self, indices: list[int]) -> torch.Tensor:
        return self._dec.get_frames_at(indices).data

    def close(self) -> None:
        self._dec = None


class _OpenCVVideo:
    """OpenCV: seeks by frame position and reads forward, so consecutive indices cost one seek."""

    def __init__(self, path: str, device: str, num_threads: int):
        import cv2

        self._cv2 = cv2
        self._cap = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            raise VideoDecodeError(path, "OpenCV cannot open it")
        self.num_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self._path = path

    def read(self, indices: list[int]) -> torch.Tensor:
        cv2, cap, frames = self._cv2, self._cap, []
        cap.set(cv2.CAP_PROP_POS_FRAMES, indices[0])
        pos = indices[0]
        for i in indices:
            if i - pos > 32:  # far ahead: seek instead of decoding through
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                pos = i
            while pos < i:
                if not cap.grab():
                    raise VideoDecodeError(self._path, f"frame {pos} could not be decoded")
                pos += 1
            ok, img = cap.read()
            if not ok:
                raise VideoDecodeError(self._path, f"frame {i} could not be decoded")
            pos += 1
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return torch.from_numpy(np.stack(frames))

    def close(self) -> None:
        self._cap.release()
