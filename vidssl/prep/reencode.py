"""Re-encode videos so that their motion vectors refer to the previous frame (the CoViAR / CMD convention).

    python -m data_prep.reencode --root VIDEOS --out OUT [--shard I --num-shards N] [--codec mpeg4|h264]
                                 [--gop 12] [--quality Q]

CoViAR (chaoyuaw/pytorch-coviar, data/reencode.sh) and CMD (Huang et al. CVPR 2021; Context-Motion-Decoupling
data/reencode.sh) run `ffmpeg -i IN -c:v mpeg4 -f rawvideo OUT.mp4`: MPEG-4 Part 2 with FFmpeg's defaults, a
GOP of 12 (an I-frame every 12 frames) and no B-frames, so every P-frame's vectors point to the previous frame.
Here the same with PyAV (no ffmpeg binary needed): `--codec mpeg4` (default) or `--codec h264` (libx264 with
one reference frame, no B-frames, a fixed GOP and no scene-cut keyframes). Differences, on purpose: the quality
is set by a quantiser (`--quality`: mpeg4 qscale, default 3; h264 CRF, default 18) instead of FFmpeg's 200 kb/s
default, because vidssl reads the RGB clip from the same re-encoded file; audio is dropped; frame timestamps
are renumbered 0, 1, 2, ... at the source's average rate (one output frame per decoded frame, so frame i of
the output is frame i of the source).

Each video keeps its relative path and name under OUT (a .webm is written as Matroska, which the WebM demuxer
reads; frame folders are listed as failed). Sharded, resumable, failures listed: see data_prep/shards.py.
"""
from __future__ import annotations

import argparse
import os
from fractions import Fraction

from vidssl.prep.shards import add_shard_args, run_per_video

CODECS = {"mpeg4": "mpeg4", "h264": "libx264"}
FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "matroska", ".avi": "avi"}


def encoder_options(codec: str, gop: int, quality: float | None) -> dict:
    """AVCodecContext / libx264 options of the convention: fixed GOP, no B-frames, one reference."""
    if codec == "mpeg4":
        q = 3 if quality is None else quality
        return {"flags": "+qscale", "global_quality": str(int(round(q * 118))),  # FF_QP2LAMBDA = 118
                "bf": "0", "g": str(gop)}
    if codec == "h264":
        return {"crf": str(18 if quality is None else quality), "bf": "0", "refs": "1", "g": str(gop),
                "keyint_min": str(gop), "sc_threshold": "0"}
    raise ValueError(f"--codec must be one of {', '.join(CODECS)}, not {codec!r}")


def reencode(src: str, dst: str, codec: str = "mpeg4", gop: int = 12, quality: float | None = None,
             container_format: str | None = None) -> int:
    """Re-encode the first video stream of `src` into `dst`; returns the number of frames written."""
    import av

    if gop < 1:
        raise ValueError(f"--gop must be >= 1, got {gop}")
    if os.path.isdir(src):
        raise ValueError("a frame folder: encode its frames as a video first")
    fmt = container_format or FORMATS.get(os.path.splitext(src)[1].lower(), "mp4")
    options = encoder_options(codec, gop, quality)
    n = 0
    with av.open(src) as inp:
        if not inp.streams.video:
            raise ValueError("no video stream")
        ist = inp.streams.video[0]
        ist.thread_type = "AUTO"
        rate = ist.average_rate or ist.guessed_rate or Fraction(25)
        with av.open(dst, "w", format=fmt) as out:
            ost = out.add_stream(CODECS[codec], rate=rate)
            w, h = ist.codec_context.width, ist.codec_context.height
            ost.width, ost.height, ost.pix_fmt = w - w % 2, h - h % 2, "yuv420p"  # 4:2:0 needs even sides
            ost.codec_context.gop_size = gop
            ost.codec_context.max_b_frames = 0
            ost.codec_context.options = options
            for frame in inp.decode(ist):
                frame = frame.reformat(width=ost.width, height=ost.height, format="yuv420p")
                frame.pts, frame.time_base = n, 1 / Fraction(rate)
                frame.pict_type = 0  # AV_PICTURE_TYPE_NONE: let the encoder choose (a source B-frame flag is refused)
                out.mux(ost.encode(frame))
                n += 1
            out.mux(ost.encode(None))
    if n == 0:
        raise ValueError("no decodable video frames")
    return n


def main(argv: list[str] | None = None) -> dict:
    parser = add_shard_args(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    parser.add_argument("--codec", choices=sorted(CODECS), default="mpeg4")
    parser.add_argument("--gop", type=int, default=12, help="frames between I-frames (CoViAR / CMD: 12)")
    parser.add_argument("--quality", type=float, default=None, help="mpeg4 qscale (default 3) or h264 CRF (18)")
    args = parser.parse_args(argv)
    if args.gop < 1:
        parser.error(f"--gop must be >= 1, got {args.gop}")

    def work(src: str, tmp: str) -> None:
        fmt = FORMATS.get(os.path.splitext(src)[1].lower(), "mp4")
        reencode(src, tmp, args.codec, args.gop, args.quality, container_format=fmt)

    return run_per_video(args, "", work, f"re-encode ({args.codec}, GOP {args.gop})")

