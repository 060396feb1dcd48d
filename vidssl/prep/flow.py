"""Precompute optical flow for the motion-statistics pretext task (sts; Wang et al. CVPR 2019, whose reference
laura-wang/video_repres_sts trains on the TV-L1 UCF101 flow of feichtenhofer/twostreamfusion).

    python -m data_prep.flow --root VIDEOS --out FLOW [--shard I --num-shards N] [--algorithm auto|tvl1|dis]

For each video, OUT/<its path relative to --root>.flow/ holds u/%06d.jpg and v/%06d.jpg (flow k = frame k ->
frame k + 1, 0-based decoded frame numbers as vidssl's readers count them) and meta.json. Storage as the
reference's data (dense_flow): each component clipped to +-20 px and stored in 8 bits as
round((f + 20) * 255 / 40), grayscale JPEG (--format png: lossless). Flow is computed on frames resized to
--short-side px (only when larger; 0 = native size) and is in the pixels of that size; meta.json records both
sizes so training maps its crop boxes (source pixels) onto the flow. TV-L1 (cv2.optflow, opencv-contrib) when
installed, else OpenCV's DIS ("medium" preset): DIS is much faster and coarser.

Sharded, resumable, failures listed: see data_prep/shards.py. Read back with vidssl.data.statistics.read_flow.
"""
from __future__ import annotations

import argparse
import json
import os

import cv2
import numpy as np

from vidssl.data.augment import resize_frame, short_side_size
from vidssl.data.statistics import FLOW_BOUND, FLOW_SUFFIX, encode_flow, flow_estimator
from vidssl.io import open_video
from vidssl.prep.shards import add_shard_args, non_negative_int, run_per_video

CHUNK = 32  # frames decoded at a time


def _resize(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Downscale only (area averaging), so that the short side is `short_side`."""
    if short_side <= 0 or min(frame.shape[:2]) <= short_side:
        return frame
    return resize_frame(frame, short_side_size(*frame.shape[:2], short_side))


def compute_video_flow(source: str, dest: str, algorithm: str = "auto", dis_preset: str = "medium",
                       short_side: int = 256, fmt: str = "jpg", quality: int = 95, backend: str = "auto") -> dict:
    """Write the flow of every pair of consecutive frames of `source` under `dest` (a folder); returns meta."""
    name, calc = flow_estimator(algorithm, dis_preset)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for comp in ("u", "v"):
        os.makedirs(os.path.join(dest, comp), exist_ok=True)
    with open_video(source, backend=backend) as reader:
        n = reader.num_frames
        if n < 2:
            raise ValueError(f"{n} frame(s): no flow")
        prev, src_shape, k = None, None, 0
        for start in range(0, n, CHUNK):
            for frame in reader.get_frames(list(range(start, min(n, start + CHUNK)))).numpy():
                src_shape = src_shape or frame.shape[:2]
                gray = cv2.cvtColor(_resize(frame, short_side), cv2.COLOR_RGB2GRAY)
                if prev is not None:
                    flow = encode_flow(calc(prev, gray))
                    for c, comp in enumerate(("u", "v")):
                        path = os.path.join(dest, comp, f"{k:06d}.{fmt}")
                        if not cv2.imwrite(path, flow[..., c], params):
                            raise OSError(f"could not write {path}")
                    k += 1
                prev = gray
    meta = {"num_frames": n, "flow_frames": k, "height": int(prev.shape[0]), "width": int(prev.shape[1]),
            "source_height": int(src_shape[0]), "source_width": int(src_shape[1]), "bound": FLOW_BOUND,
            "algorithm": name, "format": fmt, "index": "flow k = frame k -> frame k + 1"}
    with open(os.path.join(dest, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main(argv=None) -> int:
    p = add_shard_args(argparse.ArgumentParser(description=__doc__,
                                               formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument("--algorithm", default="auto", choices=["auto", "tvl1", "dis"],
                   help="auto = TV-L1 when opencv-contrib is installed, else DIS")
    p.add_argument("--dis-preset", default="medium", choices=["ultrafast", "fast", "medium"])
    p.add_argument("--short-side", type=non_negative_int, default=256, help="downscale frames to this short side (0: native)")
    p.add_argument("--format", default="jpg", choices=["jpg", "png"], help="jpg as the reference; png lossless")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    p.add_argument("--backend", default="auto", help="video decoding backend (vidssl.io)")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)  # one core per job: run several shards side by side
    name, _ = flow_estimator(args.algorithm, args.dis_preset)

    def work(source: str, tmp: str) -> None:
        compute_video_flow(source, tmp, args.algorithm, args.dis_preset, args.short_side, args.format,
                           args.quality, args.backend)

    result = run_per_video(args, FLOW_SUFFIX, work, desc=f"flow ({name})")
    return 1 if result["failed"] else 0

