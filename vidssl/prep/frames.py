"""Extract videos to JPEG frame folders, the layout most video SSL codes train from (frame folders of Kinetics,
UCF101, ...): random access is one small JPEG decode instead of a seek plus the decode of a whole group of
pictures, which on a CPU is what lets data keep up with a small model (benchmarks/RESULTS.md).

  python -m data_prep.frames --root videos/ --out frames/ [--short-side 128] [--shard I --num-shards N]

Each video becomes OUT/<its relative path>/ with 00000.jpg, 00001.jpg, ... (every frame, resized so that its
short side is --short-side, 0 = native); train with data.root=OUT (frame folders, data.folder_fps to keep
data.frame_rate meaningful, else data.frame_skip). Sharded, resumable, failures listed (data_prep/shards.py).
"""
from __future__ import annotations

import argparse
import os

import cv2

from vidssl.data.augment import resize_frame, short_side_size
from vidssl.io import open_video
from vidssl.prep.shards import add_shard_args, non_negative_int, run_per_video

CHUNK = 32  # frames decoded at a time


def extract_frames(source: str, dest: str, short_side: int = 128, quality: int = 90, backend: str = "auto") -> int:
    """Write every frame of `source` as dest/%05d.jpg; returns the number of frames."""
    os.makedirs(dest, exist_ok=True)
    with open_video(source, backend=backend) as reader:
        n = reader.num_frames
        for start in range(0, n, CHUNK):
            for k, frame in enumerate(reader.get_frames(list(range(start, min(n, start + CHUNK)))).numpy()):
                if short_side:
                    frame = resize_frame(frame, short_side_size(*frame.shape[:2], short_side))
                path = os.path.join(dest, f"{start + k:05d}.jpg")
                if not cv2.imwrite(path, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
                    raise OSError(f"could not write {path}")
    return n


def main(argv=None) -> int:
    p = add_shard_args(argparse.ArgumentParser(description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--short-side", type=non_negative_int, default=128,
                   help="resize so the short side is this (0: native)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--backend", default="auto", help="video decoding backend (vidssl.io)")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)  # one core per job: run several shards side by side
    result = run_per_video(args, "", lambda src, tmp: extract_frames(src, tmp, args.short_side, args.quality,
                                                                      args.backend), desc="frames")
    return 1 if result["failed"] else 0

