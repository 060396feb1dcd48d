"""`vidssl extract`: features for every video (or frame folder) to one .npy file each, plus manifest.jsonl.

  vidssl extract --checkpoint runs/crw --input videos/ --out feats/ --mode dense
  vidssl extract --backbone r3d_18 --init weights:r3d.safetensors --input clip.mp4 --out feats/ --mode clip
  vidssl extract ... --shard $SLURM_ARRAY_TASK_ID --num-shards 64      # one job of a cluster array
  torchrun --no-python --nproc_per_node 8 vidssl extract ...             # one shard per process (and GPU)
  vidssl extract --merge feats/                                          # merge the shards' manifests

--checkpoint takes a run folder, its encoder.json/encoder.safetensors, or a training checkpoint. Each video's
file is named by its path relative to the input (a/clip.mp4 -> a__clip.mp4.npy), recorded in the manifest.
dense: (T, C, h, w) float16 per video: the L2-normalised maps that label propagation reads (2D backbones frame
by frame; video backbones by the sliding-clip scheme of vidssl/models/dense.py). clip: (clips, C) float32
global features (pooled maps, or a ViT's CLS token) of consecutive clips of --clip-len frames: a video backbone
sees each clip whole, a 2D backbone's frame features are averaged.

Scale: --shard I --num-shards N takes the videos whose path relative to --input hashes to I (the split of the
preparation steps, vidssl/prep/shards.py; stable when videos are added). Under torchrun each of the K ranks
takes its part of that shard (shard I + N * RANK of N * K) on its own GPU (LOCAL_RANK). Every shard appends
to its own OUT/manifest_<I>of<N>.jsonl; the last one to finish merges them into OUT/manifest.jsonl (one line
per video: its file, settings, status; vidssl/features_merge.py), or run --merge. Videos are decoded in
--workers DataLoader processes ahead of the network, in pieces of at most --batch-mb of frames (a long video
is streamed piece by piece to its array on disk; memory stays bounded whatever its length), and short videos
of the same frame size share a forward pass up to that budget.
Finished videos are skipped on a re-run with the same settings (and redone when the settings differ); a video
that cannot be decoded is recorded as failed (and in failures.tsv) and skipped; no partial array is ever left
under a result's name, or as a temporary file once a run ends.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vidssl.data.datasets import discover_sources
from vidssl.eval.encoder import load_encoder, parse_device
from vidssl.eval.runner import check_out
from vidssl.features_batching import DecodedPieces, Failed, Piece, UnitBatcher, reason_of
from vidssl.features_merge import latest_records, merge, part_name, read_records
from vidssl.io.atomic import remove_stale_temporaries
from vidssl.io.paths import relative_source
from vidssl.models.export import resolve_encoder_path
from vidssl.prep.shards import shard_of


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


def _as_is(batch):
    return batch


# ---------------------------------------------------------------- outputs

class VideoOutput:
    """One video's array, written row block by row block into a memory map under a temporary name and renamed
    to its final name (after an fsync) once every row is in; `discard` removes the temporary."""

    def __init__(self, path: str, rows: int, dtype):
        self.path, self.tmp, self.rows, self.dtype = path, f"{path}.tmp{os.getpid()}", rows, dtype
        self.array, self.filled, self.started = None, 0, time.perf_counter()

    def write(self, row: int, values: np.ndarray) -> None:
        if self.array is None:
            self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=self.dtype,
                                                   shape=(self.rows, *values.shape[1:]))
        elif values.shape[1:] != self.array.shape[1:]:
            raise ValueError(f"features of shape {values.shape[1:]} at row {row} after {self.array.shape[1:]} "
                             "(the frame size changes within the video; pass --short-side)")
        self.array[row:row + len(values)] = values
        self.filled += len(values)

    @property
    def complete(self) -> bool:
        return self.filled == self.rows

    def finish(self) -> list[int]:
        shape = list(self.array.shape)
        self.array.flush()
        self.array = None  # closes the map
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)
        return shape

    def discard(self) -> None:
        self.array = None
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


# ---------------------------------------------------------------- one shard

def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    try:
        rank, world = int(env["RANK"] or 0), int(env["WORLD_SIZE"] or 1)
        local = int(env["LOCAL_RANK"] or 0)
    except ValueError as e:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers, got {env}") from e
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK must be in [0, WORLD_SIZE), got RANK={rank} WORLD_SIZE={world}")
    return rank, world, local


def _device(name: str, local_rank: int) -> torch.device:
    device = parse_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))  # one GPU per rank
    return device


def _check(args: argparse.Namespace) -> None:
    for flag, value, low in (("--clip-len", args.clip_len, 1), ("--short-side", args.short_side, 0),
                             ("--workers", args.workers, 0), ("--num-shards", args.num_shards, 1),
                             ("--max-batch", args.max_batch, 2)):
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    if not args.batch_mb > 0:
        raise ValueError(f"--batch-mb must be > 0, got {args.batch_mb}")
    if not 0 <= args.shard < args.num_shards:
        raise ValueError(f"--shard must be in [0, --num-shards), got {args.shard} of {args.num_shards}")
    check_out(args.out, [])


def extract(args: argparse.Namespace) -> dict:
    """Extract this process's shard of the input (module docstring); returns counts."""
    _check(args)
    rank, world, local_rank = _distributed()
    shard, num_shards = args.shard + args.num_shards * rank, args.num_shards * world
    device = _device(args.device, local_rank)
    single = os.path.isfile(args.input) and not args.input.endswith(".txt")
    sources = [args.input] if single else discover_sources(args.input)
    name_of = dict(zip(sources, output_names(sources, args.input)))
    mine = shard_of(sources, args.input, shard, num_shards)
    encoder, description = load_encoder(args.checkpoint, args.backbone, args.init, dense=args.mode == "dense",
                                        allow_partial=args.allow_partial)
    encoder = encoder.to(device)
    settings = {"encoder": description, "mode": args.mode, "short_side": args.short_side, "clip_len": args.clip_len}
    if args.checkpoint:
        settings["checkpoint_mtime"] = os.path.getmtime(resolve_encoder_path(args.checkpoint))
    fingerprint = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    os.makedirs(args.out, exist_ok=True)
    part = os.path.join(args.out, part_name(shard, num_shards))
    read_records(part, repair=True)  # this shard's own part: a line cut by a kill is dropped
    done, _ = latest_records(args.out)
    remove_stale_temporaries(args.out, [name_of[s] for s in mine])  # a killed run's partial arrays (ours only)

    def finished(source: str) -> bool:
        rec = done.get(os.path.abspath(source))
        return bool(rec and rec.get("status", "ok") == "ok" and rec.get("settings") == fingerprint
                    and os.path.exists(os.path.join(args.out, name_of[source])))

    todo = [s for s in mine if not finished(s)]
    counts = {"written": 0, "skipped": len(mine) - len(todo), "failed": 0}
    base = {"mode": args.mode, "settings": fingerprint, "short_side": args.short_side, "clip_len": args.clip_len}

    with open(part, "a") as manifest:
        def record(source: str, **fields) -> None:
            manifest.write(json.dumps({"source": os.path.abspath(source), "file": name_of[source], **fields,
                                       "encoder": description, "finished": time.time()}) + "\n")
            manifest.flush()  # a killed run loses at most the line being written

        _run(todo, encoder, args, device, shard, num_shards, name_of, base, record, counts)

    latest, _ = latest_records(args.out)
    missing = sum(1 for s in sources if latest.get(os.path.abspath(s), {}).get("settings") != fingerprint)
    where = f" (shard {shard} of {num_shards})" if num_shards > 1 else ""
    print(f"{counts['written']} written, {counts['skipped']} already done, {counts['failed']} failed{where}")
    if missing:  # other shards still running (or not started): the last one to finish merges
        print(f"{missing} video(s) of other shards not done yet; the last shard to finish merges the manifests "
              f"(or run: vidssl extract --merge {args.out})")
    else:
        summary = merge(args.out)
        print(f"manifest {summary['manifest']}: {summary['ok']} video(s)"
              + (f", {summary['failed']} failed (listed in {os.path.join(args.out, 'failures.tsv')})"
                 if summary["failed"] else ""))
    return {**counts, "shard": shard, "num_shards": num_shards, "merged": not missing}


def _run(todo: list[str], encoder, args, device, shard: int, num_shards: int, name_of: dict, base: dict,
         record, counts: dict) -> None:
    """Decode `todo` in workers, run the network on batches of pieces, write each video's array when all its
    pieces are in, and record it; on any exit, the arrays in progress are removed."""
    if not todo:
        return
    clip_mode = args.mode == "clip"
    budget = int(args.batch_mb * 2**20)
    dataset = DecodedPieces(todo, args.short_side, args.clip_len, budget, args.backend)
    workers = min(args.workers, len(todo))
    loader = DataLoader(dataset, batch_size=None, collate_fn=_as_is, num_workers=workers,
                        pin_memory=device.type == "cuda", prefetch_factor=2 if workers else None)
    outputs: dict[int, VideoOutput] = {}
    frames_done, started = 0, time.perf_counter()
    bar = tqdm(total=len(todo), desc="extract" + (f" {shard}/{num_shards}" if num_shards > 1 else ""),
               unit="video", dynamic_ncols=True, position=int(os.environ.get("LOCAL_RANK") or 0))

    dead: set[int] = set()  # videos failed in this run: their later pieces are dropped
    batcher = UnitBatcher(encoder, args.mode, args.clip_len, device, budget, args.max_batch)

    def fail(video: int, reason: str) -> None:
        if video in dead:
            return
        dead.add(video)
        batcher.drop(video)
        if video in outputs:
            outputs.pop(video).discard()
        record(todo[video], status="failed", error=reason, **base)
        counts["failed"] += 1
        bar.update()
        tqdm.write(f"skipped {todo[video]}: {reason}")

    def store(piece: Piece, values: np.ndarray) -> None:
        nonlocal frames_done
        out = outputs.get(piece.video)
        if out is None:
            rows = -(-piece.num_frames // args.clip_len) if clip_mode else piece.num_frames
            out = outputs[piece.video] = VideoOutput(os.path.join(args.out, name_of[todo[piece.video]]), rows,
                                                     np.float32 if clip_mode else np.float16)
        out.write(piece.start // args.clip_len if clip_mode else piece.start, values)
        if out.complete:
            shape = out.finish()
            del outputs[piece.video]
            record(todo[piece.video], status="ok", **base, frames=piece.num_frames, fps=piece.fps, shape=shape,
                   seconds=round(time.perf_counter() - out.started, 3))
            counts["written"] += 1
            frames_done += piece.num_frames
            bar.update()
            bar.set_postfix_str(f"{frames_done / (time.perf_counter() - started):.1f} frames/s", refresh=False)

    def handle(events: list[tuple]) -> None:
        for kind, what, result in events:
            if kind == "failed":
                fail(what, result)
            elif what.video not in dead:
                try:
                    store(what, result)
                except ValueError as e:  # its frame size changed midway
                    fail(what.video, reason_of(e))

    try:
        for batch in loader:
            for x in batch:
                if isinstance(x, Failed):
                    fail(x.video, x.reason)
                elif x.video not in dead:
                    handle(batcher.add(x))
        handle(batcher.flush())
    finally:
        for out in outputs.values():  # interrupted (or a network error): never leave a partial array
            out.discard()
        bar.close()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="vidssl extract", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="a video, a frame folder, a folder of them, or a list file")
    p.add_argument("--out", help="output folder: one .npy per video, manifest.jsonl")
    p.add_argument("--merge", metavar="OUT", help="only merge the shards' manifests in OUT into OUT/manifest.jsonl")
    p.add_argument("--mode", choices=["dense", "clip"], default="dense")
    p.add_argument("--checkpoint", help="run folder, encoder.json/.safetensors, or training checkpoint")
    p.add_argument("--backbone", default="crw_resnet18", help="registered backbone name (without --checkpoint)")
    p.add_argument("--init", default="random", help="random | pixels | weights:PATH (without --checkpoint)")
    p.add_argument("--allow-partial", action="store_true", help="accept weights that leave backbone tensors unset")
    p.add_argument("--short-side", type=int, default=0, help="resize frames so the short side is this (0 = native)")
    p.add_argument("--clip-len", type=int, default=8)
    p.add_argument("--shard", type=int, default=0, help="this job's shard, 0-based (a cluster array's task id)")
    p.add_argument("--num-shards", type=int, default=1, help="how many jobs share the videos")
    p.add_argument("--workers", type=int, default=2, help="decoding processes ahead of the network (0: inline)")
    p.add_argument("--batch-mb", type=float, default=16,
                   help="memory budget: MB of decoded uint8 frames per forward pass and per piece of a long video "
                        "(short videos share a pass); the network's memory grows with it")
    p.add_argument("--max-batch", type=int, default=32, help="at most this many frames (windows for video "
                   "backbones) per forward pass")
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (under torchrun: LOCAL_RANK's GPU)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    args = p.parse_args(argv)
    if args.merge:
        if args.input or args.out:
            p.error("--merge OUT takes no --input / --out")
        summary = merge(args.merge)
        print(f"manifest {summary['manifest']}: {summary['ok']} videos, {summary['failed']} failed, "
              f"from {summary['parts']} part(s)")
        return summary
    if not args.input or not args.out:
        p.error("--input and --out are required (or --merge OUT)")
    return extract(args)
