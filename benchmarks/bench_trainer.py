"""What the one trainer costs, per method, measured side by side in one run:

1. overhead: steps/s of `Trainer.train_step` vs a minimal hand-written loop of the same model on the same
   collated batch (device augmentation, forward, backward, optimizer step, the method's after-step hook), i.e.
   everything the trainer adds (per-step schedules, NaN guard, grad scaler, logging values). Target <= 1.10x.
2. data: steps/s of the real loop (`Trainer.fit`: decoding in DataLoader workers + device augmentation) vs
   steps/s on a pre-made batch. Target >= 0.9x ("data never starves the model").

  python benchmarks/bench_trainer.py --methods byol dino --steps 20
  python benchmarks/bench_trainer.py --methods byol --set trainer.batch_size=64 --device cuda   # on a GPU

Each method runs from configs/<name>_demo.yaml (plus --set overrides) on the sample clips, or --root videos.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import machine, print_table  # noqa: E402
from vidssl.config import load_config  # noqa: E402
from vidssl.engine.trainer import Trainer, build_data, to_device  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_s(fn, steps: int, device: torch.device) -> float:
    fn()  # warm-up
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return steps / (time.perf_counter() - t)


def hand_loop(trainer: Trainer, batch: dict):
    """The same model, optimizer and batch without the trainer: what a minimal script would do."""
    method, opt, device = trainer.method, trainer.optimizer, trainer.rt.device
    values = trainer.values(0)
    gen = torch.Generator()

    def step():
        b = to_device(batch, device)
        b["schedule"] = values
        with torch.no_grad():
            b = method.device_augment(b, gen.manual_seed(0))
        loss = method(b)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_optimizer_step(0, values)
    return step


def measure(name: str, args) -> list:
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"out={out}", f"trainer.max_steps={args.steps + 2}", "trainer.tensorboard=false",
                     f"trainer.log_every={args.steps + 2}", f"trainer.ckpt_every={10 ** 9}",
                     f"trainer.device={args.device}", f"data.num_workers={args.workers}", *args.set]
        if args.root:
            overrides.append(f"data.root={args.root}")
        cfg = load_config(os.path.join(ROOT, "configs", f"{name}_demo.yaml"), overrides)
        trainer = Trainer(cfg)
        _, loader = build_data(cfg, trainer.method, 0, trainer.rt)
        batch = next(iter(loader))
        trainer.method.train()

        def trainer_step():
            trainer.step = 0
            trainer.train_step(batch)

        hand = hand_loop(trainer, batch)
        rates = {"trainer": [], "hand": []}
        for _ in range(args.repeats):  # alternated, so drifts in machine speed hit both alike
            rates["trainer"].append(steps_per_s(trainer_step, args.steps, trainer.rt.device))
            rates["hand"].append(steps_per_s(hand, args.steps, trainer.rt.device))
        premade, hand_rate = max(rates["trainer"]), max(rates["hand"])
        fit = Trainer(load_config(os.path.join(ROOT, "configs", f"{name}_demo.yaml"),
                                  [*overrides, f"out={out}/fit"])).fit()
        bs = cfg.trainer.batch_size
        fit_rate = fit["last"]["samples_per_s"] / bs  # logged over steps 2..N: worker start-up excluded
        return [name, bs, f"{hand_rate:.2f}", f"{premade:.2f}", f"{hand_rate / premade:.3f}x", f"{fit_rate:.2f}",
                f"{fit_rate / premade:.2f}x"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["byol", "dino"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--root", default="", help="videos to decode (default: the sample clips)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides for every method")
    args = p.parse_args()
    rows = [measure(name, args) for name in args.methods]
    print_table(f"Trainer overhead and data supply ({machine()})",
                ["method", "batch", "hand loop steps/s", "trainer steps/s (pre-made batch)", "trainer cost",
                 "fit steps/s (real decoding)", "fit / pre-made"], rows)


if __name__ == "__main__":
    main()
