"""Per-step schedules: the lr multiplier (constant / cosine / multistep with linear warm-up) and the cosine
ramp that SSL methods use for EMA momentum, weight decay and temperatures (BYOL, DINO)."""
from __future__ import annotations

import math


def lr_factor(step: int, max_steps: int, name: str = "constant", warmup_steps: int = 0,
              milestones=(), gamma: float = 0.3, min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base lr at 0-based `step`."""
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


def cosine_ramp(step: int, max_steps: int, start: float, end: float, warmup_steps: int = 0,
                warmup_start: float | None = None) -> float:
    """`start` -> `end` along half a cosine over the steps after `warmup_steps` (a linear ramp from
    `warmup_start` before them). BYOL's momentum: start 0.996, end 1 (its paper, sec. 3.2); DINO's weight
    decay 0.04 -> 0.4 (main_dino.py cosine_scheduler)."""
    if step < warmup_steps:
        first = start if warmup_start is None else warmup_start
        return first + (start - first) * step / warmup_steps
    progress = min((step - warmup_steps) / max(max_steps - warmup_steps, 1), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))
