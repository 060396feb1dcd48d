"""The one method shape: forward(batch) -> {"loss": scalar, **logs}, plus optional hooks."""
from __future__ import annotations

import torch
import torch.nn as nn

METHODS: dict[str, type["Method"]] = {}


def register(name: str):
    """Class decorator: make a method buildable from a config by `name`."""

    def deco(cls):
        METHODS[name] = cls
        cls.name = name
        return cls

    return deco


def build_method(name: str, **kwargs) -> "Method":
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))}")
    return METHODS[name](**kwargs)


class Method(nn.Module):
    """A self-supervised method: owns its backbone and heads, and says how its batches are augmented on the
    training device.

    Subclasses implement `forward(batch) -> {"loss": tensor, **logs}`; `batch["clip"]` arrives as uint8
    (B, T, H, W, 3) on the device and `device_augment` turns it into what `forward` reads. `after_step` runs
    after each optimiser step (momentum encoders and the like). `backbone` is what evaluation and feature
    extraction use.
    """

    backbone: nn.Module

    def device_augment(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        return batch

    def after_step(self, step: int, max_steps: int) -> None:
        pass
