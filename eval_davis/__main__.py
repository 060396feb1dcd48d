"""Label-propagation evaluation on DAVIS (J&F) and JHMDB (PCK).

  python -m eval_davis --davis-root DAVIS --out OUT --checkpoint runs/crw      # a run folder, encoder.json or .pt
  python -m eval_davis --davis-root DAVIS --out OUT --backbone r3d_18 --init random --sequences bear,dog
  python -m eval_davis --jhmdb-root JHMDB --split-list JHMDB/splits --out OUT --checkpoint CKPT
  python -m eval_davis --out OUT --checkpoint CKPT        # no root: the embedded synthetic DAVIS-layout set
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys

import torch


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval_davis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--davis-root", help="DAVIS folder (JPEGImages/480p, Annotations/480p[, ImageSets/2017])")
    data.add_argument("--set", default="val", help="ImageSets/2017/<set>.txt (default val)")
    data.add_argument("--sequences", help="comma-separated sequence names (overrides --set)")
    data.add_argument("--jhmdb-root", help="JHMDB folder (Rename_Images/, joint_positions/)")
    data.add_argument("--split-list", help="JHMDB: a list of class/video lines, a *_test_split1.txt, or a folder of them")
    data.add_argument("--out", required=True, help="output folder")
    model = p.add_argument_group("model")
    model.add_argument("--checkpoint", help="a run folder, its encoder.json / encoder.safetensors, or a training checkpoint")
    model.add_argument("--backbone", default="crw_resnet18",
                       help="registered backbone when no checkpoint is given (crw_resnet18, resnet50, r3d_18, timm:NAME...)")
    model.add_argument("--init", default="random", help="random | pixels | weights:PATH (without --checkpoint)")
    model.add_argument("--weights", help="local state dict for --backbone (same as --init weights:PATH)")
    model.add_argument("--allow-partial", action="store_true", help="accept weights that leave backbone tensors unset")
    model.add_argument("--clip-len", type=int, default=8, help="video backbones: frames per sliding clip")
    model.add_argument("--device", default="auto")
    prop = p.add_argument_group("propagation (defaults: the CRW reference)")
    prop.add_argument("--n-context", type=int, default=20)
    prop.add_argument("--radius", type=float, default=12, help="feature cells; <= 0 disables")
    prop.add_argument("--restrict-first", action="store_true", help="apply the radius to the first frame too")
    prop.add_argument("--topk", type=int, default=10)
    prop.add_argument("--temperature", type=float, default=0.05)
    prop.add_argument("--weighting", default="softmax", choices=["softmax", "exp_renorm"])
    prop.add_argument("--minmax-norm", action="store_true", help="per-channel min-max of predicted maps")
    prop.add_argument("--label-resize", default="bilinear", choices=["bilinear", "nearest"])
    prop.add_argument("--output-resize", default="bilinear", choices=["bilinear", "nearest"])
    p.add_argument("--no-overlays", action="store_true")
    return p


def check_options(parser: argparse.ArgumentParser, args) -> None:
    """Options that make no sense are errors, not a J&F of 0."""
    if args.temperature <= 0:
        parser.error(f"--temperature must be > 0, got {args.temperature}")
    for name in ("topk", "clip_len"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.n_context < 0:
        parser.error(f"--n-context must be >= 0, got {args.n_context}")


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_options(parser, args)
    from vidssl.eval.encoder import load_encoder

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    init = f"weights:{args.weights}" if args.weights else args.init
    encoder, description = load_encoder(args.checkpoint, args.backbone, init, allow_partial=args.allow_partial)
    prop = dict(n_context=args.n_context, radius=args.radius if args.radius > 0 else None, topk=args.topk,
                temperature=args.temperature, restrict_first=args.restrict_first, weighting=args.weighting,
                minmax_norm=args.minmax_norm)
    os.makedirs(args.out, exist_ok=True)
    summary = {"encoder": description, "propagation": prop}
    if args.jhmdb_root:
        from vidssl.eval.jhmdb import list_videos, run_jhmdb

        videos = list_videos(args.jhmdb_root, args.split_list)
        print(f"JHMDB: {len(videos)} video(s); encoder: {description}")
        table = run_jhmdb(args.jhmdb_root, args.out, encoder, videos, device, prop, overlays=not args.no_overlays,
                          clip_len=args.clip_len)
        print(f"PCK@0.1 {table[0, -1]:.2f}   PCK@0.2 {table[1, -1]:.2f}   (pck.csv in {args.out})")
        summary.update({"dataset": "jhmdb", "PCK@0.1": table[0, -1], "PCK@0.2": table[1, -1]})
    else:
        from vidssl.eval.davis import list_sequences, run_davis
        from vidssl.eval.davis_metrics import format_table

        root, label = args.davis_root, "DAVIS"
        if not root:
            from vidssl.eval.synthetic import make_synthetic_davis

            root = os.path.join(args.out, "synthetic_davis")
            make_synthetic_davis(root)
            label = "the embedded SYNTHETIC DAVIS-layout set (textured objects moving over the sample clips)"
        sequences = list_sequences(root, args.set, args.sequences.split(",") if args.sequences else None)
        print(f"Evaluating on {label}: {len(sequences)} sequence(s) from {root}; encoder: {description}")
        results_dir = os.path.join(args.out, "results")
        g, rows, timing, notes = run_davis(root, results_dir, encoder, sequences, device, prop, args.label_resize,
                                    args.output_resize, overlays=not args.no_overlays, subset=args.set,
                                    clip_len=args.clip_len)
        print(f"--------------------------- Global results for {args.set} ---------------------------")
        print(format_table(g, rows, notes))
        if not rows:
            print("no sequence could be scored (see the notes above)")
        fps = timing["frames"] / max(timing["propagation_s"], 1e-9)
        print(f"{timing['frames']} frames: reading {timing['reading_s']:.1f}s, features {timing['features_s']:.1f}s, "
              f"propagation {timing['propagation_s']:.1f}s ({fps:.2f} frames/s), writing {timing['writing_s']:.1f}s, "
              f"metrics {timing['metrics_s']:.1f}s")
        print(f"masks and CSVs in {results_dir}; overlays in {os.path.join(results_dir, 'overlays')}")
        summary.update({"dataset": label, "davis_root": root, **g, "timing": timing, "not_scored": notes})
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=float)
    return summary


if __name__ == "__main__":
    from vidssl.cli import one_line_errors

    one_line_errors(main, sys.argv[1:])
