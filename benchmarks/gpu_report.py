"""Helpers of benchmarks/gpu.sh: the machine's facts, the learning run, and the one markdown report.

  python benchmarks/gpu_report.py facts WORK OUT          # OUT/machine.txt + WORK/facts.json
  python benchmarks/gpu_report.py learning --out DIR ...  # train a recipe for a while, evaluate it (a table)
  python benchmarks/gpu_report.py assemble WORK OUT       # OUT/gpu_report.md + OUT/gpu_logs.txt

gpu.sh runs each benchmark as its own process under `timeout` and appends a line to WORK/steps.tsv (name,
status, exit code, seconds, limit); each benchmark prints markdown tables (benchmarks/common.py print_table),
which `assemble` lifts from WORK/logs/<step>.log into one section per benchmark, with the reason beside any
step that failed, timed out or was skipped.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (step-name prefix, section title, what it measures): the report has every section, whatever happened.
SECTIONS = [
    ("crw", "CRW training step", "bench_crw.py: forward + backward + Adam on one augmented batch; fp32 (NCHW; "
     "PyTorch's default TF32 convolutions) vs bf16 autocast vs bf16 + channels_last; peak GPU memory per row "
     "(reset before each); the reference videowalk step (fp32) on the same views when its code is staged."),
    ("propagation", "Label propagation tile sizes", "bench_propagation.py: DAVIS 480p-sized features (60x107 "
     "cells, 256 channels), one row per query tile side; propagate_labels' GPU default is 16."),
    ("eval", "DAVIS-2017-val-sized evaluation", "bench_eval.py --copies 7: the 6 DAVIS-2016 sequences 7 times "
     "(2,051 frames, the size of DAVIS-2017 val), per stage; target: features + propagation + metrics < 60 s."),
    ("decode", "Decoding", "bench_decode.py: random 4-frame clips at 8 fps (file opened afresh) and sequential "
     "frames, every CPU backend and the GPU ones (torchcodec/decord on cuda: NVDEC)."),
    ("trainer", "Trainer overhead and data supply", "bench_trainer.py, one process per method: trainer cost = "
     "hand loop / trainer steps/s on a pre-made batch (target <= 1.10x); fit / pre-made = real decoding in "
     "DataLoader workers vs the pre-made batch (target >= 0.9x)."),
    ("learning", "Learning run", "A recipe trained for the time left, then DAVIS J&F of its encoder against "
     "the same network at random init (a sanity check of learning on this hardware, not a paper number)."),
]


def sh(cmd: str, timeout: float = 20) -> str:
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
        return (r.stdout + r.stderr).strip()
    except Exception as e:  # a missing tool is a fact too
        return f"({cmd}: {e})"


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "torchvision", "numpy", "opencv-python-headless", "kornia", "decord", "av", "torchcodec",
                 "timm", "zlib-ng", "scikit-video"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "-"
    return out


def facts(work: str, out: str) -> dict:
    """Device, driver, CUDA/cuDNN and library versions (WORK/facts.json) and a longer OUT/machine.txt."""
    import torch

    f = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
         "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda or "-",
         "cudnn": str(torch.backends.cudnn.version() or "-"), "cpu_cores": os.cpu_count(),
         "cpu": platform.processor() or platform.machine(), "device": "no GPU", "driver": "-",
         "gpu_memory_gb": "-", "commit": sh(f"git -C {ROOT} rev-parse --short HEAD 2>/dev/null") or "-"}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        f.update(device=p.name, gpu_memory_gb=f"{p.total_memory / 2**30:.0f}", sm=f"{p.major}.{p.minor}")
    if shutil.which("nvidia-smi"):
        f["driver"] = sh("nvidia-smi --query-gpu=driver_version --format=csv,noheader").splitlines()[0]
    f["packages"] = versions()
    try:
        from vidssl.io import available_backends
        f["video_backends"] = ", ".join(available_backends())
    except Exception as e:
        f["video_backends"] = f"(vidssl.io: {e})"
    with open(os.path.join(work, "facts.json"), "w") as fh:
        json.dump(f, fh, indent=1)
    parts = [("facts", json.dumps(f, indent=1)),
             ("nvidia-smi", sh("nvidia-smi") if shutil.which("nvidia-smi") else "nvidia-smi not found"),
             ("nvidia-smi -q (clocks, power, ECC)", sh("nvidia-smi -q -d CLOCK,POWER,ECC,PERFORMANCE")
              if shutil.which("nvidia-smi") else "-"),
             ("CPU", sh("lscpu") if shutil.which("lscpu") else sh("grep -m1 'model name' /proc/cpuinfo")),
             ("memory", sh("free -g") if shutil.which("free") else sh("head -3 /proc/meminfo")),
             ("disk", sh(f"df -h {ROOT}")), ("kernel", platform.platform()),
             ("FFmpeg libraries (torchcodec needs them)", sh("ldconfig -p | grep -E 'libav(codec|util|format)'")
              or "none found by ldconfig"),
             ("NVDEC library", sh("ldconfig -p | grep -E 'libnvcuvid'") or "libnvcuvid not found by ldconfig"),
             ("pip list", sh(f"{sys.executable} -m pip list 2>/dev/null", timeout=60))]
    with open(os.path.join(out, "machine.txt"), "w") as fh:
        for title, text in parts:
            fh.write(f"=== {title}\n{text}\n\n")
    return f


# ---------------------------------------------------------------- learning run

_CHILD: list[subprocess.Popen] = []


def _stop_children(signum, frame) -> None:
    """`timeout` stopping this helper stops its training or evaluation too (they run in their own group)."""
    for proc in _CHILD:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    sys.exit(128 + signum)


def _run(cmd: list[str], deadline: float, log) -> int | str:
    """Run `cmd` (its own process group, so DataLoader workers go with it) until it ends or `deadline`."""
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _CHILD.append(proc)
    try:
        return proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # the trainer's checkpoints are atomic: stopping mid-step loses nothing
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return "stopped at the time limit"


def learning(args) -> None:
    """Train args.config until args.seconds minus two evaluations are spent (checkpoints every
    args.ckpt_every steps), then evaluate the last exported encoder and the same network at random init on
    DAVIS; print a table."""
    signal.signal(signal.SIGTERM, _stop_children)
    t0 = time.time()
    end = t0 + args.seconds
    os.makedirs(args.out, exist_ok=True)
    run_dir = os.path.join(args.out, "run")
    log_path = os.path.join(args.out, "learning.log")
    log = open(log_path, "w")
    py = sys.executable
    davis = ["--davis-root", args.davis_root] if args.davis_root else []
    if not args.davis_root:  # a tiny synthetic set (dry runs)
        from vidssl.eval.synthetic import make_synthetic_davis

        root = os.path.join(args.out, "synthetic_davis")
        make_synthetic_davis(root, n_frames=args.synthetic_frames, size=(64, 96))
        davis = ["--davis-root", root]
    rows = []

    def evaluate(name: str, model: list[str], deadline: float) -> None:
        ev_out = os.path.join(args.out, "eval_" + ("trained" if model[0] == "--checkpoint" else "random"))
        t = time.time()
        status = _run([py, "-m", "vidssl.cli", "eval", "davis", "--out", ev_out, "--no-overlays", *davis, *model],
                      deadline, log)
        summary = os.path.join(ev_out, "summary.json")
        if status == 0 and os.path.isfile(summary):
            with open(summary) as fh:
                result = json.load(fh)
            rows.append([name, f"{result['J&F-Mean']:.3f}", f"{time.time() - t:.1f}", f"ok: {result['encoder']}"])
        else:
            rows.append([name, "-", f"{time.time() - t:.1f}", f"evaluation: {status}"])
        print(f"evaluated {name}: {rows[-1][1:]}", flush=True)

    # the baseline first: it needs no training, and its time tells how long the trained one's will take
    evaluate("random init (same network)", ["--backbone", args.backbone, "--init", "random"],
             t0 + args.eval_seconds)
    eval_s = float(rows[-1][2])
    train = [py, "-m", "vidssl.cli", "train", "--config", args.config, f"out={run_dir}", "trainer.overwrite=true",
             f"trainer.ckpt_every={args.ckpt_every}", f"trainer.max_steps={args.max_steps}",
             f"trainer.log_every={min(args.ckpt_every, 10)}", "trainer.tensorboard=false", *args.set]
    if args.root:
        train.append(f"data.root={args.root}")
    t_train = time.time()
    train_status = _run(train, end - 1.5 * eval_s - 5, log)
    train_s = time.time() - t_train
    print(f"training: {train_status} after {train_s:.0f} s", flush=True)
    name = f"trained, {args.config_name}"
    if os.path.isfile(os.path.join(run_dir, "encoder.json")):
        evaluate(name, ["--checkpoint", run_dir], end)
    else:
        rows.append([name, "-", "-", f"no exported encoder (training: {train_status})"])
    log.close()
    from benchmarks.common import print_table

    print_table(f"Learning run: {args.config_name}, {train_s:.0f} s of training "
                f"({'finished' if train_status == 0 else train_status}), DAVIS J&F",
                ["encoder", "J&F-Mean", "eval seconds", "status"], rows)
    with open(log_path) as fh:
        print("--- end of the learning log ---\n" + fh.read()[-3000:])


# ---------------------------------------------------------------- the report

TABLE_TITLE = re.compile(r"^## (.+)$")


def tables_in(text: str) -> list[tuple[str, list[str]]]:
    """(title, table lines) for every print_table block in a log."""
    lines, found, i = text.splitlines(), [], 0
    while i < len(lines):
        m = TABLE_TITLE.match(lines[i])
        if m and i + 2 < len(lines) and lines[i + 2].startswith("|"):
            j = i + 2
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            found.append((m.group(1), lines[i + 2:j]))
            i = j
        else:
            i += 1
    return found


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def last_of_each_title(tables: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """A table printed again as it grew: only its last version, where it first appeared."""
    last = dict(tables)
    return [(title, last[title]) for title in dict.fromkeys(t for t, _ in tables)]


def merge_tables(tables: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """Tables with the same header (one process per method) as one table, under the first one's title."""
    merged: list[tuple[str, list[str]]] = []
    for title, lines in tables:
        same = next((m for m in merged if cells(m[1][0]) == cells(lines[0])), None)
        if same:
            same[1].extend(lines[2:])
        else:
            merged.append((title, list(lines)))
    return merged


def number(text: str) -> float | None:
    m = re.match(r"^-?[0-9.]+", text.strip())
    return float(m.group(0)) if m else None


def verdicts(prefix: str, tables: list[tuple[str, list[str]]]) -> list[str]:
    """One line per target the section's figures decide."""
    out = []
    for _, lines in tables:
        header, rows = cells(lines[0]), [cells(line) for line in lines[2:]]
        col = {h: k for k, h in enumerate(header)}
        if prefix == "crw" and "variant" in col:
            for recipe in dict.fromkeys(r[col["recipe"]] for r in rows):
                rate = {r[col["variant"]]: number(r[col["clips/s"]]) for r in rows if r[col["recipe"]] == recipe}
                if rate.get("fp32") and rate.get("bf16_cl"):
                    out.append(f"{recipe}: bf16 + channels_last runs at {rate['bf16_cl'] / rate['fp32']:.2f}x the "
                               f"fp32 NCHW clips/s.")
                ref = [number(r[col["speed-up"]]) for r in rows if r[col["recipe"]] == recipe
                       and r[col["variant"]] == "bf16_cl" and number(r[col["speed-up"]])]
                if ref:
                    out.append(f"{recipe}: bf16 + channels_last vs the reference videowalk step: {ref[0]:.2f}x "
                               f"(target >= 2x: {'met' if ref[0] >= 2 else 'NOT met'}).")
        if prefix == "propagation" and "s/frame" in col:
            tiles = [(int(m.group(1)), number(r[col["s/frame"]])) for r in rows
                     if (m := re.search(r"tile (\d+)$", r[0])) and number(r[col["s/frame"]])]
            if tiles:
                best = min(tiles, key=lambda t: t[1])
                default = dict(tiles).get(16)
                verdict = ("the default (16) is the fastest: confirmed" if best[0] == 16 else
                           f"tile {best[0]} is {default / best[1]:.2f}x faster than the default 16" if default else
                           f"tile {best[0]} is the fastest")
                out.append(f"Fastest tile: {best[0]} ({best[1]:.4f} s/frame); {verdict}.")
        if prefix == "eval" and "stage" in col:
            stage = {r[col["stage"]]: number(r[col["seconds"]]) for r in rows}
            if None not in (stage.get("features"), stage.get("propagation"), stage.get("J&F from the PNGs")):
                core = stage["features"] + stage["propagation"] + stage["J&F from the PNGs"]
                out.append(f"features + propagation + metrics: {core:.1f} s (target < 60 s: "
                           f"{'met' if core < 60 else 'NOT met'}); whole run with reading and writing: "
                           f"{stage.get('total')} s.")
        if prefix == "trainer" and "trainer cost" in col:
            for r in rows:
                cost, supply = number(r[col["trainer cost"]]), number(r[col["fit / pre-made"]])
                if cost is not None and supply is not None:
                    out.append(f"{r[col['method']]}: trainer cost {cost:.2f}x (target <= 1.10x: "
                               f"{'met' if cost <= 1.10 else 'NOT met'}), data supply {supply:.2f}x (target >= 0.9x: "
                               f"{'met' if supply >= 0.9 else 'NOT met'}).")
    return out


def read_steps(work: str) -> list[dict]:
    path = os.path.join(work, "steps.tsv")
    steps = []
    if os.path.isfile(path):
        with open(path) as fh:
            for line in fh:
                name, status, rc, seconds, limit, *note = line.rstrip("\n").split("\t")
                steps.append(dict(name=name, status=status, rc=rc, seconds=seconds, limit=limit,
                                  note=note[0] if note else ""))
    return steps


def log_of(work: str, name: str) -> str:
    path = os.path.join(work, "logs", f"{name}.log")
    if not os.path.isfile(path):
        return ""
    with open(path, errors="replace") as fh:
        return fh.read()


def tail(text: str, n: int = 15) -> str:
    lines = [line[-300:] for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(lines[-n:])


def assemble(work: str, out: str, mode: str = "") -> str:
    f = {}
    if os.path.isfile(os.path.join(work, "facts.json")):
        with open(os.path.join(work, "facts.json")) as fh:
            f = json.load(fh)
    steps = read_steps(work)
    md = ["# GPU benchmarks (benchmarks/gpu.sh)", ""]
    if mode:
        md += [f"Mode: **{mode}**", ""]
    md += ["## Machine", "", "| fact | value |", "|---|---|"]
    for key, label in (("device", "device"), ("gpu_memory_gb", "GPU memory (GiB)"), ("driver", "driver"),
                       ("torch", "torch"), ("cuda", "CUDA (torch build)"), ("cudnn", "cuDNN"),
                       ("python", "Python"), ("cpu_cores", "CPU cores"), ("cpu", "CPU"),
                       ("video_backends", "video backends"), ("commit", "commit"), ("date", "date")):
        md.append(f"| {label} | {f.get(key, '-')} |")
    pk = f.get("packages", {})
    if pk:
        md.append("| packages | " + ", ".join(f"{k} {v}" for k, v in pk.items()) + " |")
    md += ["", "More in machine.txt (nvidia-smi, CPU, memory, FFmpeg/NVDEC libraries, pip list); every step's "
           "output in gpu_logs.txt.", "", "## Steps", "", "| step | status | seconds | limit s | note |",
           "|---|---|---|---|---|"]
    for s in steps:
        md.append(f"| {s['name']} | {s['status']} | {s['seconds']} | {s['limit']} | {s['note']} |")
    total = sum(float(s["seconds"]) for s in steps if s["seconds"].replace(".", "").isdigit())
    md += ["", f"Total time in steps: {total:.0f} s.", ""]
    for prefix, title, what in SECTIONS:
        md += [f"## {title}", "", what, ""]
        mine = [s for s in steps if s["name"] == prefix or s["name"].startswith(prefix + "_")]
        if not mine:
            md += ["Not run (no such step in this run).", ""]
            continue
        tables = []
        for s in mine:
            tables += last_of_each_title(tables_in(log_of(work, s["name"])))
        tables = merge_tables(tables)
        for table_title, lines in tables:
            md += [f"### {table_title}", "", *lines, ""]
        md += [f"- {v}" for v in verdicts(prefix, tables)]
        for s in mine:
            if s["status"] != "ok":
                md += ["", f"Step `{s['name']}`: **{s['status']}**" + (f" ({s['note']})" if s["note"] else "")
                       + ". End of its output:", "", "```", tail(log_of(work, s["name"])) or "(no output)", "```"]
        md.append("")
    text = "\n".join(md).rstrip() + "\n"
    with open(os.path.join(out, "gpu_report.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(out, "gpu_logs.txt"), "w") as fh:
        for name in ["install", *[s["name"] for s in steps if s["name"] != "install"]]:
            text_log = log_of(work, name)
            if text_log:
                fh.write(f"===== {name}\n{text_log.replace(chr(13), chr(10))}\n")
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("facts")
    a.add_argument("work")
    a.add_argument("out")
    a = sub.add_parser("assemble")
    a.add_argument("work")
    a.add_argument("out")
    a.add_argument("--mode", default="")
    a = sub.add_parser("learning")
    a.add_argument("--out", required=True)
    a.add_argument("--config", default=os.path.join(ROOT, "configs", "crw_demo.yaml"))
    a.add_argument("--backbone", default="crw_resnet18", help="the recipe's backbone, for the random-init row")
    a.add_argument("--root", default="", help="training videos (default: the recipe's)")
    a.add_argument("--davis-root", default="", help="DAVIS folder (default: a tiny synthetic set)")
    a.add_argument("--synthetic-frames", type=int, default=4)
    a.add_argument("--seconds", type=float, default=180, help="the whole learning run: evaluations included")
    a.add_argument("--eval-seconds", type=float, default=60, help="limit of the random-init evaluation")
    a.add_argument("--max-steps", type=int, default=100000)
    a.add_argument("--ckpt-every", type=int, default=50)
    a.add_argument("--set", nargs="*", default=[], help="config overrides")
    args = p.parse_args()
    if args.cmd == "facts":
        facts(args.work, args.out)
    elif args.cmd == "assemble":
        assemble(args.work, args.out, args.mode)
    else:
        args.config_name = os.path.basename(args.config)
        learning(args)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
