"""Feature-extraction throughput on real videos: `vidssl extract` in 1 and 2 processes (ranks as torchrun sets
them) against a plain loop (open, decode the whole video, forward, np.save), dense and clip modes.

    python benchmarks/bench_extract.py [--videos a.mp4 ...] [--short-side 128] [--modes dense clip]

Each run is a fresh subprocess; its time runs from the start of extraction (after the imports) in the first
process to the end of the last one, so process start-up is not counted for anyone. The plain loop and the
1-process run use torch's default threads; each of the 2 processes gets OMP_NUM_THREADS = cores / 2.
Default videos: the three sample clips of ../shared/data/videos and the first 3 DAVIS-2016 training mp4s.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED = os.path.join(ROOT, "..", "shared", "data", "videos")
BACKBONE = "crw_resnet18"


def plain_loop(videos: list[str], out: str, mode: str, short_side: int, clip_len: int) -> None:
    """The baseline a user would write: one video at a time, decode it whole, run the network, save."""
    import numpy as np
    import torch

    from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize, resize_frame, short_side_size
    from vidssl.eval.encoder import frame_features, load_encoder
    from vidssl.io import VideoReader
    from vidssl.models.dense import global_clip_features

    encoder, _ = load_encoder(None, BACKBONE, "random", dense=mode == "dense")
    device = torch.device("cpu")
    for path in videos:
        with VideoReader(path) as reader:
            frames = reader.get_frames(range(reader.num_frames)).numpy()
        size = short_side_size(*frames.shape[1:3], short_side)
        frames = torch.from_numpy(np.stack([resize_frame(f, size) for f in frames]))
        if mode == "dense":
            feats = frame_features(encoder, frames, device, clip_len=clip_len).half().numpy()
        else:
            x = normalize(frames.permute(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
            with torch.no_grad():
                feats = global_clip_features(encoder, x, clip_len).float().numpy()
        np.save(os.path.join(out, os.path.basename(path) + ".npy"), feats)


def _child(args: argparse.Namespace) -> None:
    """One timed run in this process: prints {"start": ..., "end": ...}."""
    if args.runner == "plain":
        start = time.time()
        plain_loop(args.videos, args.out, args.mode, args.short_side, args.clip_len)
    else:
        from vidssl.features import main as extract

        listing = os.path.join(args.out, "..", "videos.txt")
        start = time.time()
        extract(["--input", listing, "--out", args.out, "--backbone", BACKBONE, "--init", "random", "--mode",
                 args.mode, "--short-side", str(args.short_side), "--clip-len", str(args.clip_len),
                 "--workers", str(args.workers)])
    print(json.dumps({"start": start, "end": time.time()}))


def _run(runner: str, processes: int, videos: list[str], mode: str, work: str, args) -> float:
    out = os.path.join(work, f"{runner}{processes}_{mode}")
    os.makedirs(out)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", runner, "--out", out, "--mode", mode,
           "--short-side", str(args.short_side), "--clip-len", str(args.clip_len), "--workers", str(args.workers),
           "--videos", *videos]
    threads = max((os.cpu_count() or 2) // processes, 1)
    procs = []
    for rank in range(processes):
        env = {**os.environ, "PYTHONPATH": ROOT}
        if processes > 1:
            env.update(RANK=str(rank), WORLD_SIZE=str(processes), LOCAL_RANK=str(rank), OMP_NUM_THREADS=str(threads))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    times = []
    for p in procs:
        stdout = p.communicate()[0]
        if p.returncode:
            raise RuntimeError(f"{runner} x{processes} ({mode}) failed:\n{stdout}")
        times.append(json.loads(stdout.strip().splitlines()[-1]))
    return max(t["end"] for t in times) - min(t["start"] for t in times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", nargs="*")
    p.add_argument("--modes", nargs="*", default=["dense", "clip"])
    p.add_argument("--short-side", type=int, default=128)
    p.add_argument("--clip-len", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="decoding workers per vidssl process")
    p.add_argument("--child", choices=["plain", "vidssl"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.runner = args.child
        _child(args)
        return
    from benchmarks.common import machine, print_table
    from vidssl.io import VideoReader

    videos = args.videos or (sorted(glob.glob(os.path.join(SHARED, "*.mp4")))
                             + sorted(glob.glob(os.path.join(SHARED, "davis2016-train", "*.mp4")))[:3])
    if not videos:
        sys.exit(f"no videos: pass --videos or provide {SHARED}")
    frames = 0
    for v in videos:
        with VideoReader(v) as r:
            frames += r.num_frames
    work = tempfile.mkdtemp(prefix="bench_extract_")
    try:
        with open(os.path.join(work, "videos.txt"), "w") as f:
            f.writelines(os.path.abspath(v) + "\n" for v in videos)
        rows = []
        for mode in args.modes:
            base = None
            for runner, processes in (("plain", 1), ("vidssl", 1), ("vidssl", 2)):
                seconds = _run(runner, processes, videos, mode, work, args)
                base = base or seconds
                name = "plain loop" if runner == "plain" else f"vidssl extract, {processes} process(es)"
                rows.append([mode, name, f"{len(videos) / seconds:.2f}", f"{frames / seconds:.1f}",
                             f"{base / seconds:.2f}x"])
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{machine()}; {len(videos)} videos, {frames} frames, {BACKBONE} (random init), short side "
          f"{args.short_side}, clip length {args.clip_len}, {args.workers} decoding worker(s) per vidssl process\n")
    print_table("Feature extraction throughput", ["mode", "runner", "videos/s", "frames/s", "vs plain loop"], rows)


if __name__ == "__main__":
    main()
