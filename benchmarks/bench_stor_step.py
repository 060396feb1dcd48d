"""A STOR step through the trainer vs a minimal hand-written loop of the same model on the same batch.

Both run from configs/stor_demo.yaml (plus --set overrides) on one collated batch of real video: device
augmentation (spatial-overlap boxes, base/null views, rotations), forward (online + target, four heads),
backward, gradient clipping, SGD step, EMA update. What the trainer adds (per-step schedules, NaN guard, grad
scaler, values dict) must stay within 1.10x. The device augmentation alone is timed too.

  python benchmarks/bench_stor_step.py --steps 5
  python benchmarks/bench_stor_step.py --device cuda --set trainer.batch_size=16 data.clip_len=16 \
      data.img_size=256 method.crop_size=112 method.backbone=r2plus1d_18 method.proj_hidden=4096 method.proj_dim=512
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import machine, print_table  # noqa: E402
from vidssl.config import load_config  # noqa: E402
from vidssl.engine.trainer import Trainer, build_data, step_seed, to_device  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(fn, steps: int, device: torch.device) -> float:
    fn()  # warm-up
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / steps


def hand_step(trainer: Trainer, batch: dict):
    """The same method, optimizer and batch, written out as a plain training loop."""
    method, opt, device, clip = trainer.method, trainer.optimizer, trainer.rt.device, trainer.cfg.trainer.grad_clip
    values = trainer.values(0)
    amp = trainer.rt.amp_dtype

    def step():
        b = to_device(batch, device)
        with torch.no_grad():
            b = method.device_augment(b, torch.Generator().manual_seed(0))
        with torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext():
            loss = method(b)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(method.parameters(), clip)
        opt.step()
        method.after_optimizer_step(1, values)
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--root", default="", help="videos to decode (default: the sample clips)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"out={out}", f"trainer.max_steps={args.steps + 2}", "trainer.tensorboard=false",
                     f"trainer.device={args.device}", "data.num_workers=0", *args.set]
        if args.root:
            overrides.append(f"data.root={args.root}")
        cfg = load_config(os.path.join(ROOT, "configs", "stor_demo.yaml"), overrides)
        trainer = Trainer(cfg)
        _, loader = build_data(cfg, trainer.method, 0, trainer.rt)
        batch = next(iter(loader))
        trainer.method.train()
        device = trainer.rt.device

        def trainer_step():
            trainer.step = 1
            torch.manual_seed(step_seed(cfg.seed, 1, 0))
            trainer.train_step(batch)

        def augment():
            with torch.no_grad():
                trainer.method.device_augment(to_device(batch, device), torch.Generator().manual_seed(0))

        hand = hand_step(trainer, batch)
        times = {"trainer": [], "hand": [], "augment": []}
        for _ in range(args.repeats):  # alternated, so drifts in machine speed hit both alike
            times["trainer"].append(seconds_per_step(trainer_step, args.steps, device))
            times["hand"].append(seconds_per_step(hand, args.steps, device))
            times["augment"].append(seconds_per_step(augment, args.steps, device))
        t, h, a = (min(times[k]) for k in ("trainer", "hand", "augment"))
        m = cfg.method
        print_table(f"STOR step: trainer vs hand-written loop ({machine()})",
                    ["backbone", "batch", "frames", "crop", "hand loop ms/step", "trainer ms/step", "trainer / hand",
                     "device_augment ms"],
                    [[m["backbone"], cfg.trainer.batch_size, cfg.data.clip_len, m["crop_size"], f"{h * 1e3:.1f}",
                      f"{t * 1e3:.1f}", f"{t / h:.3f}x", f"{a * 1e3:.1f}"]])


if __name__ == "__main__":
    main()
