"""Optical flow throughput per core (cv2.setNumThreads(1)) for the sts pretext task, on real clips: OpenCV DIS at
its presets and TV-L1 (the reference's flow; needs opencv-contrib, reported as missing otherwise), frames resized
to a short side of 112 and 256 px; plus the sts label computation per 16-frame 112 px clip.
python benchmarks/bench_flow.py [--videos a.mp4 ...] [--frames 17]"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import machine, print_table  # noqa: E402
from vidssl.data.augment import resize_frame, short_side_size  # noqa: E402
from vidssl.data.statistics import appearance_labels, flow_estimator, has_tvl1, motion_labels  # noqa: E402
from vidssl.io import open_video  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "videos")


def gray_frames(path: str, n: int, short_side: int) -> list[np.ndarray]:
    with open_video(path) as r:
        frames = r.get_frames(list(range(min(n, r.num_frames)))).numpy()
    size = short_side_size(*frames.shape[1:3], short_side)
    return [cv2.cvtColor(resize_frame(f, size), cv2.COLOR_RGB2GRAY) for f in frames]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--videos", nargs="*", default=None)
    p.add_argument("--frames", type=int, default=17)
    args = p.parse_args(argv)
    videos = args.videos or sorted(glob.glob(os.path.join(SHARED, "*.mp4")))
    if not videos:
        from vidssl.data.sample_videos import sample_videos
        videos = sample_videos()
    cv2.setNumThreads(1)
    algos = [("dis", "ultrafast"), ("dis", "fast"), ("dis", "medium")] + ([("tvl1", "")] if has_tvl1() else [])
    rows = []
    for size in (112, 256):
        clips = [gray_frames(v, args.frames, size) for v in videos]
        for algo, preset in algos:
            name, calc = flow_estimator(algo, preset or "medium")
            calc(clips[0][0], clips[0][1])  # warm-up
            pairs, t = 0, time.perf_counter()
            for g in clips:
                for a, b in zip(g[:-1], g[1:]):
                    calc(a, b)
                    pairs += 1
            dt = time.perf_counter() - t
            rows.append([name, f"{clips[0][0].shape[1]}x{clips[0][0].shape[0]}" if len(clips) == 1 else f"short {size}",
                         f"{pairs / dt:.1f}", f"{1000 * dt / pairs:.2f}"])
    if not has_tvl1():
        rows.append(["tvl1", "-", "not installed", "(opencv-contrib-python absent: no cv2.optflow)"])
    print(f"machine: {machine()}; {len(videos)} videos: {', '.join(os.path.basename(v) for v in videos)}\n")
    print_table("Optical flow, one core (frame pairs/s)", ["algorithm", "frames", "pairs/s", "ms/pair"], rows)

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 112, 112, 3)).astype(np.uint8)
    u, v = rng.normal(size=(2, 15, 112, 112)).astype(np.float32)
    reps = 10
    t = time.perf_counter()
    for _ in range(reps):
        motion_labels(u, v)
    tm = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        appearance_labels(rgb)
    ta = (time.perf_counter() - t) / reps
    print_table("sts labels per 16 x 112 x 112 clip, one core", ["labels", "ms/clip"],
                [["motion (15 flows)", f"{1000 * tm:.1f}"], ["appearance", f"{1000 * ta:.1f}"]])


if __name__ == "__main__":
    main()
