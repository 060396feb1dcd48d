"""Does a SiamMAE checkpoint use the past frame, and how precisely? A diagnostic for its learning curve (issue 25).

SiamMAE reconstructs a 95%-masked future frame from the unmasked past frame; it teaches correspondence only once
the decoder copies from the right place in the past frame. On real training batches this compares the loss with
the true past frame against: the past frame of another item (another video), a blank past frame, and the future
frame itself as the "past" (a perfect source to copy from). A decoder that ignores the past scores the same on
all four; one that uses only the past frame's overall appearance gains on the true past over blank/other but
hardly more when given the future itself; one that copies by correspondence drops far lower on the future itself.

    PYTHONPATH=$PWD python benchmarks/siammae_past_use.py runs/learning/siammae_cpu/seed0/run
"""
from __future__ import annotations

import argparse
import os

import torch

from vidssl.config import load_config
from vidssl.engine.trainer import Runtime, build_data
from vidssl.methods import build_method

SOURCES = ("true past", "other video's past", "blank past", "future itself")


@torch.no_grad()
def losses(method, batch: dict, seed: int) -> list[float]:
    b = method.device_augment(batch, torch.Generator().manual_seed(seed))
    pasts = (b["past"], b["past"].roll(1, 0), torch.full_like(b["past"], float(b["future"].mean())), b["future"])
    return [method({**b, "past": p})["loss"].item() for p in pasts]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a siammae training run folder (config.yaml + checkpoint.pt)")
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--data-root", help="override data.root (e.g. benchmarks/learning/train_videos.txt)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_config(os.path.join(args.run, "config.yaml"), [f"data.root={args.data_root}"] if args.data_root else [])
    if cfg.method["name"] != "siammae":
        raise ValueError(f"{args.run}: a {cfg.method['name']} run, not siammae")
    torch.manual_seed(cfg.seed)  # the run's own initialisation, as the trainer builds it
    init = build_method(**cfg.method).eval()
    trained = build_method(**cfg.method).eval()
    ckpt = torch.load(os.path.join(args.run, "checkpoint.pt"), weights_only=True, map_location="cpu")
    trained.load_state_dict(ckpt["model"])
    loader = iter(build_data(cfg, trained, 0, Runtime(torch.device("cpu"), None))[1])
    batches = [next(loader) for _ in range(args.batches)]
    print(f"SiamMAE reconstruction loss on {args.batches} training batches, by the frame given as the past")
    print("| weights | " + " | ".join(SOURCES) + " |\n|---|" + "---|" * len(SOURCES))
    for name, method in (("init", init), (f"step {ckpt['step']}", trained)):
        mean = torch.tensor([losses(method, b, i) for i, b in enumerate(batches)]).mean(0)
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in mean.tolist()) + " |")


if __name__ == "__main__":
    main()
