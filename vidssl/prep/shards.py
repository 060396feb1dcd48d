"""Per-video preprocessing (optical flow, re-encoding): sharded so a cluster array can fan it out, resumable,
failures listed instead of fatal.

    python -m data_prep.<step> --root VIDEOS --out OUT [--shard I --num-shards N]

Videos are found like training data (vidssl.data.datasets.discover_sources: a folder, searched recursively, or
a list file). Shard I of N takes every N-th video of that sorted list, so N jobs with I = 0..N-1 cover it once.
Each video's output goes to OUT/<its path relative to --root><suffix>, written under a temporary name and
renamed when complete: a killed job leaves no valid-looking partial output, and a re-run skips finished videos
(and removes stale temporaries). Videos that fail are listed in OUT/failed_<I>of<N>.tsv (path, reason).
"""
from __future__ import annotations

import argparse
import os
import shutil
from typing import Callable

from tqdm import tqdm

from vidssl.data.datasets import discover_sources
from vidssl.io.paths import relative_source

TMP = ".tmp"


def add_shard_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--root", required=True, help="folder of videos / frame folders, or a list file")
    parser.add_argument("--out", required=True, help="output folder (mirrors the input layout)")
    parser.add_argument("--shard", type=int, default=0, help="this job's shard, 0-based")
    parser.add_argument("--num-shards", type=int, default=1, help="how many jobs share the videos")
    return parser


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0 (sizes where 0 means native)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def check_roots(root: str, out: str) -> None:
    """--root must exist, and --out must be a folder outside --root: an --out inside it would be taken for input by
    the next run (frames of frame folders, flow of flow images), and --out equal to --root would take the inputs
    for finished outputs."""
    if not os.path.exists(root):
        raise FileNotFoundError(f"--root {root} does not exist")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file; it must be a folder")
    r, o = os.path.realpath(root), os.path.realpath(out)
    if os.path.isdir(r) and (o == r or o.startswith(r + os.sep)):
        raise ValueError(f"--out {out} is {'--root itself' if o == r else 'inside --root ' + root}: its outputs would "
                         f"be read as inputs; choose an --out outside --root")


def shard_of(items: list, shard: int, num_shards: int) -> list:
    """Every `num_shards`-th item from `shard`: the shards partition the list."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"--shard must be in [0, --num-shards) and --num-shards >= 1, got {shard} of {num_shards}")
    return items[shard::num_shards]


def output_path(source: str, root: str, out: str, suffix: str) -> str:
    """OUT/<source relative to root><suffix> (vidssl.io.paths.relative_source)."""
    return os.path.join(out, relative_source(source, root) + suffix)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def run_per_video(args: argparse.Namespace, suffix: str, work: Callable[[str, str], None], desc: str) -> dict:
    """Run `work(source, tmp_path)` for each video of this shard whose output does not exist yet; `work` writes a
    file or a folder at `tmp_path`, renamed to the final path when it returns. Returns counts and failures."""
    check_roots(args.root, args.out)
    sources = shard_of(discover_sources(args.root), args.shard, args.num_shards)
    os.makedirs(args.out, exist_ok=True)
    failed_path = os.path.join(args.out, f"failed_{args.shard}of{args.num_shards}.tsv")
    done = skipped = 0
    failed = []
    for source in tqdm(sources, desc=desc, unit="video", dynamic_ncols=True):
        final = output_path(source, args.root, args.out, suffix)
        if os.path.exists(final):
            skipped += 1
            continue
        tmp = final + TMP
        _remove(tmp)  # a killed earlier run's partial output
        os.makedirs(os.path.dirname(final), exist_ok=True)
        try:
            work(source, tmp)
        except Exception as e:  # one bad video must not end a cluster job: list it and go on
            _remove(tmp)
            failed.append((source, f"{type(e).__name__}: {e}".replace("\t", " ").replace("\n", " ")))
            continue
        os.replace(tmp, final)
        done += 1
    if failed:
        with open(failed_path, "w") as f:
            f.writelines(f"{p}\t{why}\n" for p, why in failed)
        print(f"{len(failed)} video(s) failed, listed in {failed_path}")
    elif os.path.exists(failed_path):
        os.remove(failed_path)  # a re-run that fixed them: no stale list
    print(f"{desc}: {done} written, {skipped} already done, {len(failed)} failed (shard {args.shard} of "
          f"{args.num_shards}, {len(sources)} videos)")
    return {"done": done, "skipped": skipped, "failed": failed}
