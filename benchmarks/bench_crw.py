"""CRW training-step throughput (clips/s, peak memory) at the paper's recipe and the CPU demo recipe, and, with
--reference PATH (a local clone of ajabri/videowalk, never vendored), the reference CRW's forward+backward on
the very same inputs in the same run.

  python benchmarks/bench_crw.py --batch 2 --steps 3 --reference /path/to/videowalk
  python benchmarks/bench_crw.py --batch 20 --amp                      # on a GPU
"""
from __future__ import annotations

import argparse
import os
import sys
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import import_reference, machine, peak_rss_mb, print_table, timed  # noqa: E402
from vidssl.methods import build_method  # noqa: E402

RECIPES = {
    "paper (256 px, 64 px patches, 49 nodes, T=4)": dict(img=256, patch=64, stride=32, kwargs={}),
    "demo (128 px, 32 px patches, layer3)": dict(img=128, patch=32, stride=16,
                                                 kwargs={"backbone_kwargs": {"remove_layers": ["layer4"]}}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument("--contiguous", action="store_true", help="NCHW instead of the default channels_last")
    p.add_argument("--reference", help="local clone of ajabri/videowalk")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ref = import_reference(os.path.join(args.reference, "code")) if args.reference else None
    rows = []
    for name, r in RECIPES.items():
        torch.manual_seed(0)
        method = build_method("crw", patch_size=r["patch"], patch_stride=r["stride"],
                              channels_last=not args.contiguous, **r["kwargs"]).to(device)
        opt = torch.optim.Adam(method.parameters(), lr=1e-4)
        clips = torch.randint(0, 256, (args.batch, 4, r["img"], r["img"], 3), dtype=torch.uint8, device=device)
        batch = method.device_augment({"clip": clips}, torch.Generator().manual_seed(0))

        def ours():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                loss = method(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_ours = timed(ours, repeats=args.steps, sync=True)
        mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()
        row = [name, args.batch, f"{args.batch / t_ours:.3f}", f"{mem:.0f}"]
        if ref is not None and not r["kwargs"]:
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

            t_ref = timed(reference, repeats=args.steps, sync=True)
            row += [f"{args.batch / t_ref:.3f}", f"{t_ref / t_ours:.2f}x"]
        else:
            row += ["-", "-"]
        rows.append(row)
    print_table(f"CRW training step (forward + backward + Adam) on {machine()}"
                + (", bf16" if args.amp else "") + (", NCHW" if args.contiguous else ", channels_last"),
                ["recipe", "batch", "clips/s", "peak MB", "reference clips/s", "speed-up"], rows)


if __name__ == "__main__":
    main()
