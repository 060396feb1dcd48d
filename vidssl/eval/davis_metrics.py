"""DAVIS region (J) and boundary (F) measures with the definitions of the official davis2017-evaluation
(davis2017/metrics.py, utils.py, evaluation.py), vectorised over frames. Numbers are identical to the
official script's; only the speed differs."""
from __future__ import annotations

import math
import os
import warnings

import cv2
import numpy as np


def db_eval_iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Jaccard index per frame of boolean masks (T, H, W) (or one (H, W) mask); 1 where the union is empty."""
    gt, pred = np.asarray(gt, dtype=bool), np.asarray(pred, dtype=bool)
    inter = _count_per_frame(gt & pred)
    union = _count_per_frame(gt | pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        j = inter / union
    return np.where(np.isclose(union, 0), 1.0, j)


def _count_per_frame(x: np.ndarray) -> np.ndarray:
    """np.count_nonzero over the last two axes; a loop of whole-frame counts is several times faster than
    count_nonzero(axis=...), which sums through a cast."""
    frames = x.reshape(-1, *x.shape[-2:])
    return np.array([np.count_nonzero(f) for f in frames], dtype=np.int64).reshape(x.shape[:-2])


_BLOCK = np.ones((2, 2), np.uint8)  # the pixel and its east, south and south-east neighbours


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel boundaries of boolean masks (..., H, W), offset half a pixel towards the origin (D. Martin's
    seg2bmap as the official code implements it): a pixel is boundary when it differs from its east, south or
    south-east neighbour; on the last row only the east neighbour counts, on the last column only the south
    one, and the bottom-right pixel never is. That is: the 2x2 block starting at the pixel is not constant,
    with the image edge replicated, i.e. its 2x2 max differs from its 2x2 min (two OpenCV passes a frame)."""
    seg = np.ascontiguousarray(seg, dtype=bool)
    frames = seg.reshape(-1, *seg.shape[-2:]).view(np.uint8)
    b = np.empty(frames.shape, dtype=bool)
    for i, f in enumerate(frames):
        hi = cv2.dilate(f, _BLOCK, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
        lo = cv2.erode(f, _BLOCK, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
        np.not_equal(hi, lo, out=b[i])
    return b.reshape(seg.shape)


def _crop_to_objects(gt: np.ndarray, pred: np.ndarray, margin: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Both stacks cut to the box around every foreground pixel of either, plus `margin` (clamped to the
    image). With a margin of at least 1 the box's border is background in both wherever it stops short of the
    image edge, so areas, boundaries and their matches are the same as on the whole image."""
    union = (gt | pred).any(axis=0)
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    if len(rows) == 0:
        return gt[:, :1, :1], pred[:, :1, :1]
    H, W = gt.shape[-2:]
    y0, y1 = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, H)
    x0, x1 = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, W)
    return gt[:, y0:y1, x0:x1], pred[:, y0:y1, x0:x1]


def disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk: the points with x^2 + y^2 <= r^2."""
    r = np.arange(-radius, radius + 1)
    return (r[None, :] ** 2 + r[:, None] ** 2 <= radius ** 2).astype(np.uint8)


def disk_rectangles(radius: int) -> list[np.ndarray]:
    """disk(radius) as a union of centred rectangles, one per distinct row half-width w (as tall as the rows
    that reach w). Dilating by each and OR-ing equals dilating by the disk, and rectangles dilate in separable
    passes (about 1.4x faster than the disk kernel here)."""
    half_widths = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    tallest = {w: dy for dy, w in enumerate(half_widths)}  # the last (largest) row offset with half-width w
    return [cv2.getStructuringElement(cv2.MORPH_RECT, (2 * w + 1, 2 * dy + 1)) for w, dy in tallest.items()]


def dilate_disk(b: np.ndarray, rects: list[np.ndarray]) -> np.ndarray:
    """Binary (H, W) bool mask dilated by the disk whose disk_rectangles are `rects` (outside = background)."""
    u = b.view(np.uint8)
    out = cv2.dilate(u, rects[0])
    for r in rects[1:]:
        out |= cv2.dilate(u, r)
    return out.view(bool)


def db_eval_boundary(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008,
                     image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Boundary F-measure per frame of boolean masks (T, H, W). Tolerance ceil(bound_th * image diagonal)
    pixels (bound_th >= 1 is taken as pixels), disk-shaped dilation, and the official empty-boundary rules:
    no predicted and no true boundary -> 1; only one of them -> 0. `image_size` (H, W) is the full image's
    when the masks are crops of it (the tolerance depends on it)."""
    single = gt.ndim == 2
    gt = np.asarray(gt, dtype=bool).reshape(-1, *gt.shape[-2:])
    pred = np.asarray(pred, dtype=bool).reshape(-1, *pred.shape[-2:])
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(image_size or gt.shape[-2:]))
    rects = disk_rectangles(int(bound_pix))
    gt, pred = _crop_to_objects(gt, pred)
    fg_b, gt_b = seg2bmap(pred), seg2bmap(gt)
    n_fg, n_gt = _count_per_frame(fg_b), _count_per_frame(gt_b)
    fg_match, gt_match = np.zeros(len(gt), np.int64), np.zeros(len(gt), np.int64)
    for i, (f, g) in enumerate(zip(fg_b, gt_b)):
        # matches are only counted on boundary pixels, and only boundary pixels dilate: the box around both
        # frames' boundaries holds everything
        x, y, w, h = cv2.boundingRect((f | g).view(np.uint8))
        if w:
            f, g = f[y:y + h, x:x + w], g[y:y + h, x:x + w]
            fg_match[i] = np.count_nonzero(f & dilate_disk(g, rects))
            gt_match[i] = np.count_nonzero(g & dilate_disk(f, rects))
    # no boundary on a side: its precision (or recall) is 1, and the other side's matches are 0, which gives
    # the official rules: both empty -> F = 1, only one empty -> F = 0
    precision = np.where(n_fg > 0, fg_match / np.maximum(n_fg, 1), 1.0)
    recall = np.where(n_gt > 0, gt_match / np.maximum(n_gt, 1), 1.0)
    denom = precision + recall
    f = np.where(denom == 0, 0.0, 2 * precision * recall / np.where(denom == 0, 1, denom))
    return f[0] if single else f


def db_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall (fraction > 0.5) and decay (mean of the first of 4 bins minus the last) of per-frame
    values, NaNs ignored. The official code stores the bin edges as uint8, which would wrap for sequences of
    more than 255 frames (none in DAVIS); here they are plain ints."""
    per_frame = np.asarray(per_frame, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins
        mean = np.nanmean(per_frame)
        recall = np.nanmean(per_frame > 0.5)
        ids = (np.round(np.linspace(1, len(per_frame), 5) + 1e-10) - 1).astype(int)
        bins = [per_frame[ids[i]:ids[i + 1] + 1] for i in range(4)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return float(mean), float(recall), float(decay)


def evaluate_sequence(gt: np.ndarray, res: np.ndarray, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Semi-supervised evaluation of one sequence: gt and res are object-id maps (T, H, W) (void 255 already
    mapped to 0 in gt). The first and last frames are not scored. Objects are 1..max id of the first gt frame.
    Returns J and F, each (objects, T-2)."""
    if gt.shape != res.shape:
        raise ValueError(f"{name}: result masks {res.shape} do not match the ground truth {gt.shape}")
    n_obj = int(gt[0].max())
    gt, res = gt[1:-1], res[1:-1]
    n_res = int(res.max(initial=0))
    if n_res > n_obj:
        raise ValueError(f"{name}: the results contain object id {n_res} but the ground truth has only {n_obj} "
                         f"object(s) in its first frame")
    J = np.zeros((n_obj, gt.shape[0]))
    F = np.zeros((n_obj, gt.shape[0]))
    for k in range(1, n_obj + 1):
        g, r = _crop_to_objects(gt == k, res == k)  # every measure is the same on the object's box
        J[k - 1] = db_eval_iou(g, r)
        F[k - 1] = db_eval_boundary(g, r, image_size=gt.shape[-2:])
    return J, F


def summarize(per_sequence: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[dict, list[tuple[str, float, float]]]:
    """Global table (J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean, F-Recall, F-Decay; means over objects) and
    per-object rows (Sequence "<seq>_<obj>", J-Mean, F-Mean), as evaluation_method.py builds them."""
    Js, Fs, rows = [], [], []
    for seq, (J, F) in per_sequence.items():
        for k in range(J.shape[0]):
            js, fs = db_statistics(J[k]), db_statistics(F[k])
            Js.append(js)
            Fs.append(fs)
            rows.append((f"{seq}_{k + 1}", js[0], fs[0]))
    if not rows:  # nothing scorable (the caller says why): an honest empty row, not a warning from numpy
        return dict.fromkeys(("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"),
                             float("nan")), rows
    J, F = np.array(Js).reshape(-1, 3), np.array(Fs).reshape(-1, 3)
    g = {"J-Mean": J[:, 0].mean(), "J-Recall": J[:, 1].mean(), "J-Decay": J[:, 2].mean(),
         "F-Mean": F[:, 0].mean(), "F-Recall": F[:, 1].mean(), "F-Decay": F[:, 2].mean()}
    g = {"J&F-Mean": (g["J-Mean"] + g["F-Mean"]) / 2, **g}
    return {k: float(v) for k, v in g.items()}, rows


def write_csvs(out_dir: str, global_res: dict, rows: list, subset: str = "val",
               notes: dict[str, str] | None = None) -> tuple[str, str]:
    """global_results-<set>.csv and per-sequence_results-<set>.csv in the official columns and %.3f format;
    sequences that could not be scored go to not_scored-<set>.csv (Sequence,Reason), kept out of the official
    files so that tools reading them see only scores."""
    g_path = os.path.join(out_dir, f"global_results-{subset}.csv")
    s_path = os.path.join(out_dir, f"per-sequence_results-{subset}.csv")
    fmt = lambda v: "" if v != v else f"{v:.3f}"  # noqa: E731  (NaN -> empty, as pandas writes it)
    with open(g_path + ".tmp", "w") as f:
        f.write(",".join(global_res) + "\n" + ",".join(fmt(v) for v in global_res.values()) + "\n")
    with open(s_path + ".tmp", "w") as f:
        f.write("Sequence,J-Mean,F-Mean\n" + "".join(f"{s},{fmt(j)},{fmt(fm)}\n" for s, j, fm in rows))
    os.replace(g_path + ".tmp", g_path)
    os.replace(s_path + ".tmp", s_path)
    n_path = os.path.join(out_dir, f"not_scored-{subset}.csv")
    if notes:
        with open(n_path + ".tmp", "w") as f:
            f.write("Sequence,Reason\n" + "".join(f'{s},"{why}"\n' for s, why in notes.items()))
        os.replace(n_path + ".tmp", n_path)
    elif os.path.exists(n_path):
        os.remove(n_path)  # a stale list from an earlier run of this folder
    return g_path, s_path


def format_table(global_res: dict, rows: list, notes: dict[str, str] | None = None) -> str:
    head = " ".join(f"{k:>9}" for k in global_res)
    vals = " ".join(f"{v:9.3f}" for v in global_res.values())
    per = "\n".join(f"{s:>28} {j:7.3f} {fm:7.3f}" for s, j, fm in rows)
    skipped = "".join(f"\n{s:>28} not scored: {why}" for s, why in (notes or {}).items())
    return f"{head}\n{vals}\n\n{'Sequence':>28} {'J-Mean':>7} {'F-Mean':>7}\n{per}{skipped}"
