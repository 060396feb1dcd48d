"""`vidssl eval TASK ...`: one runner for every evaluation task of vidssl/eval/tasks/ (DAVIS J&F, JHMDB PCK, ...).

  vidssl eval davis --davis-root DAVIS --out OUT --checkpoint runs/crw    # a run folder, encoder.json or .pt
  vidssl eval davis --davis-root DAVIS --out OUT --backbone r3d_18 --init random --sequences bear,dog
  vidssl eval jhmdb --jhmdb-root JHMDB --split-list JHMDB/splits --out OUT --checkpoint CKPT
  vidssl eval davis --out OUT --checkpoint CKPT       # no root: the embedded synthetic DAVIS-layout set

Every task shares the model options (which encoder) and the propagation protocol; its own options say which data.
`--protocol crw|dino|cropmae|spa_then_temp` runs a published evaluation's settings (vidssl/eval/protocol.py);
every result folder gets protocol.json (the full protocol and its hash) beside its CSVs, and the hash is printed
with the headline numbers. `--debug` shows the traceback of an error instead of one line.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource

from vidssl.eval.protocol import Protocol, add_protocol_arguments, protocol_from_args
from vidssl.eval.tasks import TASKS, EvalContext


def write_protocol(out: str, protocol: Protocol) -> list[str]:
    """protocol.json in `out` and in every folder below it (two levels) that holds a CSV. Returns the paths."""
    from vidssl.io.atomic import atomic_write

    folders = {out}
    for root, dirs, files in os.walk(out):
        if os.path.relpath(root, out).count(os.sep) >= 2:
            dirs[:] = []
        if any(f.endswith(".csv") for f in files):
            folders.add(root)
    text = json.dumps(protocol.record(), indent=1) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    paths = []
    for folder in sorted(folders):
        path = os.path.join(folder, "protocol.json")
        atomic_write(path, write)
        paths.append(path)
    return paths


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--checkpoint", help="a run folder, its encoder.json / encoder.safetensors, or a training checkpoint")
    g.add_argument("--backbone", default="crw_resnet18",
                   help="registered backbone when no checkpoint is given (crw_resnet18, resnet50, r3d_18, timm:NAME...)")
    g.add_argument("--init", default="random", help="random | pixels | weights:PATH (without --checkpoint)")
    g.add_argument("--weights", help="local state dict for --backbone (same as --init weights:PATH)")
    g.add_argument("--allow-partial", action="store_true", help="accept weights that leave backbone tensors unset")
    g.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")


def check_out(out: str, data_roots: list[str], option: str = "--out") -> None:
    """--out is a folder outside every dataset folder (checked before anything is created)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"{option} {out} is a file; it must be a folder")
    o = os.path.realpath(out)
    for root in data_roots:
        r = os.path.realpath(root)
        if o == r or o.startswith(r + os.sep):
            raise ValueError(f"{option} {out} lies inside the dataset {root}: results are never written into the data; "
                             f"choose an --out outside it")


def build_parser(prog: str = "vidssl eval") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="task", required=True, metavar="TASK")
    for name in sorted(TASKS):
        task = TASKS[name]
        sp = sub.add_parser(name, help=task.help, description=inspect.cleandoc(task.__doc__ or ""),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        data = sp.add_argument_group("data")
        task.add_arguments(data)
        data.add_argument("--out", required=True, help="output folder")
        add_model_arguments(sp)
        add_protocol_arguments(sp)
        sp.add_argument("--no-overlays", action="store_true", help="write no overlay images or videos")
        sp.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    return p


def main(argv: list[str] | None = None, prog: str = "vidssl eval") -> dict:
    """Parse, evaluate, write OUT/summary.json; returns the summary."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    protocol = protocol_from_args(parser, args, args.task)
    from vidssl.eval.encoder import load_encoder, parse_device, set_vit_pos_embed

    device = parse_device(args.device)
    task = TASKS[args.task](args)  # checks the task's data options before anything is written
    check_out(args.out, task.data_roots())
    init = f"weights:{args.weights}" if args.weights else args.init
    encoder, description = load_encoder(args.checkpoint, args.backbone, init, allow_partial=args.allow_partial)
    set_vit_pos_embed(encoder, protocol.vit_pos_embed)
    stride = getattr(encoder, "stride", None)
    if protocol.feature_stride and stride and stride != protocol.feature_stride:
        print(f"warning: protocol {protocol.preset} read features at stride {protocol.feature_stride}; "
              f"this encoder gives stride {stride}")
    os.makedirs(args.out, exist_ok=True)
    write_protocol(args.out, protocol)  # before the run: even an interrupted result says how it was produced
    result = task.run(EvalContext(encoder, description, device, protocol, args.out, not args.no_overlays))
    write_protocol(args.out, protocol)
    if result.report:
        print(result.report)
    print(f"protocol {protocol.preset} #{protocol.digest()} (protocol.json in {args.out})")
    summary = {"encoder": description, "protocol": protocol.record(), "protocol_hash": protocol.digest(),
               "propagation": protocol.propagation(), **result.summary,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    return summary
