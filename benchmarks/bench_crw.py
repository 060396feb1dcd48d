"""CRW training-step throughput (clips/s, peak memory) at the paper's recipe and the CPU demo recipe, and, with
--reference PATH (a local clone of ajabri/videowalk, never vendored), the reference CRW's forward+backward on
the very same inputs in the same run.

--variants times several numeric settings of the same recipe in one run (each row its own peak memory):
fp32 (NCHW), fp32_cl (channels_last), bf16 (bf16 autocast, NCHW), bf16_cl (bf16 autocast + channels_last).

  python benchmarks/bench_crw.py --batch 2 --steps 3 --reference /path/to/videowalk
  python benchmarks/bench_crw.py --batch 20 --amp                      # on a GPU
  python benchmarks/bench_crw.py --recipes paper --batch 20 --variants fp32,bf16,bf16_cl   # on a GPU
"""
from __future__ import annotations

import argparse
import os
import sys
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import import_reference, machine, peak_rss_mb, print_row, print_table, timed  # noqa: E402
from vidssl.methods import build_method  # noqa: E402

RECIPES = {
    "paper": ("paper (256 px, 64 px patches, 49 nodes, T=4)", dict(img=256, patch=64, stride=32, kwargs={})),
    "demo": ("demo (128 px, 32 px patches, layer3)", dict(img=128, patch=32, stride=16,
                                                          kwargs={"backbone_kwargs": {"remove_layers": ["layer4"]}})),
}
VARIANTS = {"fp32": (False, False), "fp32_cl": (False, True), "bf16": (True, False), "bf16_cl": (True, True)}  # amp, NHWC


def peak_memory_mb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument("--contiguous", action="store_true", help="NCHW instead of the default channels_last")
    p.add_argument("--reference", help="local clone of ajabri/videowalk")
    p.add_argument("--recipes", default="paper,demo", help=f"comma-separated, of {', '.join(RECIPES)}")
    p.add_argument("--variants", help=f"comma-separated, of {', '.join(VARIANTS)} (overrides --amp/--contiguous)")
    p.add_argument("--img", type=int, help="frame size instead of the recipe's (tiny dry runs)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    args = p.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    variants = args.variants.split(",") if args.variants else [("bf16" if args.amp else "fp32")
                                                               + ("" if args.contiguous else "_cl")]
    unknown = [v for v in variants if v not in VARIANTS] + [r for r in args.recipes.split(",") if r not in RECIPES]
    if unknown:
        p.error(f"unknown variant or recipe {unknown}; variants: {', '.join(VARIANTS)}; recipes: {', '.join(RECIPES)}")
    ref = import_reference(os.path.join(args.reference, "code")) if args.reference else None
    rows = []
    for key in args.recipes.split(","):
        name, r = RECIPES[key]
        img = args.img or r["img"]
        t_ref = None
        for variant in variants:
            amp, nhwc = VARIANTS[variant]
            torch.manual_seed(0)
            method = build_method("crw", patch_size=r["patch"], patch_stride=r["stride"],
                                  channels_last=nhwc, **r["kwargs"]).to(device)
            opt = torch.optim.Adam(method.parameters(), lr=1e-4)
            clips = torch.randint(0, 256, (args.batch, 4, img, img, 3), dtype=torch.uint8, device=device)
            batch = method.device_augment({"clip": clips}, torch.Generator().manual_seed(0))

            def ours():
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = method(batch)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()

            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            t_ours = timed(ours, repeats=args.steps, sync=True)
            row = [name, variant, args.batch, f"{args.batch / t_ours:.3f}", f"{peak_memory_mb(device):.0f}"]
            if ref is not None and not r["kwargs"] and t_ref is None:
                t_ref = reference_seconds(ref, batch, device, args.steps)
            row += [f"{args.batch / t_ref:.3f}", f"{t_ref / t_ours:.2f}x"] if t_ref else ["-", "-"]
            rows.append(row)
            print_row(row)
            method = opt = batch = None  # free before the next variant (the closure is done with them)
    memory = "peak GPU MB (allocated)" if device.type == "cuda" else "peak RSS MB (cumulative)"
    print_table(f"CRW training step (forward + backward + Adam) on {machine()}",
                ["recipe", "variant", "batch", "clips/s", memory, "reference clips/s", "speed-up"], rows)


def reference_seconds(ref, batch: dict, device: torch.device, steps: int) -> float:
    """Seconds per step of videowalk's CRW (fp32, its own layout) on the same augmented views."""
    ref_args = SimpleNamespace(dropout=0.1, featdrop=0.0, temp=0.05, model_type="scratch", head_depth=0,
                               remove_layers=[], device=str(device), flip=False, sk_targets=False)
    torch.manual_seed(0)
    ref_model = ref[0].CRW(ref_args).to(device)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-4)
    views = batch["views"]
    x = views.reshape(views.shape[0], views.shape[1], -1, *views.shape[-2:])  # B x T x N*C x H x W

    def reference():
        _, loss, _ = ref_model(x)
        ref_opt.zero_grad()
        loss.mean().backward()
        ref_opt.step()

    return timed(reference, repeats=steps, sync=True)


if __name__ == "__main__":
    main()
