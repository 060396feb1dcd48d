"""How much the evaluation protocol alone moves DAVIS J&F (issue 20): the same encoders under named presets.

Runs the real command (`python -m eval_davis davis ...`) for each encoder x preset on the DAVIS-2016 sequences in
../shared/data/davis2016 and prints a markdown table (J&F, J, F and the protocol hash of each result). Encoders:
pixels (Lab colour cells), a random crw_resnet18 and any trained checkpoints given with --checkpoint NAME=PATH.
On a CPU, --input-size overrides every preset's input size (recorded in each result's protocol.json):

  python benchmarks/protocols.py --presets crw dino --input-size short:240 \\
      --checkpoint crw_cpu=runs/learning/crw_cpu/seed0/step300
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("VIDSSL_SHARED", os.path.join(ROOT, "..", "shared", "data"))


def evaluate(model_args: list[str], preset: str, out: str, davis_root: str, extra: list[str]) -> dict:
    """One `eval_davis davis` run (skipped when its results exist); its global scores and protocol hash."""
    pattern = os.path.join(out, "results", "global_results-*.csv")
    found = glob.glob(pattern)
    if not found:
        cmd = [sys.executable, "-m", "eval_davis", "davis", "--davis-root", davis_root, "--out", out,
               "--protocol", preset, "--no-overlays", *model_args, *extra]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
        found = glob.glob(pattern)
    with open(found[0]) as f:
        scores = next(csv.DictReader(f))
    with open(os.path.join(out, "protocol.json")) as f:
        protocol = json.load(f)
    return {"J&F": float(scores["J&F-Mean"]), "J": float(scores["J-Mean"]), "F": float(scores["F-Mean"]),
            "hash": protocol["hash"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["crw", "dino"])
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="a trained encoder (run folder or encoder.json) to add as a row; repeatable")
    p.add_argument("--input-size", default=None, help="override every preset's input size (e.g. short:240)")
    p.add_argument("--davis-root", default=os.path.join(SHARED, "davis2016"))
    p.add_argument("--out", default="runs/protocols")
    args = p.parse_args(argv)
    encoders = {"pixels (Lab)": ["--init", "pixels"],
                "crw_resnet18, random init": ["--backbone", "crw_resnet18", "--init", "random"]}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not path:
            p.error(f"--checkpoint {item!r}: expected NAME=PATH")
        encoders[name] = ["--checkpoint", path]
    extra = ["--input-size", args.input_size] if args.input_size else []
    table = {}
    for name, model_args in encoders.items():
        for preset in args.presets:
            folder = os.path.join(args.out, name.split(",")[0].split(" ")[0] + ("_random" if "random" in name else ""),
                                  preset)
            table[name, preset] = evaluate(model_args, preset, os.path.abspath(folder), args.davis_root, extra)
    size = f", input size {args.input_size} for every preset" if args.input_size else ""
    print(f"\nDAVIS J&F (J / F) on {args.davis_root}{size}; #hash = the protocol's digest (protocol.json)\n")
    print("| encoder | " + " | ".join(args.presets) + " |")
    print("|---|" + "---|" * len(args.presets))
    for name in encoders:
        cells = [f"{r['J&F']:.3f} ({r['J']:.3f} / {r['F']:.3f}) #{r['hash']}"
                 for r in (table[name, preset] for preset in args.presets)]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
