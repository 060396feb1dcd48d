"""TAP-Vid queries and scores, with the semantics of the reference evaluation (google-deepmind/tapnet,
tapnet/tapvid/evaluation_datasets.py: sample_queries_first, sample_queries_strided, compute_tapvid_metrics);
an independent numpy implementation.

Conventions (the reference's): tracks are (x, y), query points (t, y, x), all in the same raster; the paper's
numbers use the 256 x 256 raster (points in [0, 1] times 256). Scores are fractions in [0, 1] per video; the
benchmark number is the plain mean over videos.

Which frames count for a query at frame q: mode 'first', the frames after q (t > q; the frames before the
first visible one are known occluded); mode 'strided', every frame but q. A prediction is within a threshold
when its squared distance is strictly below threshold^2 (thresholds 1, 2, 4, 8, 16 px).
"""
from __future__ import annotations

import numpy as np

THRESHOLDS = (1, 2, 4, 8, 16)
METRIC_NAMES = ("occlusion_accuracy", *(f"pts_within_{d}" for d in THRESHOLDS),
                *(f"jaccard_{d}" for d in THRESHOLDS), "average_jaccard", "average_pts_within_thresh")
QUERY_MODES = ("first", "strided")


def sample_queries_first(occluded: np.ndarray, points: np.ndarray) -> dict[str, np.ndarray]:
    """One query per track at its first visible frame; tracks never visible are dropped.

    occluded (N, T) bool, points (N, T, 2) x, y. Returns query_points (M, 3) t, y, x; target_points (M, T, 2);
    occluded (M, T); track (M,) the index of each query's track."""
    occluded = np.asarray(occluded, bool)
    track = np.flatnonzero((~occluded).any(1))
    first = np.argmax(~occluded[track], axis=1)  # first True of each visible row
    xy = points[track, first]
    query_points = np.stack([first.astype(np.float64), xy[:, 1], xy[:, 0]], 1)
    return {"query_points": query_points, "target_points": points[track], "occluded": occluded[track],
            "track": track}


def sample_queries_strided(occluded: np.ndarray, points: np.ndarray, stride: int = 5) -> dict[str, np.ndarray]:
    """Queries at frames 0, stride, 2 stride, ...: every track visible at such a frame gives one query there
    (a track can give several); ordered by query frame, then track (the reference's order).

    Same arrays as sample_queries_first; `track` is the reference's `trackgroup`."""
    occluded = np.asarray(occluded, bool)
    frames = np.arange(0, occluded.shape[1], stride)
    qf, track = np.nonzero(~occluded[:, frames].T)  # row-major over (query frame, track)
    t = frames[qf]
    xy = points[track, t]
    query_points = np.stack([t.astype(np.float64), xy[:, 1], xy[:, 0]], 1)
    return {"query_points": query_points, "target_points": points[track], "occluded": occluded[track],
            "track": track}


def evaluation_mask(query_frames: np.ndarray, n_frames: int, query_mode: str) -> np.ndarray:
    """(..., T) bool: the frames scored for each query (see the module docstring)."""
    if query_mode not in QUERY_MODES:
        raise ValueError(f"query_mode must be one of {QUERY_MODES}, not {query_mode!r}")
    q = np.round(query_frames).astype(np.int64)[..., None]
    t = np.arange(n_frames)
    return t > q if query_mode == "first" else t != q


def compute_tapvid_metrics(query_points: np.ndarray, gt_occluded: np.ndarray, gt_tracks: np.ndarray,
                           pred_occluded: np.ndarray, pred_tracks: np.ndarray, query_mode: str,
                           trackwise: bool = False) -> dict[str, np.ndarray]:
    """TAP-Vid metrics per video (per track with `trackwise`), as fractions.

    query_points (B, N, 3) t, y, x; gt_occluded / pred_occluded (B, N, T) bool; gt_tracks / pred_tracks
    (B, N, T, 2) x, y, in the scoring raster (256 x 256 for the paper's numbers). Returns METRIC_NAMES ->
    (B,) arrays ((B, N) with `trackwise`): occlusion_accuracy (predicted == true occlusion over the scored
    frames); pts_within_d (visible scored points predicted within d px, occlusion prediction ignored);
    jaccard_d = TP / (visible + FP), TP = visible, predicted visible and within d, FP = predicted visible
    and (occluded or not within d); their means over d. A video with nothing to score gives NaN (0 / 0)."""
    gt_occluded, pred_occluded = np.asarray(gt_occluded, bool), np.asarray(pred_occluded, bool)
    evaluated = evaluation_mask(np.asarray(query_points)[..., 0], gt_occluded.shape[-1], query_mode)
    axes = (-1,) if trackwise else (-2, -1)
    visible, pred_visible = ~gt_occluded, ~pred_occluded

    def count(mask: np.ndarray) -> np.ndarray:
        return np.sum(mask & evaluated, axis=axes)

    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        out["occlusion_accuracy"] = count(pred_occluded == gt_occluded) / count(np.ones_like(visible))
        sq_dist = np.sum((np.asarray(pred_tracks, np.float64) - np.asarray(gt_tracks, np.float64)) ** 2, axis=-1)
        n_visible = count(visible)
        within_all, jaccard_all = [], []
        for d in THRESHOLDS:
            within = sq_dist < d * d
            correct = within & visible
            out[f"pts_within_{d}"] = count(correct) / n_visible
            false_pos = pred_visible & (~visible | ~within)
            out[f"jaccard_{d}"] = count(correct & pred_visible) / (n_visible + count(false_pos))
            within_all.append(out[f"pts_within_{d}"])
            jaccard_all.append(out[f"jaccard_{d}"])
    out["average_jaccard"] = np.mean(jaccard_all, axis=0)
    out["average_pts_within_thresh"] = np.mean(within_all, axis=0)
    return {k: out[k] for k in METRIC_NAMES}


def to_raster(xy: np.ndarray, frame_size: tuple[int, int], raster: tuple[int, int] = (256, 256)) -> np.ndarray:
    """(..., 2) x, y pixels of an (H, W) frame -> the same points on an (H', W') raster (a pure rescale)."""
    H, W = frame_size
    return np.asarray(xy, np.float64) * np.array([raster[1] / W, raster[0] / H])
