"""DAVIS semi-supervised evaluation by label propagation: features -> propagate -> official-format palette
PNGs -> J&F (computed afresh from those PNGs on every run) -> CSVs, table and overlays."""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from vidssl.eval.davis_metrics import evaluate_sequence, format_table, summarize, write_csvs
from vidssl.eval.encoder import frame_features
from vidssl.eval.overlays import blend, save_video, summary_grid
from vidssl.eval.propagate import propagate_labels
from vidssl.eval.protocol import input_shape
from vidssl.eval.tasks import EvalContext, EvalTask, TaskResult, register_task
from vidssl.io.frames import VOID_LABEL, list_frames, read_davis_mask, read_image, write_davis_mask


def list_sequences(root: str, subset: str | None = "val", sequences: list[str] | None = None,
                   resolution: str = "480p") -> list[str]:
    """Sequences named explicitly, else those of ImageSets/2017/<subset>.txt, else every folder of frames.
    Every one is checked before anything runs: a plain name (never a path: results are written under --out by
    name) with frames and annotations in the dataset."""
    img_root = os.path.join(root, "JPEGImages", resolution)
    ann_root = os.path.join(root, "Annotations", resolution)
    for folder in (img_root, ann_root):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder} not found: is {root} a DAVIS folder (JPEGImages/, Annotations/)?")
    image_set = os.path.join(root, "ImageSets", "2017", f"{subset}.txt")
    if sequences:
        names = list(sequences)
    elif subset and os.path.isfile(image_set):
        with open(image_set) as f:
            names = [ln.strip() for ln in f if ln.strip()]
    else:
        names = sorted(d for d in os.listdir(img_root) if os.path.isdir(os.path.join(img_root, d)))
        if subset:
            print(f"note: {image_set} does not exist: evaluating every sequence folder of {img_root} "
                  f"({len(names)}), not the '{subset}' set")
    paths = [n for n in names if not n or n in (".", "..") or "/" in n or os.sep in n or os.path.isabs(n)]
    if paths:
        raise ValueError(f"sequence names must be plain names, not paths: {paths[:3]}")
    missing = [n for n in names if not (os.path.isdir(os.path.join(img_root, n)) and os.path.isdir(os.path.join(ann_root, n)))]
    if missing:
        raise FileNotFoundError(f"{len(missing)} sequence(s) lack frames or annotations under {root}: "
                                f"{', '.join(missing[:5])} (check --sequences / --set)")
    return names


def sequence_files(root: str, seq: str, resolution: str = "480p") -> tuple[list[str], list[str]]:
    frames = list_frames(os.path.join(root, "JPEGImages", resolution, seq))
    masks = list_frames(os.path.join(root, "Annotations", resolution, seq))
    if not frames:
        raise FileNotFoundError(f"no frames for sequence {seq} under {root}/JPEGImages/{resolution}")
    if not masks:
        raise FileNotFoundError(f"no annotations for sequence {seq} under {root}/Annotations/{resolution}")
    stems = {os.path.splitext(os.path.basename(f))[0] for f in frames}
    orphans = [m for m in masks if os.path.splitext(os.path.basename(m))[0] not in stems]
    if orphans:
        raise FileNotFoundError(f"input frame {os.path.splitext(os.path.basename(orphans[0]))[0]} of {seq} is missing "
                                f"from {root}/JPEGImages/{resolution}/{seq} (its annotation {orphans[0]} exists)")
    return frames, masks


def stack_same_size(arrays: list[np.ndarray], paths: list[str]) -> np.ndarray:
    """np.stack, or an error naming the first file whose size differs from the first one's."""
    odd = next((p for a, p in zip(arrays, paths) if a.shape[:2] != arrays[0].shape[:2]), None)
    if odd is not None:
        shape = arrays[paths.index(odd)].shape[:2]
        raise ValueError(f"{odd} is {shape[0]}x{shape[1]} but {paths[0]} is "
                         f"{arrays[0].shape[0]}x{arrays[0].shape[1]}: a sequence's frames and masks must share one size")
    return np.stack(arrays)


def read_masks(paths: list[str]) -> np.ndarray:
    """Masks (T, H, W), decoded on a few threads (PNG decoding releases the GIL)."""
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        return stack_same_size(list(pool.map(read_davis_mask, paths)), paths)


def read_gt(masks: list[str]) -> np.ndarray:
    gt = read_masks(masks)
    gt[gt == VOID_LABEL] = 0  # the official semi-supervised evaluation ignores void
    return gt


def unscorable(n_frames: int, n_masks: int, first_mask: np.ndarray) -> str | None:
    """Why a sequence cannot be scored the DAVIS way (None if it can). The official evaluation scores frames 2..T-1
    of the objects of the first annotation; such sequences are propagated and written, but left out of the
    scores with this note instead of turning them into NaN."""
    if n_masks == 1 and n_frames >= 3:
        return "only the first frame is annotated: results written, nothing to score against"
    if n_masks < 3:
        return f"{n_masks} annotated frame(s): DAVIS scores frames 2..T-1 only, so a sequence needs 3"
    if first_mask.max() == 0:
        return "the first-frame annotation has no object"
    return None


def evaluate_results(root: str, results: str, sequences: list[str],
                     resolution: str = "480p") -> tuple[dict, list, dict[str, str]]:
    """J&F of the palette PNGs in results/<seq>/ against the ground truth, as davis2017-evaluation scores them.
    Returns (global results over the scorable sequences, per-object rows, {sequence: why it was not scored})."""
    def one(seq: str):
        frames, masks = sequence_files(root, seq, resolution)
        gt = read_gt(masks)
        why = unscorable(len(frames), len(masks), gt[0])
        if why:
            return why
        res = [os.path.join(results, seq, os.path.splitext(os.path.basename(m))[0] + ".png") for m in masks]
        missing = [p for p in res if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"result {missing[0]} is missing: results must be indexed PNGs named like the "
                                    f"ground-truth frames")
        return evaluate_sequence(gt, read_masks(res), seq)

    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:  # numpy and OpenCV release the GIL
        scores = list(tqdm(pool.map(one, sequences), total=len(sequences), desc="J&F", leave=False))
    notes = {seq: s for seq, s in zip(sequences, scores) if isinstance(s, str)}
    g, rows = summarize({seq: s for seq, s in zip(sequences, scores) if not isinstance(s, str)})
    return g, rows, notes


def resize_labels(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(K, H, W) soft labels to `size`: bilinear (half-pixel centres, like cv2.INTER_LINEAR the reference
    uses) or nearest."""
    if mode == "bilinear":
        return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
    if mode == "nearest":
        return F.interpolate(x[None], size=size, mode="nearest")[0]
    raise ValueError(f"resize mode must be bilinear or nearest, not {mode!r}")


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) to `size` (h, w): area averaging when shrinking, bilinear when growing."""
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    interp = cv2.INTER_AREA if size[0] < frames.shape[1] else cv2.INTER_LINEAR
    return torch.from_numpy(np.stack([cv2.resize(f, (size[1], size[0]), interpolation=interp)
                                      for f in frames.numpy()]))


def _clock(device: torch.device) -> float:
    """Wall time once the work queued on `device` is done (CUDA runs asynchronously)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.time()


def _write_results(pool: ThreadPoolExecutor, frames: torch.Tensor, preds: list[np.ndarray], names: list[str],
                   seq_dir: str, vis_dir: str | None) -> list[np.ndarray | None]:
    """Each frame's ids as a palette PNG in seq_dir and, with vis_dir, its overlay as a JPEG there, written
    on the pool; returns the overlays."""
    os.makedirs(seq_dir, exist_ok=True)
    if vis_dir:
        os.makedirs(vis_dir, exist_ok=True)

    def write(t: int) -> np.ndarray | None:
        write_davis_mask(os.path.join(seq_dir, names[t] + ".png"), preds[t])
        if not vis_dir:
            return None
        blended = blend(frames[t].numpy(), preds[t])
        Image.fromarray(blended).save(os.path.join(vis_dir, names[t] + ".jpg"), quality=90)
        return blended

    return list(pool.map(write, range(len(preds))))


def run_davis(root: str, out: str, encoder: nn.Module, sequences: list[str], device: torch.device,
              prop: dict | None = None, label_resize: str = "bilinear", output_resize: str = "bilinear",
              overlays: bool = True, subset: str = "val", resolution: str = "480p",
              clip_len: int = 8, input_size: str = "native") -> tuple[dict, list, dict, dict]:
    """Propagate the first-frame masks of every sequence, write OUT/<seq>/<frame>.png, score them, write
    the CSVs and overlays. Returns (global results, per-object rows, timings, {sequence: why not scored}).
    `input_size` (vidssl/eval/protocol.py): the frames the encoder reads are resized to it; the first mask goes
    to feature resolution and the predictions come back to the annotation's size as at native size."""
    prop = prop or {}
    os.makedirs(out, exist_ok=True)
    timing = {"frames": 0, "reading_s": 0.0, "features_s": 0.0, "propagation_s": 0.0, "writing_s": 0.0}
    summary_rows = []
    # image decoding and encoding (OpenCV, PIL) release the GIL: frames are read and results written on threads
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for seq in tqdm(sequences, desc="sequences"):
            t0 = time.time()
            frame_paths, mask_paths = sequence_files(root, seq, resolution)
            frames = torch.from_numpy(stack_same_size(list(pool.map(read_image, frame_paths)), frame_paths))
            T, H, W = frames.shape[:3]
            t1 = _clock(device)
            feats = frame_features(encoder, resize_frames(frames, input_shape(input_size, H, W)), device,
                                   clip_len=clip_len)
            t2 = _clock(device)
            mask0 = read_davis_mask(mask_paths[0])
            if mask0.shape != (H, W):
                raise ValueError(f"{mask_paths[0]} is {mask0.shape[0]}x{mask0.shape[1]} but the frames of {seq} are "
                                 f"{H}x{W} ({frame_paths[0]}): masks and frames must share one size")
            mask0[mask0 == VOID_LABEL] = 0
            ids = np.unique(mask0)
            ids = ids if ids[0] == 0 else np.concatenate([[0], ids])
            onehot = torch.from_numpy(np.stack([mask0 == i for i in ids]).astype(np.float32)).to(device)
            labels0 = resize_labels(onehot, feats.shape[-2:], label_resize)
            soft = propagate_labels(feats, labels0, **prop)
            t3 = _clock(device)
            id_lut = torch.from_numpy(ids.astype(np.uint8)).to(device)
            # max(0).indices: the same first-maximum argmax, ~30x faster than argmax(0) on a CPU for few maps
            preds = [mask0] + [id_lut[resize_labels(soft[t], (H, W), output_resize).max(0).indices].cpu().numpy()
                               for t in range(1, T)]
            names = [os.path.splitext(os.path.basename(p))[0] for p in frame_paths]
            vis_dir = os.path.join(out, "overlays", seq) if overlays else None
            blended = _write_results(pool, frames, preds, names, os.path.join(out, seq), vis_dir)
            if overlays:
                save_video(blended, os.path.join(out, "overlays", f"{seq}.mp4"))
                summary_rows.append((seq, [blended[0], blended[T // 2], blended[-1]]))
            timing["frames"] += T
            timing["reading_s"] += t1 - t0
            timing["features_s"] += t2 - t1
            timing["propagation_s"] += t3 - t2
            timing["writing_s"] += time.time() - t3
            del feats, soft
    if overlays and summary_rows:
        summary_grid(summary_rows, os.path.join(out, "overlays", "summary.png"))
    t_metrics = time.time()
    global_res, rows, notes = evaluate_results(root, out, sequences, resolution)
    timing["metrics_s"] = time.time() - t_metrics
    write_csvs(out, global_res, rows, subset, notes)
    return global_res, rows, timing, notes


@register_task("davis")
class DavisTask(EvalTask):
    """DAVIS semi-supervised video object segmentation: the first frame's masks propagated to every frame, scored
    with J&F exactly as davis2017-evaluation (CSVs in its format). Without --davis-root: the embedded synthetic
    DAVIS-layout set (textured objects moving over real footage, masks exact by construction)."""

    help = "DAVIS J&F (mask propagation)"

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("--davis-root", help="DAVIS folder (JPEGImages/480p, Annotations/480p[, ImageSets/2017])")
        parser.add_argument("--set", default="val", help="ImageSets/2017/<set>.txt (default val)")
        parser.add_argument("--sequences", help="comma-separated sequence names (overrides --set)")

    def data_roots(self) -> list[str]:
        return [self.args.davis_root] if self.args.davis_root else []

    def run(self, ctx: EvalContext) -> TaskResult:
        a = self.args
        root, label = a.davis_root, "DAVIS"
        if not root:
            from vidssl.eval.synthetic import make_synthetic_davis

            root = os.path.join(ctx.out, "synthetic_davis")
            make_synthetic_davis(root)
            label = "the embedded SYNTHETIC DAVIS-layout set (textured objects moving over the sample clips)"
        sequences = list_sequences(root, a.set, a.sequences.split(",") if a.sequences else None)
        print(f"Evaluating on {label}: {len(sequences)} sequence(s) from {root}; encoder: {ctx.description}")
        results_dir = os.path.join(ctx.out, "results")
        p = ctx.protocol
        g, rows, timing, notes = run_davis(root, results_dir, ctx.encoder, sequences, ctx.device, p.propagation(),
                                           p.label_resize, p.output_resize, overlays=ctx.overlays, subset=a.set,
                                           clip_len=p.clip_len, input_size=p.input_size)
        fps = timing["frames"] / max(timing["propagation_s"], 1e-9)
        report = [f"--------------------------- Global results for {a.set} ---------------------------",
                  format_table(g, rows, notes)]
        if not rows:
            report.append("no sequence could be scored (see the notes above)")
        report += [f"{timing['frames']} frames: reading {timing['reading_s']:.1f}s, features {timing['features_s']:.1f}s, "
                   f"propagation {timing['propagation_s']:.1f}s ({fps:.2f} frames/s), writing {timing['writing_s']:.1f}s, "
                   f"metrics {timing['metrics_s']:.1f}s",
                   f"masks and CSVs in {results_dir}"
                   + (f"; overlays in {os.path.join(results_dir, 'overlays')}" if ctx.overlays else "")]
        return TaskResult(headline=g, rows=[{"sequence": n, "J-Mean": j, "F-Mean": f} for n, j, f in rows],
                          report="\n".join(report),
                          details={"dataset": label, "davis_root": root, "input_size": p.input_size, "timing": timing,
                                   "not_scored": notes})
