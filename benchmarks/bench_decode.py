"""Decode throughput per backend on real clips: random 4-frame clips at 8 fps (the CRW sampling) and
sequential frames. With --gpu, also the backends that decode on the GPU (torchcodec's CUDA build: NVDEC),
frames handed over as CUDA tensors; a backend that cannot decode there gets a row saying why.

  python benchmarks/bench_decode.py [--videos a.mp4 b.mp4 ...] [--clips 20]
  python benchmarks/bench_decode.py --gpu --clips 10            # on a GPU machine
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import machine, print_row, print_table  # noqa: E402
from vidssl.data import frame_step, random_clip_indices  # noqa: E402
from vidssl.io import VideoReader, available_backends  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "videos")
GPU_BACKENDS = ("torchcodec", "decord")  # the ones VideoReader can ask to decode on a GPU


def bench(path: str, backend: str, clips: int, seq_frames: int = 64, device: str = "cpu",
          seed: int = 0) -> tuple[float, float]:
    """(clips/s for random 4-frame clips opened fresh each time, frames/s sequential)."""
    def done(frames: torch.Tensor) -> None:
        if frames.is_cuda:
            torch.cuda.synchronize(frames.device)

    rng = np.random.default_rng(seed)
    with VideoReader(path, backend=backend, device=device) as v:  # warm-up (GPU: the decoder's context)
        done(v.get_frames([0]))
    t = time.perf_counter()
    for _ in range(clips):
        with VideoReader(path, backend=backend, device=device) as v:
            done(v.get_frames(random_clip_indices(v.num_frames, 4, frame_step(v.fps, 8), rng)))
    clip_rate = clips / (time.perf_counter() - t)
    with VideoReader(path, backend=backend, device=device) as v:
        n = min(v.num_frames, seq_frames)
        t = time.perf_counter()
        done(v.get_frames(range(n)))
        seq_rate = n / (time.perf_counter() - t)
    return clip_rate, seq_rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", nargs="*")
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--seq-frames", type=int, default=64, help="frames read in order for the sequential rate")
    p.add_argument("--max-videos", type=int, help="only the first N videos")
    p.add_argument("--backends", help="comma-separated CPU backends (default: every installed one, then auto)")
    p.add_argument("--gpu", action="store_true", help="also decode on the GPU (cuda) with " + ", ".join(GPU_BACKENDS))
    args = p.parse_args()
    videos = args.videos or sorted(glob.glob(os.path.join(SHARED, "*.mp4")))[:3] + sorted(
        glob.glob(os.path.join(SHARED, "davis2016-train", "*.mp4")))[:2]
    if not videos:
        from vidssl.data.sample_videos import sample_videos
        videos = sample_videos()
    videos = videos[:args.max_videos] if args.max_videos else videos
    backends = args.backends.split(",") if args.backends else [*available_backends(), "auto"]
    rows = []
    for path in videos:
        with VideoReader(path) as v:
            first = v.get_frames([0])
            desc = f"{os.path.basename(path)} ({first.shape[2]}x{first.shape[1]}, {v.num_frames} fr)"
        runs = [(b, "cpu") for b in backends] + ([(b, "cuda") for b in GPU_BACKENDS] if args.gpu else [])
        for backend, device in runs:
            name = backend if device == "cpu" else f"{backend} (cuda)"
            try:
                c, s = bench(path, backend, args.clips, args.seq_frames, device)
            except Exception as e:  # a GPU build missing is a result here, not a crash
                rows.append([desc, name, "-", "-", f"unavailable: {(str(e).splitlines() or [repr(e)])[0][:120]}"])
            else:
                rows.append([desc, name, f"{c:.1f}", f"{c * 4:.0f}", f"{s:.0f}"])
            print_row(rows[-1])
    print_table(f"Decode throughput on {machine()}", ["video", "backend", "clips/s", "clip frames/s",
                                                       "sequential frames/s"], rows)


if __name__ == "__main__":
    main()
