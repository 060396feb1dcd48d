"""Decode throughput per backend on real clips: random 4-frame clips at 8 fps (the CRW sampling) and
sequential frames. python benchmarks/bench_decode.py [--videos a.mp4 b.mp4 ...] [--clips 20]"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import machine, print_table  # noqa: E402
from vidssl.data import frame_step, random_clip_indices  # noqa: E402
from vidssl.io import VideoReader, available_backends  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "videos")


def bench(path: str, backend: str, clips: int, seed: int = 0) -> tuple[float, float]:
    """(clips/s for random 4-frame clips opened fresh each time, frames/s sequential)."""
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for _ in range(clips):
        with VideoReader(path, backend=backend) as v:
            v.get_frames(random_clip_indices(v.num_frames, 4, frame_step(v.fps, 8), rng))
    clip_rate = clips / (time.perf_counter() - t)
    with VideoReader(path, backend=backend) as v:
        n = min(v.num_frames, 64)
        t = time.perf_counter()
        v.get_frames(range(n))
        seq_rate = n / (time.perf_counter() - t)
    return clip_rate, seq_rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--videos", nargs="*")
    p.add_argument("--clips", type=int, default=20)
    args = p.parse_args()
    videos = args.videos or sorted(glob.glob(os.path.join(SHARED, "*.mp4")))[:3] + sorted(
        glob.glob(os.path.join(SHARED, "davis2016-train", "*.mp4")))[:2]
    if not videos:
        from vidssl.data.sample_videos import sample_videos
        videos = sample_videos()
    rows = []
    for path in videos:
        with VideoReader(path) as v:
            desc = f"{os.path.basename(path)} ({v.get_frames([0]).shape[2]}x{v.get_frames([0]).shape[1]}, {v.num_frames} fr)"
        results = {b: bench(path, b, args.clips) for b in available_backends()}
        results["auto"] = bench(path, "auto", args.clips)
        for b, (c, s) in results.items():
            rows.append([desc, b, f"{c:.1f}", f"{c * 4:.0f}", f"{s:.0f}"])
    print_table(f"Decode throughput on {machine()}", ["video", "backend", "clips/s", "clip frames/s",
                                                       "sequential frames/s"], rows)


if __name__ == "__main__":
    main()
