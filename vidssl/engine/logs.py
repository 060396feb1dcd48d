"""What a run writes beside its checkpoint: metrics.jsonl + TensorBoard (main process) and bad_videos.tsv, and
the running means of a method's scalar outputs between two log lines."""
from __future__ import annotations

import json
import os
import time

import torch


def _step_of(line: str) -> float:
    """The step of a metrics line; infinity for a blank or cut line (so it is dropped)."""
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:
        return float("inf")


class MetricsLog:
    """metrics.jsonl (one JSON object per logged step) and TensorBoard, on the main process only."""

    def __init__(self, out: str, resume_step: int, tensorboard: bool):
        self.path = os.path.join(out, "metrics.jsonl")
        if os.path.exists(self.path):  # drop lines a killed run wrote after its last checkpoint, or cut short
            with open(self.path) as f:
                kept = [ln for ln in f if _step_of(ln) <= resume_step]
            with open(self.path, "w") as f:
                f.writelines(kept)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(os.path.join(out, "tb"), purge_step=resume_step + 1)
            except ImportError:
                print("tensorboard is not installed; logging to metrics.jsonl only")

    def write(self, step: int, values: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class BadVideoLog:
    """bad_videos.tsv (bad_videos.rankN.tsv under torchrun): each unusable video once, with the reason."""

    def __init__(self, out: str, rank: int, world_size: int):
        self.path = os.path.join(out, "bad_videos.tsv" if world_size == 1 else f"bad_videos.rank{rank}.tsv")
        self.seen: set[str] = set()
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.seen = {ln.rstrip("\n") for ln in f}

    def add(self, lines: list[str]) -> list[str]:
        """Record the lines not seen before; returns them."""
        new = [p for p in dict.fromkeys(lines) if p not in self.seen]
        if new:
            self.seen.update(new)
            with open(self.path, "a") as f:
                f.writelines(p + "\n" for p in new)
        return new


class RunningMeans:
    """The scalar outputs of the steps since the last log line, averaged, with the samples/s over that span."""

    def __init__(self, step: int):
        self.sums: dict[str, float] = {}
        self.samples, self.since_step, self.since_time = 0, step, time.time()

    def add(self, outputs: dict, samples: int) -> None:
        for k, v in outputs.items():
            if (torch.is_tensor(v) and v.numel() == 1) or isinstance(v, float):
                self.sums[k] = self.sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
        self.samples += samples

    def pop(self, step: int) -> dict:
        """The means over steps since the last pop, and samples_per_s; starts a new span at `step`."""
        now = time.time()
        means = {k: v / max(step - self.since_step, 1) for k, v in self.sums.items()}
        means["samples_per_s"] = self.samples / max(now - self.since_time, 1e-9)
        self.sums, self.samples, self.since_step, self.since_time = {}, 0, step, now
        return means
