"""Learning-rate schedules as a multiplier of the base lr per step (for torch's LambdaLR)."""
from __future__ import annotations

import math


def lr_factor(step: int, max_steps: int, name: str = "constant", warmup_steps: int = 0,
              milestones=(), gamma: float = 0.3, min_lr_ratio: float = 0.0) -> float:
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    if name == "multistep":  # as torch's MultiStepLR (the CRW reference: x0.3 at its milestones)
        return gamma ** sum(step >= m for m in milestones)
    if name == "cosine":
        span = max(max_steps - warmup_steps, 1)
        progress = min(max(step - warmup_steps, 0) / span, 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {name!r}: constant, cosine or multistep")
