"""LARS (You et al. 2017, arXiv:1708.03888) as used by SimCLR, BYOL, Barlow Twins and VICReg."""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose per-parameter step is rescaled by a trust ratio:

        d   = g + weight_decay * w
        d  *= eta * ||w|| / ||d||      (factor 1 when ||w|| == 0 or ||d|| == 0)
        mu  = momentum * mu + d        (mu starts at 0; no dampening, no Nesterov)
        w  -= lr * mu

    Groups with `lars_exclude=True` get neither weight decay (their `weight_decay` is ignored) nor the trust
    ratio, i.e. plain SGD with momentum; the official codes exclude biases and normalisation parameters
    (see `exclude_bias_and_norm`). Defaults (weight_decay=0, momentum=0.9, eta=0.001) and the update follow
    facebookresearch/barlowtwins main.py `LARS` (VICReg's main_vicreg.py is the same). Groups may carry
    extra keys; lr / weight_decay are read from the groups at each step, so torch LR schedulers work.
    """

    def __init__(self, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, eta: float = 0.001,
                 lars_exclude: bool = False):
        if lr < 0 or weight_decay < 0 or momentum < 0 or eta < 0:
            raise ValueError(f"LARS: lr, weight_decay, momentum and eta must be >= 0, got "
                             f"{lr}, {weight_decay}, {momentum}, {eta}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta, lars_exclude=lars_exclude)
        super().__init__(params, defaults)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for g in self.param_groups:
            g.setdefault("lars_exclude", False)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            exclude = g["lars_exclude"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                d = p.grad
                if not exclude:
                    if g["weight_decay"] != 0:
                        d = d.add(p, alpha=g["weight_decay"])
                    w_norm = torch.linalg.vector_norm(p)
                    d_norm = torch.linalg.vector_norm(d)
                    ratio = torch.where((w_norm > 0) & (d_norm > 0), g["eta"] * w_norm / d_norm,
                                        torch.ones_like(w_norm))  # no host sync
                    d = d.mul(ratio)
                state = self.state[p]
                mu = state.get("momentum_buffer")
                if mu is None:
                    mu = state["momentum_buffer"] = d.clone()  # = momentum * 0 + d
                else:
                    mu.mul_(g["momentum"]).add_(d)
                p.add_(mu, alpha=-g["lr"])
        return loss


def exclude_bias_and_norm(named_params: Iterable[tuple[str, nn.Parameter]]
                          ) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(regular, excluded) trainable parameters from e.g. `module.named_parameters()`: excluded are those with
    ndim == 1 (biases, BatchNorm/LayerNorm affine), as barlowtwins main.py `exclude_bias_and_norm`. Parameters
    with requires_grad=False are dropped. Put `excluded` in a group with `lars_exclude=True`."""
    regular, excluded = [], []
    for _, p in named_params:
        if p.requires_grad:
            (excluded if p.ndim == 1 else regular).append(p)
    return regular, excluded
