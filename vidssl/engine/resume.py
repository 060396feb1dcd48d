"""The resume policy: which checkpoint a run continues, and which changed settings it accepts.

A run folder holds one run. Starting where a checkpoint exists is refused unless `trainer.resume=true` (continue it)
or `trainer.overwrite=true` (start over, removing what the earlier run wrote). A resumed run with other settings
would silently be another run: refused, naming each changed key, unless `trainer.allow_changes=true` (then they
apply from the resumed step on and config.yaml records them). A longer `trainer.max_steps` is always accepted.
Another number of processes is refused: the batch order and per-rank augmentation depend on it.
"""
from __future__ import annotations

import contextlib
import os
import shutil

from vidssl.io.checkpoint import load_checkpoint
from vidssl.models.export import CHECKPOINT, META, WEIGHTS

# Keys that do not change what a run computes: they may differ when it is resumed.
BOOKKEEPING = {"out", "trainer.resume", "trainer.overwrite", "trainer.stop_at", "trainer.allow_changes",
               "trainer.log_every", "trainer.ckpt_every", "trainer.tensorboard", "trainer.threads",
               "data.num_workers", "data.backend"}

# Changed on resume without trainer.allow_changes, with a message and a record in config.yaml: training longer,
# and the data found at another path (a dataset moved or copied to local disk; said, so that a wrong path shows).
EXTENDABLE = {"trainer.max_steps", "data.root"}


def previous_run(out: str, config: dict, resume: bool, overwrite: bool, allow_changes: bool, rank: int,
                 world_size: int) -> dict | None:
    """The checkpoint to resume from (with its "history" of changed settings extended), or None for a fresh run;
    refuses to overwrite or mix runs silently."""
    path = os.path.join(out, CHECKPOINT)
    if overwrite and not resume:
        clear_run(out, rank)
    if not os.path.exists(path):
        if resume and rank == 0:
            print(f"trainer.resume=true, but {path} does not exist: starting a new run")
        return None
    if not resume:
        raise FileExistsError(f"{path} exists; pass trainer.resume=true to continue it, "
                              f"trainer.overwrite=true to start over, or choose another out=")
    ckpt = load_checkpoint(path)
    changes = check_resume_changes(ckpt.get("config", {}), config, path, allow_changes)
    if changes:
        print(f"resuming {path} at step {ckpt['step']} with changed settings: "
              + "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()))
        ckpt["history"] = ckpt.get("history", []) + [
            {"step": ckpt["step"], "changed": {k: {"from": a, "to": b} for k, (a, b) in changes.items()}}]
    max_steps = config["trainer"]["max_steps"]
    if ckpt["step"] > max_steps:
        raise ValueError(f"{path} is at step {ckpt['step']}, beyond trainer.max_steps={max_steps}: resume with "
                         f"trainer.max_steps >= {ckpt['step']}")
    saved = ckpt.get("world_size", 1)
    if saved != world_size:
        raise RuntimeError(
            f"{path} was trained by {saved} process(es), this run has {world_size}: the batch order and the "
            f"per-rank augmentation depend on the world size, so it would silently become another run. Resume "
            f"with `torchrun --nproc_per_node {saved}` (or {saved} processes over several nodes), or start a new "
            f"run (another out=) from its encoder.")
    return ckpt


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v and k != "method":
            out.update(_flatten(v, f"{prefix}{k}."))
        elif k == "method" and isinstance(v, dict):
            out.update({f"method.{mk}": mv for mk, mv in v.items()})
        else:
            out[prefix + k] = v
    return out


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """{key: (old value, new value)} of the settings that differ, bookkeeping keys and history aside."""
    a, b = _flatten({k: v for k, v in old.items() if k != "history"}), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
            if k not in BOOKKEEPING and a.get(k) != b.get(k)}


def check_resume_changes(old: dict, new: dict, path: str, allow: bool) -> dict:
    """The changed settings; ValueError naming each, unless they are only extendable or `allow`."""
    changes = config_changes(old, new)
    if set(changes) - EXTENDABLE and not allow:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
        raise ValueError(f"{path} was trained with other settings ({listed}). Resume with the same settings, or "
                         f"pass trainer.allow_changes=true to apply the new ones from the resumed step on "
                         f"(recorded in config.yaml)")
    return changes


def clear_run(out: str, rank: int) -> None:
    """trainer.overwrite: remove what an earlier run wrote here (its files only, never the folder), so nothing
    stale (metrics, bad_videos, TensorBoard events) mixes with the new run. Each rank removes its own files."""
    own = [f"bad_videos.rank{rank}.tsv"]
    if rank == 0:
        own += [CHECKPOINT, WEIGHTS, META, "metrics.jsonl", "bad_videos.tsv", "config.yaml"]
        shutil.rmtree(os.path.join(out, "tb"), ignore_errors=True)
    for name in own:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, name))
