"""Motion vectors of compressed videos, read with PyAV (FFmpeg's `+export_mvs` decoder flag).

`read_motion_vectors(path, indices)` -> float32 (T, H', W', 2): every frame's motion vectors rasterised per
block on a grid of `cell` pixels (H' = ceil(H / cell); cell 1 = one value per pixel, the default; cell 4 is
exact too, as every H.264 / MPEG-4 block is a multiple of 4 px), as the (x, y) displacement in pixels of each
block's content since its reference frame: a square moving right 2 px a frame reads (+2, 0) inside the square
on P-frames. Intra blocks, I-frames and frames without vectors read 0.

FFmpeg's AVMotionVector: the block of size (w, h) centred at (dst_x, dst_y) of this frame is predicted from
(src_x, src_y) of a reference, src = dst + motion / motion_scale, and `source` < 0 for a past reference, > 0 for
a future one. Content displacement since a past reference = dst - src = -motion / motion_scale (sub-pixel,
unlike the rounded src_x). Which past frame is not exported, so:

- P-frames of the CoViAR / CMD convention (MPEG-4 Part 2 or H.264 with one reference frame, no B-frames; see
  `python -m data_prep.reencode`): the reference is the previous frame, the vectors are exactly the motion of
  the last frame step.
- Multi-reference H.264 (most downloaded videos): a vector may refer to an older frame; it is taken as is (so
  it can be a multi-frame displacement).
- B-frames: past-reference vectors as above; a block predicted only from a future frame gets the negated
  vector (src - dst, its motion towards the future frame, read as if it came from one frame back); a
  bi-predicted block keeps its past vector.

Decoders that export vectors: FFmpeg's H.264 and MPEG-1/2/4 / H.263 family. Anything else (MJPEG, VP9, AV1,
HEVC, frame folders, all-intra files) raises `VideoDecodeError` naming the file, so datasets skip and list it.

Frame index i is the i-th frame in presentation order (as `vidssl.io.VideoReader`); frame types come with
`with_types=True` ("I", "P", "B", ... per returned frame). Cost: one seek to the keyframe before the first
index and a decode up to the last (no RGB conversion), as the CoViAR loader (chaoyuaw/pytorch-coviar,
coviar_data_loader.c) which decodes the GOP up to the asked frame.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from vidssl.io.video import VideoDecodeError

__all__ = ["read_motion_vectors", "MotionVectorReader", "rasterize_motion_vectors", "MV_CODECS"]

# FFmpeg decoders that honour +export_mvs (h264 and the mpegvideo family).
MV_CODECS = ("h264", "mpeg4", "mpeg1video", "mpeg2video", "h263", "h263p", "flv1", "msmpeg4v2", "msmpeg4v3",
             "wmv1", "wmv2")
PICT_TYPES = {1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}
CELLS = (1, 2, 4)
GRID = 4  # every exported block is a multiple of 4 px and aligned to 4 px


def rasterize_motion_vectors(mvs: np.ndarray, height: int, width: int, cell: int = 1) -> np.ndarray:
    """One frame's AVMotionVector records (PyAV's structured array) -> float32 (ceil(H/cell), ceil(W/cell), 2)
    content displacements (see the module doc for the sign and direction rules)."""
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell}")
    gh, gw = -(-height // GRID), -(-width // GRID)
    grid = np.zeros((gh, gw, 2), np.float32)
    if mvs is not None and len(mvs):
        scale = np.maximum(mvs["motion_scale"].astype(np.float32), 1.0)
        disp = np.stack([mvs["motion_x"], mvs["motion_y"]], 1).astype(np.float32) / scale[:, None]
        past = mvs["source"] < 0
        disp[past] *= -1.0  # dst - src for past references; the future ones keep src - dst
        for sel in (~past, past):  # future first, past overwrites (bi-predicted blocks keep the past vector)
            if sel.any():
                _fill(grid, mvs[sel], disp[sel])
    if cell == GRID:
        return grid
    r = GRID // cell
    return np.ascontiguousarray(grid.repeat(r, 0).repeat(r, 1)[:-(-height // cell), :-(-width // cell)])


def _fill(grid: np.ndarray, mvs: np.ndarray, disp: np.ndarray) -> None:
    """Write each block's vector into the 4 px cells it covers. Blocks come in a few sizes (16x16 down to 4x4):
    per size, one vectorised assignment per cell offset within the block (at most 16), into a grid padded by
    one macroblock so that edge blocks need no bounds masks."""
    w, h = mvs["w"].astype(np.int64), mvs["h"].astype(np.int64)
    nw, nh = np.maximum(w // GRID, 1), np.maximum(h // GRID, 1)
    pad = 16 // GRID
    gh, gw = grid.shape[:2]
    x0 = np.clip((mvs["dst_x"].astype(np.int64) - w // 2) // GRID + pad, 0, gw + pad)
    y0 = np.clip((mvs["dst_y"].astype(np.int64) - h // 2) // GRID + pad, 0, gh + pad)
    padded = np.zeros((gh + 2 * pad + 4, gw + 2 * pad + 4, 2), np.float32)
    padded[pad:pad + gh, pad:pad + gw] = grid
    size = nh * 8 + nw
    for key in np.unique(size):
        sel = size == key
        bh, bw = divmod(int(key), 8)
        ys, xs, d = y0[sel], x0[sel], disp[sel]
        for dy in range(bh):
            for dx in range(bw):
                padded[ys + dy, xs + dx] = d
    grid[:] = padded[pad:pad + gh, pad:pad + gw]


class MotionVectorReader:
    """One open video for several motion-vector reads (a dataset item's windows).

    `num_frames`, `width`, `height`, `keyframes` (frame indices of keyframe packets: the I-frames of a
    re-encoded video) are known after opening (packets are demuxed once, nothing decoded)."""

    def __init__(self, path: str | os.PathLike):
        import av

        self.path = str(path)
        if os.path.isdir(self.path):
            raise VideoDecodeError(self.path, "a frame folder has no motion vectors (encode it as a video)")
        if not os.path.isfile(self.path):
            raise VideoDecodeError(self.path, "no such file")
        try:
            self._container = av.open(self.path)
        except Exception as e:
            raise VideoDecodeError(self.path, f"cannot open with PyAV: {e}") from e
        try:
            if not self._container.streams.video:
                raise VideoDecodeError(self.path, "no video stream")
            self._stream = stream = self._container.streams.video[0]
            codec = stream.codec_context.name
            if codec not in MV_CODECS:
                raise VideoDecodeError(self.path, f"no motion vectors: codec {codec!r} does not export them "
                                                  f"(re-encode with python -m data_prep.reencode)")
            stream.codec_context.options = {"flags2": "+export_mvs"}
            stream.thread_type = "SLICE"
            packets = [(p.pts, p.is_keyframe) for p in self._container.demux(stream) if p.pts is not None and p.size > 0]
        except VideoDecodeError:
            self.close()
            raise
        except Exception as e:
            self.close()
            raise VideoDecodeError(self.path, f"cannot demux: {e}") from e
        packets.sort()
        self._pts = np.asarray([p for p, _ in packets], dtype=np.int64)
        self.num_frames = len(self._pts)
        if self.num_frames == 0:
            self.close()
            raise VideoDecodeError(self.path, "no decodable video frames")
        self.keyframes = [i for i, (_, key) in enumerate(packets) if key]
        if len(self.keyframes) == self.num_frames and self.num_frames > 1:
            self.close()
            raise VideoDecodeError(self.path, "no motion vectors: every frame is intra-coded (re-encode with "
                                              "python -m data_prep.reencode)")
        self.width, self.height = stream.codec_context.width, stream.codec_context.height

    def read(self, indices: Sequence[int] | None = None, cell: int = 1,
             with_types: bool = False) -> np.ndarray | tuple[np.ndarray, list[str]]:
        """Vectors of the frames at `indices` (any order, repeats allowed; None = all) as float32
        (T, ceil(H/cell), ceil(W/cell), 2), and their frame types with `with_types`."""
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell}")
        idx = list(range(self.num_frames)) if indices is None else [int(i) for i in indices]
        if not idx:
            raise ValueError("read_motion_vectors needs at least one index")
        bad = [i for i in idx if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:5]} out of range [0, {self.num_frames})")
        uniq = sorted(set(idx))
        wanted = {int(self._pts[i]): i for i in uniq}
        last = int(self._pts[uniq[-1]])
        out: dict[int, tuple[np.ndarray, str]] = {}
        try:
            if uniq[0] > 0:
                self._container.seek(int(self._pts[uniq[0]]), stream=self._stream, backward=True, any_frame=False)
            else:
                self._container.seek(0, stream=self._stream)
            for frame in self._container.decode(self._stream):
                i = wanted.get(frame.pts)
                if i is not None:
                    sd = frame.side_data.get("MOTION_VECTORS")
                    mvs = sd.to_ndarray() if sd is not None else None
                    out[i] = (rasterize_motion_vectors(mvs, frame.height, frame.width, cell),
                              PICT_TYPES.get(int(frame.pict_type), "?"))
                if frame.pts is not None and frame.pts >= last:
                    break
        except Exception as e:
            raise VideoDecodeError(self.path, f"decoding motion vectors of frames {uniq[0]}..{uniq[-1]}: {e}") from e
        missing = [i for i in uniq if i not in out]
        if missing:
            raise VideoDecodeError(self.path, f"frames {missing[:5]} could not be decoded (truncated file?)")
        mv = np.stack([out[i][0] for i in idx])
        return (mv, [out[i][1] for i in idx]) if with_types else mv

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "MotionVectorReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_motion_vectors(path: str | os.PathLike, indices: Sequence[int] | None = None, cell: int = 1,
                        with_types: bool = False) -> np.ndarray | tuple[np.ndarray, list[str]]:
    """float32 (T, ceil(H/cell), ceil(W/cell), 2) motion vectors of the frames at `indices` (None = every
    frame), optionally with their frame types ("I" / "P" / "B"); see the module doc for the conventions.
    Raises VideoDecodeError (naming the file) for a file or folder without motion vectors."""
    with MotionVectorReader(path) as reader:
        return reader.read(indices, cell, with_types)
