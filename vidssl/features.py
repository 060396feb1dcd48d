"""`vidssl extract`: features for every video (or frame folder) to one .npy file each, plus manifest.jsonl.

  vidssl extract --checkpoint runs/crw --input videos/ --out feats/ --mode dense
  vidssl extract --backbone r3d_18 --init weights:r3d.safetensors --input clip.mp4 --out feats/ --mode clip

--checkpoint takes a run folder, its encoder.json/encoder.safetensors, or a training checkpoint. Each video's
file is named by its path relative to the input (a/clip.mp4 -> a__clip.mp4.npy), recorded in the manifest.
dense: (T, C, h, w) float16 per video: the L2-normalised maps that label propagation reads (2D backbones frame
by frame; video backbones by the sliding-clip scheme of vidssl/models/dense.py), streamed to disk chunk by
chunk. clip: (clips, C) float32 global features (pooled maps, or a ViT's CLS token) of consecutive clips of
--clip-len frames: a video backbone sees each clip whole, a 2D backbone's frame features are averaged.
Finished videos are skipped on a re-run with the same settings (and redone when
the settings differ); a video that cannot be decoded is reported in failures.tsv and skipped.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os

import numpy as np
import torch
from tqdm import tqdm

from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, resize_frame, short_side_size
from vidssl.data.datasets import discover_sources
from vidssl.data.augment import normalize
from vidssl.eval.encoder import frame_features, load_encoder
from vidssl.io import VideoDecodeError, open_video
from vidssl.io.paths import relative_source
from vidssl.models.dense import global_clip_features
from vidssl.models.export import resolve_encoder_path


def output_name(source: str, root: str) -> str:
    """A stable, unique file name: the source's path relative to the input (vidssl.io.paths.relative_source),
    extension kept, separators as "__": a/clip.mp4 -> a__clip.mp4.npy."""
    return relative_source(source, root).replace(os.sep, "__") + ".npy"


def output_names(sources: list[str], root: str) -> list[str]:
    names, seen = [output_name(s, root) for s in sources], set()
    for name in names:
        if name in seen:
            raise ValueError(f"two inputs map to the same output file {name}; rename one of them")
        seen.add(name)
    return names


def read_manifest(path: str) -> dict[str, dict]:
    """{source: its latest record}. A line cut by a killed run (invalid JSON) is dropped and the file rewritten
    without it, so the next record is not appended to a broken line; that video is simply done again."""
    if not os.path.exists(path):
        return {}
    records, broken = [], 0
    with open(path) as f:
        for line in filter(str.strip, f):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                broken += 1
    if broken:
        print(f"{path}: dropped {broken} incomplete line(s) (an interrupted run); those videos are redone")
        with open(path + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
        os.replace(path + ".tmp", path)
    return {r["source"]: r for r in records if "source" in r}


def _resize(frames: torch.Tensor, short_side: int) -> torch.Tensor:
    if not short_side:
        return frames
    size = short_side_size(*frames.shape[1:3], short_side)
    return torch.from_numpy(np.stack([resize_frame(f, size) for f in frames.numpy()]))


def extract_video(encoder, source: str, path: str, mode: str, device, short_side: int = 0, clip_len: int = 8,
                  chunk: int = 16, backend: str = "auto") -> dict:
    """Write one video's features to `path` (atomically); returns its manifest fields."""
    tmp = path + ".tmp.npy"
    with open_video(source, backend=backend) as reader:
        T = reader.num_frames
        step = clip_len if mode == "clip" else max(chunk // clip_len, 1) * clip_len  # whole sliding clips
        out, pooled = None, []
        for start in range(0, T, step):
            frames = _resize(reader.get_frames(range(start, min(start + step, T))), short_side)
            if mode == "dense":
                feats = frame_features(encoder, frames, device, clip_len=clip_len)
                if out is None:
                    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(T, *feats.shape[1:]))
                out[start:start + len(feats)] = feats.cpu().numpy().astype(np.float16)
            else:
                x = normalize(frames.to(device).permute(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
                pooled.append(global_clip_features(encoder.to(device), x, clip_len).float().cpu().numpy())
        if mode == "dense":
            out.flush()
            shape = out.shape
            del out
        else:
            arr = np.concatenate(pooled).astype(np.float32)
            np.save(tmp, arr)
            shape = arr.shape
        os.replace(tmp, path)
        return {"frames": T, "fps": reader.fps, "shape": list(shape)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="vidssl extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="a video, a frame folder, a folder of them, or a list file")
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=["dense", "clip"], default="dense")
    p.add_argument("--checkpoint", help="run folder, encoder.json/.safetensors, or training checkpoint")
    p.add_argument("--backbone", default="crw_resnet18", help="registered backbone name (without --checkpoint)")
    p.add_argument("--init", default="random", help="random | pixels | weights:PATH (without --checkpoint)")
    p.add_argument("--allow-partial", action="store_true", help="accept weights that leave backbone tensors unset")
    p.add_argument("--short-side", type=int, default=0, help="resize frames so the short side is this (0 = native)")
    p.add_argument("--clip-len", type=int, default=8)
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    single = os.path.isfile(args.input) and not args.input.endswith(".txt")
    sources = [args.input] if single else discover_sources(args.input)
    encoder, description = load_encoder(args.checkpoint, args.backbone, args.init, dense=args.mode == "dense",
                                        allow_partial=args.allow_partial)
    settings = {"encoder": description, "mode": args.mode, "short_side": args.short_side, "clip_len": args.clip_len}
    if args.checkpoint:
        settings["checkpoint_mtime"] = os.path.getmtime(resolve_encoder_path(args.checkpoint))
    fingerprint = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    os.makedirs(args.out, exist_ok=True)
    manifest = os.path.join(args.out, "manifest.jsonl")
    done = read_manifest(manifest)
    for leftover in glob.glob(os.path.join(glob.escape(args.out), "**", "*.tmp.npy"), recursive=True):
        os.remove(leftover)  # a killed run's partial array: never left looking like a result
    failures, skipped, written = [], 0, 0
    for source, name in tqdm(list(zip(sources, output_names(sources, args.input))), desc="extract"):
        path = os.path.join(args.out, name)
        rec = done.get(os.path.abspath(source))
        if rec and rec["settings"] == fingerprint and os.path.exists(path):
            skipped += 1
            continue
        try:
            fields = extract_video(encoder, source, path, args.mode, device, args.short_side, args.clip_len,
                                   backend=args.backend)
        except VideoDecodeError as e:
            failures.append(f"{e.path}\t{e.reason}")
            tqdm.write(f"skipped {e.path}: {e.reason}")
            continue
        with open(manifest, "a") as f:
            f.write(json.dumps({"source": os.path.abspath(source), "file": name, "mode": args.mode,
                                "settings": fingerprint, **fields, "encoder": description}) + "\n")
        written += 1
    failures_path = os.path.join(args.out, "failures.tsv")
    if failures:
        with open(failures_path, "w") as f:  # this run's failures
            f.writelines(x + "\n" for x in failures)
    elif os.path.exists(failures_path):
        os.remove(failures_path)  # an earlier run's list, no longer true
    print(f"{written} written, {skipped} already done, {len(failures)} failed"
          + (f" (listed in {os.path.join(args.out, 'failures.tsv')})" if failures else "") + f"; manifest {manifest}")
