"""Momentum (EMA) copies of networks: BYOL's target, MoCo's key encoder, DINO's teacher."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of `module` (same weights, no gradients) to be moved by `ema_update`."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float, buffers: str = "own") -> None:
    """target <- momentum * target + (1 - momentum) * online, for every parameter in one fused call.

    `buffers` (BatchNorm statistics): "own" leaves them to the target's own forward passes in train mode (the
    official BYOL and MoCo), "copy" copies the online ones, "ema" averages them like the parameters."""
    tp, op = list(target.parameters()), list(online.parameters())
    if len(tp) != len(op):
        raise ValueError("target and online networks differ in structure")
    torch._foreach_lerp_(tp, op, 1.0 - momentum)
    if buffers == "own":
        return
    if buffers not in ("copy", "ema"):
        raise ValueError(f"buffers must be own, copy or ema, not {buffers!r}")
    for tb, ob in zip(target.buffers(), online.buffers()):
        if buffers == "ema" and tb.is_floating_point():
            tb.lerp_(ob, 1.0 - momentum)
        else:
            tb.copy_(ob)
