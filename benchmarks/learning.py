"""Learning curves: does each method learn, on real video, at CPU scale? (issue 25)

For every recipe (configs/<method>_cpu.yaml) and seed:
  1. train, resumably: step 0 is the method's own initialisation (built with the recipe's seed exactly as the
     trainer builds it) exported as an encoder; then for each requested step K the trainer runs with
     `trainer.stop_at=K trainer.resume=true` and the exported encoder is copied to
     <runs>/<recipe>/seed<S>/step<K>/ (with the cumulative training wall time in train.json);
  2. evaluate step 0, every checkpoint and two baselines: `bn` = step 0 with its BatchNorm statistics
     re-estimated on frames of the training videos (no weight changes: a margin over it is learning, not
     calibration) and `pixels` (Lab colour cells, once for all recipes). Measures: DAVIS-2016 J&F on the shared
     validation sequences, JHMDB PCK@0.1/0.2 on the shared clip (both by label propagation, at the protocol's
     --input-size), and, for methods with a global embedding, a frame-retrieval k-NN (see `knn_top1`);
  3. write <results>/learning.csv, learning.md and learning.png (one panel per measure, a curve per recipe and
     seed, the step-0 / bn / pixel baselines as horizontal lines).
Every stage skips what is already done (a step's encoder, a row of the CSV), so a killed run is continued by
running the same command again.

    PYTHONPATH=$PWD python benchmarks/learning.py --recipes crw_cpu --seeds 0 1 --steps 25 50 100 200 300
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.config import load_config
from vidssl.models.export import META, WEIGHTS, export_encoder, read_encoder

SHARED = os.environ.get("VIDSSL_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
MEASURES = ("davis_jf", "jhmdb_pck01", "jhmdb_pck02", "knn_top1")
FIELDS = ("recipe", "method", "seed", "step", "kind", "train_wall_s", "input_size", *MEASURES, "eval_wall_s")


def recipe_path(recipe: str) -> str:
    """A recipe name (crw_cpu) or a YAML path -> the YAML path."""
    if os.path.isfile(recipe):
        return recipe
    path = os.path.join(os.path.dirname(__file__), "..", "configs", f"{recipe}.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"recipe {recipe!r}: neither a file nor configs/{recipe}.yaml")
    return path


def recipe_name(recipe: str) -> str:
    return os.path.splitext(os.path.basename(recipe))[0]


def export_initialisation(cfg, folder: str) -> str:
    """Step 0: the method built as the trainer builds it (torch.manual_seed(cfg.seed), then build_method), its
    eval_encoder exported to `folder`. Works for every method, including those whose encoder cannot be built
    from the command line alone (TimeCycle's projected backbone needs its base network)."""
    from vidssl.methods import build_method

    torch.manual_seed(cfg.seed)
    method = build_method(**cfg.method)
    os.makedirs(folder, exist_ok=True)
    return export_encoder(method.eval_encoder(), folder, {"method": method.name, "step": 0, "run": "init"})


def train_curve(recipe: str, seed: int, steps: list[int], runs: str, overrides: list[str]) -> str:
    """Train `recipe` with `seed`, exporting step 0 and each step of `steps` to <runs>/<name>/seed<S>/step<K>/.
    Returns the seed folder. Steps already exported are skipped; the run itself resumes from its checkpoint."""
    from vidssl.engine import train

    name = recipe_name(recipe)
    root = os.path.join(runs, name, f"seed{seed}")
    run = os.path.join(root, "run")
    base = [f"out={run}", f"seed={seed}", *overrides]
    cfg = load_config(recipe_path(recipe), base)
    if not os.path.isfile(os.path.join(root, "step0", META)):
        export_initialisation(cfg, os.path.join(root, "step0"))
    elapsed = 0.0
    for k in sorted(set(steps)):
        folder = os.path.join(root, f"step{k}")
        if k == 0:
            continue
        if os.path.isfile(os.path.join(folder, META)):
            with open(os.path.join(folder, "train.json")) as f:
                elapsed = json.load(f)["train_wall_s"]
            continue
        if k > cfg.trainer.max_steps:
            raise ValueError(f"{name}: step {k} is beyond its trainer.max_steps={cfg.trainer.max_steps}")
        t0 = time.time()
        summary = train(load_config(recipe_path(recipe), base + [f"trainer.stop_at={k}", "trainer.resume=true"]))
        elapsed += time.time() - t0
        if summary["step"] != k:
            raise RuntimeError(f"{name} seed {seed}: the run stopped at step {summary['step']}, not {k}")
        os.makedirs(folder, exist_ok=True)
        for file in (WEIGHTS, META):
            shutil.copy2(os.path.join(run, file), os.path.join(folder, file))
        with open(os.path.join(folder, "train.json"), "w") as f:
            json.dump({"step": k, "train_wall_s": round(elapsed, 1), "last": summary["last"]}, f, indent=1)
    return root
