"""VIP (Video Instance-level human Parsing, Zhou et al. 2018): the first frame's human-part labels propagated
through each video, scored by mIoU over 20 classes (background and 19 parts).

Layout (VIP_Fine): Images/<video>/*.jpg, Annotations/Category_ids/<video>/*.png (class ids 0..19, every 25th frame,
named like the frames), lists/val_videos.txt (one video a line).

Scoring as UVC's eval_vip.py (Liusifei/UVC; also ajabri/videowalk code/eval/eval_vip.py): one 20 x 20 confusion
matrix (rows ground truth, columns prediction) accumulated over the scored frames, ground-truth pixels outside
0..19 ignored, IoU = diagonal / (row sum + column sum - diagonal) per class, mIoU = the mean over the classes
whose union is not empty. Scored frames: every annotated frame after each video's first (the first is given).
Unlike eval_vip.py, a prediction is never resampled with a filter that mixes ids: eval_vip.py resizes a
prediction of another size with Image.ANTIALIAS, which blends neighbouring class ids into ids of other classes
(and no longer exists in Pillow 10). Here predictions are written at the ground truth's size (soft maps resized,
then argmax), and a result of another size read for scoring is resized with nearest neighbour.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vidssl.eval.tasks import EvalContext, EvalTask, TaskResult, register_task

CLASSES = ("background", "hat", "hair", "sun-glasses", "upper-clothes", "dress", "coat", "socks", "pants", "gloves",
           "scarf", "skirt", "torso-skin", "face", "right-arm", "left-arm", "right-leg", "left-leg", "right-shoe",
           "left-shoe")
N_CLASSES = len(CLASSES)
ANNOTATIONS = os.path.join("Annotations", "Category_ids")


def list_videos(root: str, list_file: str | None = None, videos: list[str] | None = None) -> list[str]:
    """Videos named explicitly, else those of `list_file` (default lists/val_videos.txt). Each is checked
    before anything runs: a plain name with frames and annotations."""
    for folder in ("Images", ANNOTATIONS):
        if not os.path.isdir(os.path.join(root, folder)):
            raise FileNotFoundError(f"{os.path.join(root, folder)} not found: is {root} a VIP_Fine folder "
                                    f"(Images/, Annotations/Category_ids/, lists/val_videos.txt)?")
    if videos:
        names = list(videos)
    else:
        list_file = list_file or os.path.join(root, "lists", "val_videos.txt")
        if not os.path.isfile(list_file):
            raise FileNotFoundError(f"video list {list_file} not found (give --vip-list or --videos)")
        with open(list_file) as f:
            names = [ln.strip() for ln in f if ln.strip()]
        if not names:
            raise ValueError(f"video list {list_file} is empty")
    bad = [n for n in names if n in (".", "..") or "/" in n or os.sep in n or os.path.isabs(n)]
    if bad:
        raise ValueError(f"video names must be plain names, not paths: {bad[:3]}")
    missing = [n for n in names if not (os.path.isdir(os.path.join(root, "Images", n))
                                        and os.path.isdir(os.path.join(root, ANNOTATIONS, n)))]
    if missing:
        raise FileNotFoundError(f"{len(missing)} video(s) lack Images/ or {ANNOTATIONS}/ folders under {root}: "
                                f"{', '.join(missing[:5])}")
    return names


def video_files(root: str, video: str) -> tuple[list[str], dict[int, str]]:
    """(frame paths, {frame index: annotation path}); annotations are matched to frames by file stem and the
    first frame must have one."""
    from vidssl.io.frames import list_frames

    frames = list_frames(os.path.join(root, "Images", video))
    if not frames:
        raise FileNotFoundError(f"no frames in {os.path.join(root, 'Images', video)}")
    index = {os.path.splitext(os.path.basename(p))[0]: t for t, p in enumerate(frames)}
    annotations = {}
    for path in list_frames(os.path.join(root, ANNOTATIONS, video)):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem not in index:
            raise FileNotFoundError(f"annotation {path} has no frame {stem}.* in {os.path.join(root, 'Images', video)}")
        annotations[index[stem]] = path
    if 0 not in annotations:
        raise FileNotFoundError(f"the first frame of {video} ({frames[0]}) has no annotation in "
                                f"{os.path.join(root, ANNOTATIONS, video)}: labels are propagated from it")
    return frames, annotations


def read_ids(path: str) -> np.ndarray:
    """Class ids (H, W) from a single-channel PNG (palette or greyscale)."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"{path} is a {img.mode} image, not a class-id PNG (palette or greyscale)")
        return np.array(img).astype(np.int64)


def confusion(gt: np.ndarray, pred: np.ndarray, n: int = N_CLASSES) -> np.ndarray:
    """(n, n) counts, rows ground truth, columns prediction; ground-truth pixels outside 0..n-1 are ignored."""
    keep = (gt >= 0) & (gt < n)
    p = pred[keep]
    if p.size and (p.min() < 0 or p.max() >= n):
        raise ValueError(f"predicted class ids must be in 0..{n - 1}, found {int(p.min())}..{int(p.max())}")
    return np.bincount(n * gt[keep] + p, minlength=n * n).reshape(n, n)


def iou_from_confusion(hist: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-class IoU, NaN where neither ground truth nor prediction has the class; mIoU over the others)."""
    tp = np.diag(hist).astype(np.float64)
    union = hist.sum(0) + hist.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / union
    return iou, float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def score_results(root: str, results: str, videos: list[str]) -> np.ndarray:
    """Confusion matrix of results/<video>/<frame>.png against the annotated frames after each video's first.
    A result of another size than its ground truth is resized with nearest neighbour (never a filter that
    mixes ids)."""
    hist = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    for video in videos:
        frames, annotations = video_files(root, video)
        for t in sorted(annotations)[1:]:
            stem = os.path.splitext(os.path.basename(frames[t]))[0]
            path = os.path.join(results, video, stem + ".png")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"result {path} is missing: results are class-id PNGs named like the frames")
            gt, pred = read_ids(annotations[t]), read_ids(path)
            if pred.shape != gt.shape:
                pred = cv2.resize(pred.astype(np.uint8), gt.shape[::-1], interpolation=cv2.INTER_NEAREST)
                pred = pred.astype(np.int64)
            hist += confusion(gt, pred)
    return hist


def write_csvs(out: str, hist: np.ndarray) -> float:
    """OUT/miou.csv (per-class IoU and the mIoU, fractions) and OUT/confusion.csv; returns the mIoU."""
    iou, miou = iou_from_confusion(hist)
    with open(os.path.join(out, "miou.csv"), "w") as f:
        f.write("class,IoU\n")
        for name, v in zip(CLASSES, iou):
            f.write(f"{name},{v:.6f}\n")
        f.write(f"mIoU,{miou:.6f}\n")
    with open(os.path.join(out, "confusion.csv"), "w") as f:
        f.write("ground_truth\\prediction," + ",".join(CLASSES) + "\n")
        for name, row in zip(CLASSES, hist):
            f.write(name + "," + ",".join(str(int(v)) for v in row) + "\n")
    return miou


def run_vip(root: str, out: str, ctx: EvalContext, videos: list[str]) -> dict:
    """Propagate every video's first-frame labels, write OUT/results/<video>/<frame>.png for every annotated
    frame (at the annotation's size) and the overlays. Returns timings."""
    from vidssl.eval.encoder import frame_features
    from vidssl.eval.overlays import blend, save_video, summary_grid
    from vidssl.eval.propagate import propagate_labels
    from vidssl.eval.protocol import input_shape
    from vidssl.eval.tasks.davis import resize_frames, resize_labels
    from vidssl.io.frames import read_image, write_davis_mask

    p = ctx.protocol
    timing = {"frames": 0, "features_s": 0.0, "propagation_s": 0.0, "writing_s": 0.0}
    grid_rows = []
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        for video in tqdm(videos, desc="videos"):
            frames, annotations = video_files(root, video)
            t0 = time.time()
            first = read_image(frames[0])
            H, W = first.shape[:2]
            size = input_shape(p.input_size, H, W)
            feats, kept = [], {}

            def load(t: int) -> np.ndarray:
                img = first if t == 0 else read_image(frames[t])
                if img.shape[:2] != (H, W):
                    raise ValueError(f"{frames[t]} is {img.shape[0]}x{img.shape[1]} but {frames[0]} is {H}x{W}: "
                                     f"a video's frames must share one size")
                return img

            # frames are read and encoded in chunks (memory bounded by the features); video encoders see the
            # whole video at once, their sliding clips must not be cut at chunk boundaries
            step = len(frames) if getattr(ctx.encoder, "is_video", False) else 16
            for s in range(0, len(frames), step):
                chunk = list(pool.map(load, range(s, min(s + step, len(frames)))))
                kept.update({s + i: img for i, img in enumerate(chunk) if s + i in annotations})
                feats.append(frame_features(ctx.encoder, resize_frames(torch.from_numpy(np.stack(chunk)), size),
                                            ctx.device, clip_len=p.clip_len))
            feats = torch.cat(feats)
            t1 = time.time()
            gt0 = read_ids(annotations[0])
            gt0[(gt0 < 0) | (gt0 >= N_CLASSES)] = 0  # ignored pixels propagate as background
            ids = np.union1d([0], np.unique(gt0))
            onehot = torch.from_numpy(np.stack([gt0 == i for i in ids]).astype(np.float32)).to(ctx.device)
            soft = propagate_labels(feats, resize_labels(onehot, feats.shape[-2:], p.label_resize), **p.propagation())
            t2 = time.time()
            lut = torch.from_numpy(ids.astype(np.uint8)).to(ctx.device)
            seq_dir = os.path.join(out, "results", video)
            vis_dir = os.path.join(out, "overlays", video)
            os.makedirs(seq_dir, exist_ok=True)
            if ctx.overlays:
                os.makedirs(vis_dir, exist_ok=True)

            def write(t: int) -> np.ndarray | None:
                stem = os.path.splitext(os.path.basename(frames[t]))[0]
                with Image.open(annotations[t]) as a:
                    gh, gw = a.size[1], a.size[0]
                if t == 0:
                    pred = gt0.astype(np.uint8)
                else:  # soft maps to the ground truth's size, then argmax: ids are never resampled
                    pred = lut[resize_labels(soft[t], (gh, gw), p.output_resize).max(0).indices].cpu().numpy()
                write_davis_mask(os.path.join(seq_dir, stem + ".png"), pred)
                if not ctx.overlays:
                    return None
                img = kept[t]
                if img.shape[:2] != (gh, gw):
                    img = cv2.resize(img, (gw, gh), interpolation=cv2.INTER_AREA)
                blended = blend(img, pred)
                Image.fromarray(blended).save(os.path.join(vis_dir, stem + ".jpg"), quality=90)
                return blended

            blended = list(pool.map(write, sorted(annotations)))
            if ctx.overlays:
                save_video(blended, os.path.join(out, "overlays", f"{video}.mp4"), fps=2.0)
                grid_rows.append((video, [blended[0], blended[len(blended) // 2], blended[-1]]))
            timing["frames"] += len(frames)
            timing["features_s"] += t1 - t0
            timing["propagation_s"] += t2 - t1
            timing["writing_s"] += time.time() - t2
            feats = soft = None  # free before the next video
    if ctx.overlays and grid_rows:
        summary_grid(grid_rows, os.path.join(out, "overlays", "summary.png"))
    return timing


@register_task("vip")
class VipTask(EvalTask):
    """VIP human-part propagation: the first frame's 20-class part labels propagated through each video, mIoU
    over the annotated frames after the first (one confusion matrix, as UVC's eval_vip.py, without its
    id-mixing resize). Writes results/<video>/<frame>.png at the annotations' size, miou.csv, confusion.csv and
    overlays."""

    help = "VIP mIoU (human-part propagation)"

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("--vip-root", required=True,
                            help="VIP_Fine folder (Images/, Annotations/Category_ids/, lists/val_videos.txt)")
        parser.add_argument("--vip-list", help="video list (default VIP_ROOT/lists/val_videos.txt)")
        parser.add_argument("--videos", help="comma-separated video names (overrides the list)")

    def __init__(self, args):
        super().__init__(args)
        self.videos = list_videos(args.vip_root, args.vip_list, args.videos.split(",") if args.videos else None)
        for video in self.videos:  # every video's frames and first annotation, before anything is written
            video_files(args.vip_root, video)

    def data_roots(self) -> list[str]:
        return [self.args.vip_root]

    def run(self, ctx: EvalContext) -> TaskResult:
        root = self.args.vip_root
        print(f"VIP: {len(self.videos)} video(s) from {root}; encoder: {ctx.description}")
        timing = run_vip(root, ctx.out, ctx, self.videos)
        t = time.time()
        hist = score_results(root, os.path.join(ctx.out, "results"), self.videos)
        timing["metrics_s"] = time.time() - t
        miou = write_csvs(ctx.out, hist)
        iou, _ = iou_from_confusion(hist)
        lines = [f"{name:<14} {v:.4f}" for name, v in zip(CLASSES, iou)]
        report = "\n".join(lines + [f"mIoU {miou:.4f} over {int(hist.sum())} scored pixels "
                                    f"(miou.csv, confusion.csv in {ctx.out}; predictions in {ctx.out}/results)",
                                    f"{timing['frames']} frames: features {timing['features_s']:.1f}s, propagation "
                                    f"{timing['propagation_s']:.1f}s, writing {timing['writing_s']:.1f}s"])
        return TaskResult(headline={"mIoU": miou},
                          rows=[{"class": n, "IoU": float(v)} for n, v in zip(CLASSES, iou)], report=report,
                          details={"dataset": "vip", "vip_root": root, "videos": len(self.videos), "timing": timing})
