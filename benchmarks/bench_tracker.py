"""Time per frame of the propagation point tracker (vidssl/eval/point_track.py) on this machine: features
(frame_features) and tracking (propagation forward/backward + soft argmax + cycle check) of a synthetic video,
for TAP-Vid's query modes, at 256 x 256 (the TAP-Vid raster) and DAVIS 480p (480 x 854), with a random-init
crw_resnet18 (stride 8, 256 channels; the weights do not change the time) and the default DAVIS protocol.

  python benchmarks/bench_tracker.py                      # 256x256 and 480p, 24 frames, 20 tracks
  python benchmarks/bench_tracker.py --sizes 256x256 --frames 50 --tracks 50 --threads 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import machine, peak_rss_mb, print_table
from vidssl.eval.encoder import frame_features, load_encoder
from vidssl.eval.point_track import track_points
from vidssl.eval.protocol import Protocol
from vidssl.eval.tapvid_metrics import sample_queries_first, sample_queries_strided


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256x256,480x854")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--tracks", type=int, default=20)
    p.add_argument("--backbone", default="crw_resnet18")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    enc, desc = load_encoder(None, a.backbone, "random")
    rng = np.random.default_rng(0)
    rows = []
    for size in a.sizes.split(","):
        H, W = (int(v) for v in size.split("x"))
        video = torch.from_numpy(rng.integers(0, 256, (a.frames, H, W, 3), dtype=np.uint8))
        t0 = time.perf_counter()
        feats = frame_features(enc, video, torch.device("cpu"))
        feat_s = time.perf_counter() - t0
        points = rng.random((a.tracks, a.frames, 2)) * [W, H]
        occluded = rng.random((a.tracks, a.frames)) < 0.2
        for mode, sample in (("first", sample_queries_first), ("strided", sample_queries_strided)):
            q = sample(occluded, points)["query_points"]
            t0 = time.perf_counter()
            track_points(feats, q, (H, W), Protocol())
            track_s = time.perf_counter() - t0
            rows.append([f"{H}x{W}", f"{tuple(feats.shape[-2:])}", mode, len(q),
                         len(np.unique(q[:, 0])), f"{1000 * feat_s / a.frames:.0f}",
                         f"{1000 * track_s / a.frames:.0f}", f"{peak_rss_mb():.0f}"])
    print(f"{machine()}; {desc}; {a.frames} frames, {a.tracks} tracks (20% occluded at random), default protocol")
    print_table("Point tracker time per frame", ["frames", "feature cells", "query mode", "queries",
                                                  "query frames", "features ms/frame", "tracking ms/frame",
                                                  "peak RSS MB"], rows)


if __name__ == "__main__":
    main()
