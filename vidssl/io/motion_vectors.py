"""Motion vectors of compressed videos, read with PyAV (FFmpeg's `+export_mvs` decoder flag).

`read_motion_vectors(path, indices)` -> float32 (T, H', W', 2): every frame's motion vectors rasterised per
block on a grid of `cell` pixels, H' = ceil(H / cell). The default, cell 4, is block resolution and exact: every
exported block is a multiple of 4 px and aligned to 4 px (FFmpeg exports 16 x 16 down to 8 x 8 px blocks);
cell 1 gives one value per pixel, the same values repeated, 16 times the memory. Each value is the (x, y)
displacement in pixels of the block's content since its reference frame: a square moving right 2 px a frame
reads (+2, 0) inside the square on P-frames. Intra blocks, I-frames and frames without vectors read 0.

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
index and a decode up to the last (no RGB conversion, no deblocking), as the CoViAR loader
(chaoyuaw/pytorch-coviar, coviar_data_loader.c) which decodes the GOP up to the asked frame; the vectors of
many frames are rasterised together (`Rasterizer`). Speed against a plain PyAV decode of the same file:
benchmarks/bench_motion_vectors.py.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np

from vidssl.io.video import VideoDecodeError, check_indices

__all__ = ["read_motion_vectors", "MotionVectorReader", "Rasterizer", "rasterize_motion_vectors", "MV_CODECS"]

# FFmpeg decoders that honour +export_mvs (h264 and the mpegvideo family).
MV_CODECS = ("h264", "mpeg4", "mpeg1video", "mpeg2video", "h263", "h263p", "flv1", "msmpeg4v2", "msmpeg4v3",
             "wmv1", "wmv2")
PICT_TYPES = {1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}
CELLS = (1, 2, 4)
GRID = 4  # px: every exported block is a multiple of 4 px and aligned to 4 px
# Records rasterised per vectorised pass: enough to amortise numpy's per-call cost, few enough to keep the
# temporaries small (measured alone: per record, about 2x slower past ~30k records a pass)
PASS_RECORDS = 16384
# FFmpeg's AVMotionVector (libavutil/motion_vector.h), as PyAV's MotionVectors.to_ndarray lays it out
MV_DTYPE = np.dtype([("source", "<i4"), ("w", "u1"), ("h", "u1"), ("src_x", "<i2"), ("src_y", "<i2"),
                     ("dst_x", "<i2"), ("dst_y", "<i2"), ("flags", "<u8"), ("motion_x", "<i4"),
                     ("motion_y", "<i4"), ("motion_scale", "<u2")], align=True)
# Deblocking and the inverse transform only change pixels, which are never returned, not the vectors (FFmpeg's
# skip_loop_filter / skip_idct; a decoder without them ignores the option). Equality is checked by
# benchmarks/bench_motion_vectors.py on the real clips.
DECODER_OPTIONS = {"flags2": "+export_mvs", "skip_loop_filter": "all", "skip_idct": "all"}


def rasterize_motion_vectors(mvs: np.ndarray | None, height: int, width: int, cell: int = GRID) -> np.ndarray:
    """One frame's AVMotionVector records (a structured array, `MV_DTYPE`) -> float32 (ceil(H/cell),
    ceil(W/cell), 2) content displacements (see the module doc for the sign and direction rules)."""
    raster = Rasterizer(1, height, width)
    if mvs is not None:
        raster.add_frame(0, mvs)
    return raster.result(cell)[0]


class Rasterizer:
    """Motion-vector records of many frames -> their (T, ceil(H/cell), ceil(W/cell), 2) grids.

    Vectorised over the records of many frames. FFmpeg exports blocks of 16 x 16, 16 x 8, 8 x 16 and 8 x 8 px
    aligned to 8 px (libavcodec/mpegutils.c, ff_print_debug_info2): they are written on a grid of 8 px cells,
    2 x 2 writes a block (past a block's size the offsets land on its own last cell again), then repeated to
    4 px cells; other blocks (none from FFmpeg today) are written on a 4 px layer, up to 4 x 4 writes, and
    added. The blocks of a frame overlap only across directions (one partition of a macroblock serves both),
    where B-frames' order is kept: future references first, past ones overwrite (a bi-predicted block keeps
    its past vector)."""

    def __init__(self, frames: int, height: int, width: int):
        self.frames, self.height, self.width = frames, height, width
        self.mbs = (-(-height // 16), -(-width // 16))  # the coded size, in macroblocks
        self.layers: dict[int, np.ndarray] = {}  # cell px -> complex64 x + iy (T, coded size / px), made on use
        self._pending = np.empty(PASS_RECORDS, MV_DTYPE)  # records of frames not yet added, reused every pass
        self._used, self._slots, self._counts = 0, [], []

    def add_frame(self, slot: int, records) -> None:
        """One frame's records (an MV_DTYPE array, or a buffer of them such as PyAV's MotionVectors side data),
        copied into a reused buffer and added a pass of PASS_RECORDS at a time."""
        records = np.frombuffer(records, MV_DTYPE) if not isinstance(records, np.ndarray) else records
        if self._used + len(records) > len(self._pending):
            self.flush()
            if len(records) > len(self._pending):
                self._pending = np.empty(len(records), MV_DTYPE)
        self._pending[self._used:self._used + len(records)] = records
        self._used += len(records)
        self._slots.append(slot)
        self._counts.append(len(records))

    def flush(self) -> None:
        if self._used:
            self.add(self._pending[:self._used], np.repeat(np.asarray(self._slots, np.intp), self._counts))
        self._used, self._slots, self._counts = 0, [], []

    def add(self, mvs: np.ndarray, slot: np.ndarray) -> None:
        """Records of some frames, `slot` giving each record's frame (0..T-1); a frame's records come in one
        call."""
        if not len(mvs):
            return
        past = mvs["source"] < 0
        per_pixel = np.where(past, np.float32(-1.0), np.float32(1.0)) / np.maximum(mvs["motion_scale"], 1)
        value = np.empty(len(mvs), np.complex64)  # dst - src for past references; future ones keep src - dst
        pair = value.view(np.float32).reshape(-1, 2)
        np.multiply(mvs["motion_x"], per_pixel, out=pair[:, 0], casting="unsafe")
        np.multiply(mvs["motion_y"], per_pixel, out=pair[:, 1], casting="unsafe")
        w, h = mvs["w"].astype(np.int32), mvs["h"].astype(np.int32)
        left, top = mvs["dst_x"] - (w >> 1), mvs["dst_y"] - (h >> 1)
        mixed = past.any() and not past.all()
        on_8px = ((w | h | left | top) & 7) == 0
        for px, sel in [(8, slice(None))] if on_8px.all() else [(8, on_8px), (GRID, ~on_8px)]:
            if not isinstance(sel, np.ndarray) or sel.any():
                self._write(px, w[sel], h[sel], left[sel], top[sel], slot[sel], value[sel],
                            past[sel] if mixed else None)

    def _write(self, px: int, w, h, left, top, slot, value, past) -> None:
        """Blocks (sizes w x h px, first pixel (left, top)) onto the `px` layer, future references first when
        `past` is given."""
        if px not in self.layers:
            self.layers[px] = np.zeros((self.frames, self.mbs[0] * 16 // px, self.mbs[1] * 16 // px), np.complex64)
        grid = self.layers[px]
        _, H, W = grid.shape
        n, shift = 16 // px, px.bit_length() - 1  # cells per side of the largest block; px = 2 ** shift
        nw, nh = np.clip(w >> shift, 1, n), np.clip(h >> shift, 1, n)
        x0, y0 = np.clip(left >> shift, 0, W - nw), np.clip(top >> shift, 0, H - nh)
        first = (slot * H + y0).astype(np.intp) * W + x0
        rows = [first] + [first + np.minimum(i, nh - 1) * W for i in range(1, n)]
        cols = [0] + [np.minimum(j, nw - 1) for j in range(1, n)]
        flat = np.empty((n * n, len(first)), np.intp)  # (cell write, block)
        for i, row in enumerate(rows):
            for j, col in enumerate(cols):
                np.add(row, col, out=flat[i * n + j])
        for sel in ((slice(None),) if past is None else (~past, past)):
            grid.reshape(-1)[flat[:, sel]] = value[sel]

    def result(self, cell: int = GRID) -> np.ndarray:
        """float32 (T, ceil(H/cell), ceil(W/cell), 2)."""
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell}")
        self.flush()
        shape = (self.frames, self.mbs[0] * 16 // GRID, self.mbs[1] * 16 // GRID)
        cells = _repeat(self.layers[8], 8 // GRID) if 8 in self.layers else np.zeros(shape, np.complex64)
        if GRID in self.layers:
            cells += self.layers[GRID]
        grid = cells.view(np.float32).reshape(*shape, 2)[:, :-(-self.height // GRID), :-(-self.width // GRID)]
        if cell != GRID:
            r = GRID // cell
            grid = grid.repeat(r, 1).repeat(r, 2)[:, :-(-self.height // cell), :-(-self.width // cell)]
        return np.ascontiguousarray(grid)


def _repeat(grid: np.ndarray, r: int) -> np.ndarray:
    """(T, H, W) -> (T, H * r, W * r), each cell repeated r x r."""
    T, H, W = grid.shape
    out = np.empty((T, H * r, W * r), grid.dtype)
    out.reshape(T, H, r, W, r)[:] = grid[:, :, None, :, None]
    return out


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
            stream.codec_context.options = dict(DECODER_OPTIONS)
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

    def read(self, indices: Sequence[int] | None = None, cell: int = GRID,
             with_types: bool = False) -> np.ndarray | tuple[np.ndarray, list[str]]:
        """Vectors of the frames at `indices` (any order, repeats allowed; None = all) as float32
        (T, ceil(H/cell), ceil(W/cell), 2), and their frame types with `with_types`."""
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell}")
        idx = check_indices(self.path, range(self.num_frames) if indices is None else indices, self.num_frames,
                            "read_motion_vectors")
        uniq = sorted(set(idx))
        slot_of = {int(self._pts[i]): k for k, i in enumerate(uniq)}
        last = int(self._pts[uniq[-1]])
        raster = Rasterizer(len(uniq), self.height, self.width)
        types: list[str | None] = [None] * len(uniq)
        try:
            if uniq[0] > 0:
                self._container.seek(int(self._pts[uniq[0]]), stream=self._stream, backward=True, any_frame=False)
            else:
                self._container.seek(0, stream=self._stream)
            for frame in self._container.decode(self._stream):
                k = slot_of.get(frame.pts)
                if k is not None:
                    sd = _motion_side_data(frame)
                    if sd is not None:
                        raster.add_frame(k, sd)
                    types[k] = PICT_TYPES.get(int(frame.pict_type), "?")
                if frame.pts is not None and frame.pts >= last:
                    break
        except Exception as e:
            raise VideoDecodeError(self.path, f"decoding motion vectors of frames {uniq[0]}..{uniq[-1]}: {e}") from e
        missing = [i for i, t in zip(uniq, types) if t is None]
        if missing:
            raise VideoDecodeError(self.path, f"frames {missing[:5]} could not be decoded (truncated file?)")
        mv = raster.result(cell)
        if idx != uniq:
            slot = {i: k for k, i in enumerate(uniq)}
            mv, types = mv[[slot[i] for i in idx]], [types[slot[i]] for i in idx]
        return (mv, types) if with_types else mv

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "MotionVectorReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _motion_side_data(frame):
    """The frame's MotionVectors side data, or None. Not through `frame.side_data`: PyAV caches that container
    on the frame, and the container points back at it, a reference cycle that keeps every decoded frame alive
    until the garbage collector runs, so the decoder cannot reuse its buffers (measured on a 720p clip: 20k
    page faults and +30 % time per read). A container of our own is freed with the frame."""
    container = _side_data_container()
    return (container(frame) if container else frame.side_data).get("MOTION_VECTORS")


@functools.cache
def _side_data_container():
    try:
        from av.sidedata.sidedata import SideDataContainer
    except ImportError:  # a PyAV without it: the frame's cached container
        return None
    return SideDataContainer


def read_motion_vectors(path: str | os.PathLike, indices: Sequence[int] | None = None, cell: int = GRID,
                        with_types: bool = False) -> np.ndarray | tuple[np.ndarray, list[str]]:
    """float32 (T, ceil(H/cell), ceil(W/cell), 2) motion vectors of the frames at `indices` (None = every
    frame), optionally with their frame types ("I" / "P" / "B"); see the module doc for the conventions.
    Raises VideoDecodeError (naming the file) for a file or folder without motion vectors."""
    with MotionVectorReader(path) as reader:
        return reader.read(indices, cell, with_types)
