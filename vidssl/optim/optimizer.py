"""Optimizer from the method's named parameter groups, and each step's lr / weight decay for every group.

The trainer sets every group's lr and weight decay itself before each step (no torch LR scheduler), from
`cfg.schedule` (the lr multiplier), `cfg.optim.weight_decay` (-> `weight_decay_end` along a cosine, DINO) and
the group's `lr_scale`, `wd_scale` and `static_lr` (SimSiam's fixed predictor lr). LARS groups with
`lars_exclude` get neither decay nor adaptation (biases and norms in the official codes).
"""
from __future__ import annotations

import torch

from vidssl.optim.schedules import cosine_ramp, lr_factor

GROUP_KEYS = {"params", "name", "lr_scale", "wd_scale", "static_lr", "lars_exclude"}


def build_optimizer(groups: list[dict], cfg) -> torch.optim.Optimizer:
    """`groups` from Method.param_groups(); `cfg` = the run's `optim:` section."""
    for g in groups:
        unknown = set(g) - GROUP_KEYS
        if unknown:
            raise ValueError(f"parameter group {g.get('name')!r}: unknown keys {sorted(unknown)}; valid: {sorted(GROUP_KEYS)}")
    groups = [{"name": f"group{i}", "lr_scale": 1.0, "wd_scale": 1.0, "static_lr": False, "lars_exclude": False,
               **g, "params": list(g["params"])} for i, g in enumerate(groups)]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the method has no trainable parameters")
    wd = cfg.weight_decay
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=wd)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=wd)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.name == "lars":
        from vidssl.optim.lars import LARS

        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd, eta=cfg.eta)
    raise ValueError(f"unknown optimizer {cfg.name!r}: adam, adamw, sgd or lars")


def step_values(step: int, max_steps: int, optim_cfg, schedule_cfg) -> dict[str, float]:
    """Base lr and weight decay at 0-based `step` (before group scales)."""
    s = schedule_cfg
    lr = optim_cfg.lr * lr_factor(step, max_steps, s.name, s.warmup_steps, s.milestones, s.gamma, s.min_lr_ratio)
    wd = optim_cfg.weight_decay
    if optim_cfg.weight_decay_end is not None:
        wd = cosine_ramp(step, max_steps, wd, optim_cfg.weight_decay_end)
    return {"lr": lr, "wd": wd}


def apply_step_values(optimizer: torch.optim.Optimizer, values: dict, base_lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = (base_lr if g.get("static_lr") else values["lr"]) * g.get("lr_scale", 1.0)
        g["weight_decay"] = values["wd"] * g.get("wd_scale", 1.0)
