"""TAP-Vid point tracking (Doersch et al. 2022) with the propagation point tracker of vidssl/eval/point_track.py,
scored as the reference scores it (google-deepmind/tapnet, tapnet/tapvid/evaluation_datasets.py; see
vidssl/eval/tapvid_metrics.py).

Queries come from the ground truth: `first` (each track's first visible point; frames after it are scored) or
`strided` (every track visible at frames 0, 5, 10, ...; every other frame scored). The tracker runs on the frames
as read (or at the protocol's --input-size); predictions and ground truth are rescaled to the 256 x 256 raster
for scoring, as the paper's numbers are (the TAP-Vid README lists full-resolution runs as their own category).
Per video: occlusion accuracy, the fraction of visible points within 1, 2, 4, 8, 16 px, the Jaccard at each threshold,
their averages; the benchmark number is the mean over videos.
"""
from __future__ import annotations

import csv
import os
import time

import cv2
import numpy as np
import torch

from vidssl.eval.tasks import EvalContext, EvalTask, TaskResult, register_task

RASTER = (256, 256)


def draw_tracks(frames: np.ndarray, tracks: np.ndarray, occluded: np.ndarray, query_frames: np.ndarray,
                trail: int = 10) -> list[np.ndarray]:
    """Frames with each query's point (filled when predicted visible, a ring when occluded) and the trail of its
    last `trail` positions, from its query frame on (before it, for backward-tracked queries, no trail)."""
    n = len(tracks)
    colors = cv2.applyColorMap(np.uint8(np.arange(n) * 255 // max(n, 1))[:, None], cv2.COLORMAP_HSV)[:, 0, ::-1]
    out = []
    for t, frame in enumerate(frames):
        img = np.ascontiguousarray(frame).copy()
        for i in range(n):
            color = tuple(int(c) for c in colors[i])
            start = max(t - trail, 0)
            seg = tracks[i, start:t + 1]
            vis = ~occluded[i, start:t + 1]
            for a in range(len(seg) - 1):
                if vis[a] and vis[a + 1]:
                    cv2.line(img, tuple(round(v) for v in seg[a]), tuple(round(v) for v in seg[a + 1]),
                             color, 1, cv2.LINE_AA)
            p = tuple(round(v) for v in tracks[i, t])
            cv2.circle(img, p, 3, color, 1 if occluded[i, t] else -1, cv2.LINE_AA)
            if t == int(query_frames[i]):
                cv2.circle(img, p, 5, (255, 255, 255), 1, cv2.LINE_AA)
        out.append(img)
    return out


def evaluate_video(ctx: EvalContext, video, query_mode: str, tracker: dict, chunk: int) -> dict:
    """Track and score one TapVidVideo; returns predictions (pixels of the frames as read) and metrics."""
    from vidssl.eval.encoder import frame_features
    from vidssl.eval.point_track import track_points
    from vidssl.eval.protocol import input_shape
    from vidssl.eval.tapvid_metrics import (
        compute_tapvid_metrics,
        sample_queries_first,
        sample_queries_strided,
        to_raster,
    )
    from vidssl.eval.tasks.davis import resize_frames

    T, H, W = video.video.shape[:3]
    gt_px = video.points.astype(np.float64) * np.array([W, H])  # [0, 1] -> pixels of the frames as read
    sample = sample_queries_first if query_mode == "first" else sample_queries_strided
    q = sample(video.occluded, gt_px)
    frames = resize_frames(torch.from_numpy(video.video), input_shape(ctx.protocol.input_size, H, W))
    h_run, w_run = frames.shape[1:3]
    t0 = time.perf_counter()
    feats = frame_features(ctx.encoder, frames, ctx.device, clip_len=ctx.protocol.clip_len)
    t1 = time.perf_counter()
    sy, sx = h_run / H, w_run / W
    q_run = q["query_points"] * np.array([1.0, sy, sx])
    tracks, occluded = track_points(feats, q_run, (h_run, w_run), ctx.protocol, chunk=chunk, **tracker)
    t2 = time.perf_counter()
    tracks = tracks.astype(np.float64) / np.array([sx, sy])  # back to pixels of the frames as read
    # scoring on the 256 x 256 raster (the reference's convention: points in [0, 1] times 256)
    qp_r = q["query_points"] * np.array([1.0, RASTER[0] / H, RASTER[1] / W])
    metrics = compute_tapvid_metrics(qp_r[None], q["occluded"][None], to_raster(q["target_points"], (H, W))[None],
                                     occluded[None], to_raster(tracks, (H, W))[None], query_mode)
    return {"tracks": tracks.astype(np.float32), "occluded": occluded, "query_points": q["query_points"],
            "track": q["track"], "metrics": {k: float(v[0]) for k, v in metrics.items()},
            "features_s": t1 - t0, "tracking_s": t2 - t1, "frames": T, "queries": len(q_run)}


@register_task("tapvid")
class TapVidTask(EvalTask):
    """TAP-Vid point tracking: every query (from the ground truth, --query-mode first|strided) is a small
    Gaussian label on its frame, propagated forward and backward with the DAVIS protocol; position = soft argmax,
    occlusion = forward-backward cycle error (or the map's peak). Scored with tapnet's TAP-Vid metrics on the
    256 x 256 raster: AJ, <delta^x_avg, OA, per video and their mean.

    Data: a TAP-Vid pickle (DAVIS dict, RGB-Stacking list, Kinetics shard with JPEG frames), read without
    running code, or a folder of <video>.npz (video/points/occluded, or frames in <video>/ or <video>.mp4)."""

    help = "TAP-Vid point tracking (AJ, <delta_avg, OA)"

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("--data", required=True,
                            help="a TAP-Vid .pkl, a folder of .pkl shards (Kinetics), or a folder of <video>.npz")
        parser.add_argument("--query-mode", default="first", choices=["first", "strided"])
        parser.add_argument("--videos", help="comma-separated video names (default: all)")
        parser.add_argument("--to-npz", metavar="DIR", help="also write each video of the pickle to DIR/<video>.npz "
                                                               "(the plain layout: read it later with --data DIR)")
        parser.add_argument("--occlusion", default="cycle", choices=["cycle", "peak", "none"],
                            help="occlusion rule: forward-backward cycle error, propagated peak, or never")
        parser.add_argument("--cycle-threshold", type=float,
                            help="cycle error (px of the frames the encoder reads) above which a point is occluded "
                                 "(default: 2 feature cells)")
        parser.add_argument("--peak-threshold", type=float, default=0.1, help="for --occlusion peak")
        parser.add_argument("--label-sigma", type=float, default=0.5,
                            help="query Gaussian in feature cells (<= 0: one-hot cell)")
        parser.add_argument("--decode-window", type=int, default=1,
                            help="soft argmax over the cells within this many cells of the peak")
        parser.add_argument("--query-chunk", type=int, default=64, help="queries propagated together (memory)")

    def __init__(self, args):
        super().__init__(args)
        if not os.path.exists(args.data):
            raise FileNotFoundError(f"--data {args.data} not found")
        if args.decode_window < 0 or args.query_chunk < 1:
            raise ValueError("--decode-window must be >= 0 and --query-chunk >= 1")
        if args.to_npz and os.path.isdir(args.data) and any(n.endswith(".npz") for n in os.listdir(args.data)):
            raise ValueError("--to-npz converts pickles; --data is already a folder of .npz")
        if args.to_npz:
            from vidssl.eval.runner import check_out

            check_out(args.to_npz, self.data_roots(), "--to-npz")

    def data_roots(self) -> list[str]:
        # a folder of .npz or of pickle shards is the dataset (a single .pkl names no folder);
        # --to-npz may not be written into it either
        return [self.args.data] if os.path.isdir(self.args.data) else []

    def run(self, ctx: EvalContext) -> TaskResult:
        from tqdm import tqdm

        from vidssl.data.tapvid import count_videos, read_tapvid, write_npz
        from vidssl.eval.overlays import save_video
        from vidssl.eval.tapvid_metrics import METRIC_NAMES

        a = self.args
        names = a.videos.split(",") if a.videos else None
        tracker = {"occlusion": a.occlusion, "cycle_threshold": a.cycle_threshold,
                   "peak_threshold": a.peak_threshold, "sigma": a.label_sigma, "decode_window": a.decode_window}
        print(f"TAP-Vid from {a.data}, query mode {a.query_mode}; encoder: {ctx.description}")
        track_dir = os.path.join(ctx.out, "tracks")
        os.makedirs(track_dir, exist_ok=True)
        rows, timing = [], {"frames": 0, "queries": 0, "features_s": 0.0, "tracking_s": 0.0}
        for video in tqdm(read_tapvid(a.data, names), total=count_videos(a.data), desc="videos", unit="video"):
            if a.to_npz:
                write_npz(video, a.to_npz)
            r = evaluate_video(ctx, video, a.query_mode, tracker, a.query_chunk)
            np.savez(os.path.join(track_dir, video.name + ".npz"), tracks=r["tracks"], occluded=r["occluded"],
                     query_points=r["query_points"].astype(np.float32), track=r["track"])
            if ctx.overlays:
                save_video(draw_tracks(video.video, r["tracks"], r["occluded"], r["query_points"][:, 0]),
                           os.path.join(ctx.out, video.name + ".mp4"))
            rows.append({"video": video.name, **r["metrics"]})
            for k in timing:
                timing[k] += r[k]
        if not rows:
            raise ValueError(f"{a.data}: no videos to evaluate")
        # the benchmark number: the plain mean over videos (videos with nothing to score, NaN, left out)
        mean = {k: float(np.nanmean([r[k] for r in rows])) for k in METRIC_NAMES}
        with open(os.path.join(ctx.out, "metrics.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["video", *METRIC_NAMES])
            writer.writeheader()
            for row in rows + [{"video": "mean", **mean}]:
                writer.writerow({k: (v if k == "video" else f"{v:.6f}") for k, v in row.items()})
        per_frame = timing["tracking_s"] / max(timing["frames"], 1)
        p = ctx.protocol
        headline = {"AJ": 100 * mean["average_jaccard"], "delta_avg": 100 * mean["average_pts_within_thresh"],
                    "OA": 100 * mean["occlusion_accuracy"]}
        report = (f"TAP-Vid ({a.query_mode}, {len(rows)} video(s), scored on the 256x256 raster): "
                  f"AJ {headline['AJ']:.1f}   <delta_avg {headline['delta_avg']:.1f}   OA {headline['OA']:.1f}\n"
                  f"protocol: top-{p.topk}, temperature {p.temperature}, {p.n_context} context frames, radius "
                  f"{p.radius}; occlusion {a.occlusion}; tracked at "
                  f"{'the frames as read' if p.input_size == 'native' else p.input_size}\n"
                  f"{timing['frames']} frames, {timing['queries']} queries: features {timing['features_s']:.1f}s, "
                  f"tracking {timing['tracking_s']:.1f}s ({per_frame * 1000:.0f} ms/frame)\n"
                  f"tracks in {track_dir}, metrics in {os.path.join(ctx.out, 'metrics.csv')}")
        return TaskResult(headline=headline, rows=rows, report=report,
                          details={"dataset": a.data, "query_mode": a.query_mode, "raster": list(RASTER),
                                   "input_size": p.input_size, "tracker": tracker, "timing": timing,
                                   "mean": mean})
