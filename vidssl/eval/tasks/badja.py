"""BADJA animal-joint tracking (Biggs et al., "Creatures great and SMAL", ACCV 2018; annotations and readers in
benjiebob/BADJA: joint_annotations/<seq>.json, code/badja_data.py, code/joint_catalog.py).

Data: BADJA's own JSON per sequence, a list of annotated frames (about every 5th), each with `image_path` (the
original DAVIS Full-Resolution path, e.g. DAVIS/JPEGImages/Full-Resolution/bear/00002.jpg), `segmentation_path`,
`joints` (37 SMAL joints as [row, col] in original pixels, 1920x1080 for the DAVIS sequences; the 17 joints BADJA
does not annotate are [0, 0] and never visible) and `visibility` (0/1 or bools). Frames and masks come from a
DAVIS-layout folder at any resolution: the annotation of frame N maps to JPEGImages/<res>/<seq>/N.jpg and
Annotations/<res>/<seq>/N.png, joints are scaled by (frame size / original size).

Protocol: the joints visible in the first annotated frame are the queries, tracked through every frame up to the
last annotated one by the propagation point tracker (vidssl/eval/point_track.py: a Gaussian label per joint at
feature resolution, the DAVIS propagation, soft-argmax position, occlusion by the forward-backward cycle).

PCK (BADJA's definition, Biggs et al. 2018 Sec. 5; also the "segment-based PCK" of TAP-Vid, Doersch et al. 2022):
at every later annotated frame, each query joint visible there is correct when it is predicted visible and lies
within 0.2 x sqrt(area of that frame's segmentation mask) of the truth, distances and area in original pixels.
PCK of a sequence = correct / scored (joint, frame) pairs; the benchmark number = the mean over sequences.

The same tracks are also scored with the TAP-Vid measures (tapnet's compute_tapvid_metrics, query mode "first"
with the query at the first annotated frame, only annotated frames in the time axis, the 256x256 raster).
"""
from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from vidssl.eval.tasks import EvalContext, EvalTask, TaskResult, register_task

PCK_ALPHA = 0.2  # BADJA: threshold = 0.2 x sqrt(mask area)
DAVIS_ORIGINAL_SIZE = (1920, 1080)  # (W, H) of DAVIS Full-Resolution, where BADJA's joints live
RASTER = (256, 256)  # TAP-Vid scores on a 256x256 raster (tapnet evaluation_datasets.py)


def parse_size(text: str | None, option: str) -> tuple[int, int] | None:
    """'WxH' (or 'S' for SxS) -> (W, H); None stays None."""
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.lower().split("x")]
        w, h = (parts * 2)[:2] if len(parts) == 1 else parts
    except ValueError:
        raise ValueError(f"{option} must be WIDTHxHEIGHT (e.g. 1920x1080), not {text!r}") from None
    if w < 1 or h < 1:
        raise ValueError(f"{option} must be positive, not {text!r}")
    return w, h


@dataclass
class BadjaSequence:
    name: str
    entries: list[dict]  # the annotated frames as read (sorted by frame number)
    numbers: np.ndarray  # (A,) frame number of each annotated frame
    joints_xy: np.ndarray  # (A, J, 2) x, y in original pixels
    visible: np.ndarray  # (A, J) bool
    frame_paths: list[str]  # every frame from the first to the last annotated one
    annotated: np.ndarray  # (A,) index of each annotated frame in frame_paths
    mask_paths: list[str]  # (A,) the mask of each annotated frame


def frame_number(path: str, where: str) -> int:
    """The frame number of a DAVIS frame path ('.../bear/00017.jpg' -> 17)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if not stem.isdigit():
        raise ValueError(f"{where}: {path!r} does not end in a frame number")
    return int(stem)


def read_annotations(path: str) -> list[dict]:
    """BADJA's JSON, checked: a list of annotated frames with image_path, joints (J x [row, col]) and visibility
    (J values 0/1); one error naming the file, the item and the key otherwise."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty list of annotated frames (BADJA's format)")
    n_joints = None
    for i, item in enumerate(data):
        where = f"{path} item {i}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object with image_path, joints and visibility")
        for key in ("image_path", "joints", "visibility"):
            if key not in item:
                raise ValueError(f"{where}: missing key {key!r}")
        if not isinstance(item["image_path"], str):
            raise ValueError(f"{where}: 'image_path' must be a string")
        joints = np.asarray(item["joints"], dtype=np.float64) if isinstance(item["joints"], list) else None
        if joints is None or joints.ndim != 2 or joints.shape[1] != 2 or not np.isfinite(joints).all():
            raise ValueError(f"{where}: 'joints' must be a list of [row, col] pairs of numbers")
        vis = item["visibility"]
        if not isinstance(vis, list) or len(vis) != len(joints) or any(v not in (0, 1) for v in vis):
            raise ValueError(f"{where}: 'visibility' must be a list of {len(joints)} values 0/1 (one per joint)")
        if n_joints is None:
            n_joints = len(joints)
        elif len(joints) != n_joints:
            raise ValueError(f"{where}: {len(joints)} joints, but the first item has {n_joints}")
    return data


def _numbered_files(folder: str) -> dict[int, str]:
    from vidssl.io.frames import list_frames

    return {int(os.path.splitext(os.path.basename(p))[0]): p for p in list_frames(folder)
            if os.path.splitext(os.path.basename(p))[0].isdigit()}


def list_sequences(badja_root: str, sequences: list[str] | None) -> list[str]:
    """The sequences named, else every joint_annotations/<seq>.json."""
    ann_dir = os.path.join(badja_root, "joint_annotations")
    if not os.path.isdir(ann_dir):
        raise FileNotFoundError(f"{ann_dir} not found: is {badja_root} a BADJA folder (joint_annotations/<seq>.json)?")
    available = sorted(os.path.splitext(n)[0] for n in os.listdir(ann_dir) if n.endswith(".json"))
    if not sequences:
        if not available:
            raise FileNotFoundError(f"no <seq>.json files in {ann_dir}")
        return available
    bad = [n for n in sequences if not n or n in (".", "..") or "/" in n or os.sep in n]
    if bad:
        raise ValueError(f"sequence names must be plain names, not paths: {bad[:3]}")
    missing = [n for n in sequences if n not in available]
    if missing:
        raise FileNotFoundError(f"no BADJA annotations for {', '.join(missing)}: {ann_dir}/{missing[0]}.json not found "
                                f"(available: {', '.join(available) or 'none'})")
    return list(sequences)


def load_sequence(badja_root: str, davis_root: str, name: str, resolution: str = "480p") -> BadjaSequence:
    """A sequence's annotations matched to the DAVIS frames and masks of the same numbers. Joints stay in
    original pixels (x, y here; BADJA's files hold [row, col])."""
    path = os.path.join(badja_root, "joint_annotations", f"{name}.json")
    data = read_annotations(path)
    numbers = [frame_number(item["image_path"], f"{path} item {i} image_path") for i, item in enumerate(data)]
    dup = sorted({n for n in numbers if numbers.count(n) > 1})
    if dup:
        raise ValueError(f"{path}: frame {dup[0]} is annotated twice")
    order = np.argsort(numbers, kind="stable")
    entries = [data[i] for i in order]
    numbers = np.asarray(numbers)[order]
    img_dir = os.path.join(davis_root, "JPEGImages", resolution, name)
    ann_dir = os.path.join(davis_root, "Annotations", resolution, name)
    for folder, what in ((img_dir, "frames"), (ann_dir, "masks")):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"no {what} for BADJA sequence {name}: {folder} not found "
                                    f"(check --davis-root and --resolution)")
    frames, masks = _numbered_files(img_dir), _numbered_files(ann_dir)
    for n, item in zip(numbers, entries):
        if n not in frames:
            raise FileNotFoundError(f"{path}: {item['image_path']} has no frame {n} in {img_dir}")
        if n not in masks:
            raise FileNotFoundError(f"{path}: {item['image_path']} has no mask {n} in {ann_dir}")
    span = sorted(k for k in frames if numbers[0] <= k <= numbers[-1])
    index = {k: i for i, k in enumerate(span)}
    joints = np.stack([np.asarray(e["joints"], np.float64) for e in entries])[..., ::-1]  # [row, col] -> x, y
    return BadjaSequence(name=name, entries=entries, numbers=numbers, joints_xy=np.ascontiguousarray(joints),
                         visible=np.stack([np.asarray(e["visibility"], bool) for e in entries]),
                         frame_paths=[frames[k] for k in span], annotated=np.array([index[n] for n in numbers]),
                         mask_paths=[masks[n] for n in numbers])


def mask_area(path: str) -> tuple[int, tuple[int, int]]:
    """(object pixels (every id > 0 but void), (W, H)) of a DAVIS mask: palette, greyscale {0, 255} or an 'LA'
    (grey + alpha) PNG."""
    from vidssl.io.frames import VOID_LABEL, read_davis_mask

    m = read_davis_mask(path)
    return int(((m > 0) & (m != VOID_LABEL)).sum()), (m.shape[1], m.shape[0])


def badja_pck(gt_xy: np.ndarray, gt_visible: np.ndarray, pred_xy: np.ndarray, pred_visible: np.ndarray,
              areas: np.ndarray, alpha: float = PCK_ALPHA) -> dict:
    """BADJA PCK of one sequence. gt_xy, pred_xy (A, J, 2) and areas (A,) in original pixels; gt_visible,
    pred_visible (A, J) bool; annotated frame 0 holds the queries. Scored: frames 1..A-1, the joints visible in
    frame 0 and in that frame; correct when predicted visible and distance <= alpha x sqrt(area).
    "pck_position" ignores the predicted visibility (every tracked joint counts as predicted, as for a method
    that never reports occlusion): the same tracks, read without the occlusion flag.
    Returns {"pck" (NaN when nothing is scored), "correct", "pck_position", "correct_position", "scored",
    "threshold" (A,)}."""
    threshold = alpha * np.sqrt(np.asarray(areas, np.float64))
    dist = np.linalg.norm(np.asarray(pred_xy, np.float64) - np.asarray(gt_xy, np.float64), axis=-1)  # (A, J)
    scored = gt_visible & gt_visible[:1]
    scored[0] = False
    near = scored & (dist <= threshold[:, None])
    n, c, c_any = int(scored.sum()), int((near & pred_visible).sum()), int(near.sum())
    return {"pck": c / n if n else float("nan"), "correct": c, "pck_position": c_any / n if n else float("nan"),
            "correct_position": c_any, "scored": n, "threshold": threshold}


def to_badja_json(seq: BadjaSequence, pred_xy: np.ndarray, pred_visible: np.ndarray) -> list[dict]:
    """BADJA's own format: the annotated frames with image_path (and segmentation_path) as read, joints
    [row, col] in original pixels (the tracked position also where predicted occluded; joints not tracked are
    [0, 0], as BADJA writes unannotated joints), visibility as predicted."""
    out = []
    for a, entry in enumerate(seq.entries):
        item = {"image_path": entry["image_path"]}
        if "segmentation_path" in entry:
            item["segmentation_path"] = entry["segmentation_path"]
        item["joints"] = [[round(float(y), 2), round(float(x), 2)] for x, y in pred_xy[a]]
        item["visibility"] = [bool(v) for v in pred_visible[a]]
        out.append(item)
    return out


def joint_colours(n: int) -> list[tuple[int, int, int]]:
    hsv = np.uint8([[[int(180 * i / max(n, 1)), 220, 255] for i in range(n)]])
    return [tuple(int(c) for c in rgb) for rgb in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]]


def draw_joints(frame: np.ndarray, pred_xy: np.ndarray, pred_visible: np.ndarray, gt_xy: np.ndarray | None = None,
                gt_visible: np.ndarray | None = None) -> np.ndarray:
    """Predicted joints as dots (rings where predicted occluded), ground truth (annotated frames) as crosses,
    a line from each truth to its prediction; pixels of `frame`."""
    out = np.ascontiguousarray(frame.copy())
    colours = joint_colours(len(pred_xy))
    r = max(2, round(frame.shape[0] / 120))
    for j, ((x, y), vis) in enumerate(zip(pred_xy, pred_visible)):
        if gt_xy is not None and gt_visible[j]:
            g = (int(round(gt_xy[j, 0])), int(round(gt_xy[j, 1])))
            cv2.drawMarker(out, g, colours[j], cv2.MARKER_CROSS, 3 * r, 2, cv2.LINE_AA)
            cv2.line(out, g, (int(round(x)), int(round(y))), colours[j], 1, cv2.LINE_AA)
        cv2.circle(out, (int(round(x)), int(round(y))), r, colours[j], -1 if vis else 1, cv2.LINE_AA)
    return out


def _read_frames(paths: list[str], size: tuple[int, int] | None, pool: ThreadPoolExecutor) -> np.ndarray:
    from vidssl.io.frames import read_image

    def one(p: str) -> np.ndarray:
        img = read_image(p)
        return img if size is None else cv2.resize(img, size, interpolation=cv2.INTER_AREA)

    frames = list(pool.map(one, paths))
    odd = next((p for f, p in zip(frames, paths) if f.shape != frames[0].shape), None)
    if odd is not None:
        raise ValueError(f"{odd} differs in size from {paths[0]}: a sequence's frames must share one size")
    return np.stack(frames)


def evaluate_sequence(ctx: EvalContext, seq: BadjaSequence, original_size: tuple[int, int],
                      resize: tuple[int, int] | None, tracker: dict, pool: ThreadPoolExecutor) -> dict:
    """Track the first annotated frame's visible joints, score them, write OUT/<seq>/joints.json (+ overlay)."""
    from vidssl.eval.encoder import frame_features
    from vidssl.eval.point_track import track_points
    from vidssl.eval.tapvid_metrics import compute_tapvid_metrics, to_raster

    t0 = time.time()
    frames = _read_frames(seq.frame_paths, resize, pool)
    T, H, W = frames.shape[:3]
    oW, oH = original_size
    to_frame = np.array([W / oW, H / oH])  # original pixels -> pixels of the tracked frames (x, y)
    areas, mask_sizes = zip(*pool.map(mask_area, seq.mask_paths))
    areas = np.array([a * (oW * oH) / (mw * mh) for a, (mw, mh) in zip(areas, mask_sizes)])  # original px^2
    query_joints = np.flatnonzero(seq.visible[0])
    if not len(query_joints):
        raise ValueError(f"{seq.name}: no joint is visible in the first annotated frame "
                         f"({seq.entries[0]['image_path']})")
    q_xy = seq.joints_xy[0, query_joints] * to_frame
    query_points = np.concatenate([np.zeros((len(q_xy), 1)), q_xy[:, ::-1]], 1)  # t, y, x
    t1 = time.time()
    feats = frame_features(ctx.encoder, torch.from_numpy(frames), ctx.device, clip_len=ctx.protocol.clip_len)
    t2 = time.time()
    tracks, occluded = track_points(feats, query_points, (H, W), ctx.protocol, **tracker)
    t3 = time.time()
    del feats
    A, J = seq.visible.shape
    pred_xy = np.zeros((A, J, 2))
    pred_visible = np.zeros((A, J), bool)
    pred_xy[:, query_joints] = tracks[:, seq.annotated].transpose(1, 0, 2) / to_frame
    pred_visible[:, query_joints] = ~occluded[:, seq.annotated].T
    score = badja_pck(seq.joints_xy, seq.visible, pred_xy, pred_visible, areas)
    # TAP-Vid measures on the same tracks: the annotated frames are the time axis, query at the first one
    gt_tap = to_raster(seq.joints_xy[:, query_joints].transpose(1, 0, 2), (oH, oW), RASTER)
    pred_tap = to_raster(pred_xy[:, query_joints].transpose(1, 0, 2), (oH, oW), RASTER)
    qp = np.concatenate([np.zeros((len(query_joints), 1)), gt_tap[:, 0, ::-1]], 1)
    tap = compute_tapvid_metrics(qp[None], ~seq.visible[:, query_joints].T[None], gt_tap[None],
                                 ~pred_visible[:, query_joints].T[None], pred_tap[None], "first")
    seq_dir = os.path.join(ctx.out, seq.name)
    os.makedirs(seq_dir, exist_ok=True)
    from vidssl.io.atomic import atomic_write

    text = json.dumps(to_badja_json(seq, pred_xy, pred_visible))
    atomic_write(os.path.join(seq_dir, "joints.json"), lambda tmp: open(tmp, "w").write(text))
    if ctx.overlays:
        from vidssl.eval.overlays import save_video

        gt_at = {int(i): a for a, i in enumerate(seq.annotated)}
        drawn = []
        for t in range(T):
            a = gt_at.get(t)
            truth = (None, None) if a is None else (seq.joints_xy[a, query_joints] * to_frame,
                                                    seq.visible[a, query_joints])
            drawn.append(draw_joints(frames[t], tracks[:, t], ~occluded[:, t], *truth))
        save_video(drawn, os.path.join(seq_dir, "overlay.mp4"))
    return {"pck": score, "tap": {k: float(v[0]) for k, v in tap.items()}, "frames": T, "queries": len(query_joints),
            "size": (W, H), "reading_s": t1 - t0, "features_s": t2 - t1, "tracking_s": t3 - t2,
            "pred_xy": pred_xy, "pred_visible": pred_visible}


def nan_mean(values: list[float]) -> float:
    """Mean over the values that are not NaN (sequences with nothing scored); NaN when none is."""
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def _write_csv(path: str, key: str, rows: list[dict], fields: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[key, *fields])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (row[k] if k == key else f"{row[k]:.6f}") for k in [key, *fields]})


@register_task("badja")
class BadjaTask(EvalTask):
    """BADJA animal-joint tracking (Biggs et al. 2018): the joints visible in the first annotated frame are
    tracked by label propagation (a Gaussian per joint, soft-argmax position, forward-backward cycle occlusion)
    and scored with BADJA's PCK at every later annotated frame: correct when predicted visible and within
    0.2 x sqrt(mask area) of the truth (original pixels); per sequence and the mean. The same tracks are also
    scored with the TAP-Vid measures (query = first annotated frame, annotated frames only, 256x256 raster).

    Writes OUT/<seq>/joints.json (BADJA's format: image_path, joints [row, col] in original pixels, visibility as
    predicted), OUT/pck.csv, OUT/tapvid_metrics.csv and OUT/<seq>/overlay.mp4."""

    help = "BADJA animal-joint PCK (joint propagation) and TAP-Vid measures"

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("--badja-root", required=True, help="BADJA folder (joint_annotations/<seq>.json)")
        parser.add_argument("--davis-root", required=True,
                            help="DAVIS folder with the frames and masks "
                                 "(JPEGImages/<res>/<seq>/, Annotations/<res>/<seq>/)")
        parser.add_argument("--resolution", default="480p", help="DAVIS resolution folder (480p, Full-Resolution...)")
        parser.add_argument("--original-size", default="1920x1080",
                            help="WxH of the frames the joints were annotated on (DAVIS Full-Resolution: 1920x1080)")
        parser.add_argument("--sequences", help="comma-separated sequence names (default: every "
                                                "joint_annotations/*.json with frames in --davis-root)")
        parser.add_argument("--resize", help="track on frames resized to WxH (scores stay in original pixels)")
        parser.add_argument("--occlusion", default="cycle", choices=["cycle", "peak", "none"],
                            help="occlusion rule: forward-backward cycle error, propagated peak, or never")
        parser.add_argument("--cycle-threshold", type=float,
                            help="cycle error (px of the tracked frames) above which a joint is occluded "
                                 "(default: 2 feature cells)")
        parser.add_argument("--peak-threshold", type=float, default=0.1, help="for --occlusion peak")
        parser.add_argument("--label-sigma", type=float, default=0.5,
                            help="joint Gaussian in feature cells (<= 0: one-hot cell)")
        parser.add_argument("--decode-topk", type=int, default=4, help="cells in the soft argmax")

    def __init__(self, args):
        super().__init__(args)
        if not os.path.isdir(args.davis_root):
            raise FileNotFoundError(f"--davis-root {args.davis_root} not found")
        self.original_size = parse_size(args.original_size, "--original-size")
        self.resize = parse_size(args.resize, "--resize")
        if args.decode_topk < 1:
            raise ValueError(f"--decode-topk must be >= 1, got {args.decode_topk}")
        self.sequences = list_sequences(args.badja_root, args.sequences.split(",") if args.sequences else None)
        self.skipped: list[str] = []
        if not args.sequences:  # BADJA also ships non-DAVIS sequences (rs_dog, tiger...): skip those without frames
            img_root = os.path.join(args.davis_root, "JPEGImages", args.resolution)
            self.skipped = [s for s in self.sequences if not os.path.isdir(os.path.join(img_root, s))]
            self.sequences = [s for s in self.sequences if s not in self.skipped]
            if not self.sequences:
                raise FileNotFoundError(f"none of the BADJA sequences ({', '.join(self.skipped)}) has frames "
                                        f"in {img_root}")
        # every sequence's JSON is checked and matched to its frames and masks before anything is written
        self.loaded = [load_sequence(args.badja_root, args.davis_root, s, args.resolution) for s in self.sequences]

    def data_roots(self) -> list[str]:
        return [self.args.badja_root, self.args.davis_root]

    def run(self, ctx: EvalContext) -> TaskResult:
        from tqdm import tqdm

        from vidssl.eval.tapvid_metrics import METRIC_NAMES

        a = self.args
        tracker = dict(occlusion=a.occlusion, cycle_threshold=a.cycle_threshold, peak_threshold=a.peak_threshold,
                       sigma=a.label_sigma, decode_topk=a.decode_topk)
        print(f"BADJA: {len(self.sequences)} sequence(s) on {a.davis_root} ({a.resolution}); "
              f"encoder: {ctx.description}")
        if self.skipped:
            print(f"  no frames in {a.davis_root} for {', '.join(self.skipped)}: not evaluated")
        seqs = self.loaded
        results, timing = {}, {"frames": 0, "queries": 0, "reading_s": 0.0, "features_s": 0.0, "tracking_s": 0.0}
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            for seq in tqdm(seqs, desc="sequences"):
                r = evaluate_sequence(ctx, seq, self.original_size, self.resize, tracker, pool)
                results[seq.name] = r
                for k in timing:
                    timing[k] += r[k]
        pck_rows = [{"sequence": s, "pck": r["pck"]["pck"], "pck_position": r["pck"]["pck_position"]}
                    for s, r in results.items()]
        mean = {k: nan_mean([r[k] for r in pck_rows]) for k in ("pck", "pck_position")}
        mean_pck = mean["pck"]
        _write_csv(os.path.join(ctx.out, "pck.csv"), "sequence", pck_rows + [{"sequence": "mean", **mean}],
                   ["pck", "pck_position"])
        tap_rows = [{"sequence": s, **r["tap"]} for s, r in results.items()]
        tap_mean = {k: float(np.nanmean([r[k] for r in tap_rows])) for k in METRIC_NAMES}
        _write_csv(os.path.join(ctx.out, "tapvid_metrics.csv"), "sequence",
                   tap_rows + [{"sequence": "mean", **tap_mean}], list(METRIC_NAMES))
        headline = {"PCK@0.2": 100 * mean_pck, "AJ": 100 * tap_mean["average_jaccard"],
                    "delta_avg": 100 * tap_mean["average_pts_within_thresh"],
                    "OA": 100 * tap_mean["occlusion_accuracy"]}
        p = ctx.protocol
        per_frame = (timing["features_s"] + timing["tracking_s"]) / max(timing["frames"], 1)
        size = {tuple(r["size"]) for r in results.values()}
        lines = [f"BADJA PCK@0.2 (correct: predicted visible and within 0.2 x sqrt(mask area) of the truth, "
                 f"original {self.original_size[0]}x{self.original_size[1]} pixels):"]
        lines += [f"  {s:<20} {100 * r['pck']['pck']:6.2f}  ({r['pck']['correct']}/{r['pck']['scored']} joints)"
                  for s, r in results.items()]
        lines += [f"  {'mean':<20} {headline['PCK@0.2']:6.2f}   (position only, ignoring predicted occlusion: "
                  f"{100 * mean['pck_position']:.2f})",
                  f"TAP-Vid measures (query = first annotated frame, annotated frames only, 256x256 raster): "
                  f"AJ {headline['AJ']:.1f}   <delta_avg {headline['delta_avg']:.1f}   OA {headline['OA']:.1f}",
                  f"protocol: top-{p.topk}, temperature {p.temperature}, {p.n_context} context frames, "
                  f"radius {p.radius}; joint Gaussian sigma {a.label_sigma} cells, soft argmax of {a.decode_topk}, "
                  f"occlusion {a.occlusion}; tracked at {', '.join(f'{w}x{h}' for w, h in sorted(size))}",
                  f"{timing['frames']} frames, {timing['queries']} joints: reading {timing['reading_s']:.1f}s, "
                  f"features {timing['features_s']:.1f}s, tracking {timing['tracking_s']:.1f}s "
                  f"({per_frame * 1000:.0f} ms/frame)",
                  f"joints.json per sequence and pck.csv, tapvid_metrics.csv in {ctx.out}"]
        details = {"dataset": "badja", "badja_root": a.badja_root, "davis_root": a.davis_root,
                   "resolution": a.resolution, "original_size": list(self.original_size), "tracker": tracker,
                   "timing": timing, "ms_per_frame": 1000 * per_frame, "not_evaluated": self.skipped,
                   "pck": {s: {k: r["pck"][k] for k in ("pck", "correct", "pck_position", "correct_position", "scored")}
                           for s, r in results.items()},
                   "tapvid": {"mean": tap_mean}}
        return TaskResult(headline=headline, rows=pck_rows, report="\n".join(lines), details=details)
