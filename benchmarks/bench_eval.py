"""The whole DAVIS evaluation (what `python -m eval_davis` runs: reading the frames, features, propagation,
writing the palette PNGs, J&F from them) on real sequences, timed per stage, with peak host (and GPU) memory. By default the 6
real DAVIS-2016 sequences in ../shared/data/davis2016 (293 frames at 854x480); --copies 7 evaluates each of
them 7 times under different names (2,051 frames, 42 sequences), the size of DAVIS-2017 val (30 videos,
~2,000 frames), for the issue's GPU target: features + propagation + metrics in under 60 s (the total here also counts
reading the frames and writing the PNGs). Random-init
ResNet-18 (the cost does not depend on the weights); no overlays.

  python benchmarks/bench_eval.py                 # CPU: ~6 min for the 293 frames on 2 cores
  python benchmarks/bench_eval.py --copies 7      # on a GPU
  python benchmarks/bench_eval.py --synthetic 6 --synthetic-size 64x96 --copies 2   # a tiny dry run, no DAVIS data
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import machine, peak_rss_mb, print_table  # noqa: E402
from vidssl.eval.encoder import load_encoder  # noqa: E402
from vidssl.eval.tasks.davis import list_sequences, run_davis  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "davis2016")


def linked_copies(src: str, dst: str, sequences: list[str], copies: int) -> list[str]:
    """A DAVIS layout in `dst` whose sequences are symlinks to src's, each `copies` times (<seq>_<i>)."""
    names = []
    for seq in sequences:
        for i in range(copies):
            name = f"{seq}_{i}" if copies > 1 else seq
            for kind in ("JPEGImages", "Annotations"):
                os.makedirs(os.path.join(dst, kind, "480p"), exist_ok=True)
                os.symlink(os.path.abspath(os.path.join(src, kind, "480p", seq)), os.path.join(dst, kind, "480p", name))
            names.append(name)
    return names


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--davis-root", default=SHARED)
    p.add_argument("--sequences", help="comma-separated subset (default: all)")
    p.add_argument("--copies", type=int, default=1, help="evaluate every sequence this many times")
    p.add_argument("--backbone", default="crw_resnet18")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--synthetic", type=int, metavar="FRAMES",
                   help="instead of --davis-root: the embedded synthetic DAVIS-layout set, FRAMES frames a sequence")
    p.add_argument("--synthetic-size", default="240x320", help="HxW of the synthetic frames")
    args = p.parse_args()
    if not args.synthetic and not os.path.isdir(os.path.join(args.davis_root, "JPEGImages")):
        sys.exit(f"{args.davis_root}: no DAVIS folder (JPEGImages/480p, Annotations/480p); give --davis-root")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    encoder, _ = load_encoder(backbone=args.backbone, init="random")
    with tempfile.TemporaryDirectory() as tmp:
        davis_root = args.davis_root
        if args.synthetic:
            from vidssl.eval.synthetic import make_synthetic_davis

            davis_root = os.path.join(tmp, "synthetic")
            size = tuple(int(v) for v in args.synthetic_size.lower().split("x"))
            make_synthetic_davis(davis_root, n_frames=args.synthetic, size=size)
        root = os.path.join(tmp, "DAVIS")
        chosen = list_sequences(davis_root, None, args.sequences.split(",") if args.sequences else None)
        sequences = linked_copies(davis_root, root, chosen, args.copies)
        global_res, _, timing, _ = run_davis(root, os.path.join(tmp, "results"), encoder, sequences, device, overlays=False)
    n = timing["frames"]
    stages = [("reading frames", timing["reading_s"]), ("features", timing["features_s"]), ("propagation", timing["propagation_s"]),
              ("writing PNGs", timing["writing_s"]), ("J&F from the PNGs", timing["metrics_s"])]
    total = sum(s for _, s in stages)
    rows = [[name, f"{s:.1f}", f"{n / s:.1f}" if s else "-"] for name, s in stages]
    rows.append(["total", f"{total:.1f}", f"{n / total:.1f}"])
    gpu = f"{torch.cuda.max_memory_allocated(device) / 2 ** 30:.2f}" if device.type == "cuda" else "-"
    print_table(f"eval_davis on {len(sequences)} sequences, {n} frames, {args.backbone} random init, on {machine()}",
                ["stage", "seconds", "frames/s"], rows)
    print_table("Whole evaluation: memory and result", ["peak host RSS GB", "peak GPU GB (allocated)", "J&F-Mean"],
                [[f"{peak_rss_mb() / 1024:.2f}", gpu, f"{global_res['J&F-Mean']:.3f}"]])


if __name__ == "__main__":
    main()
