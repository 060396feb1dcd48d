"""The one method contract. A method is one file in vidssl/methods/ that subclasses `Method` and registers
itself with `@register("name")`; its YAML names it under `method.name`. The trainer, data layer and
evaluation only ever call what is below, so nothing outside the method's file knows its name.

Per step the trainer does:

    batch  = collate(items of method.data_spec(cfg.data))          # workers: decode, crop, spec.transform
    batch  = every tensor of batch moved to the device, batch["schedule"] = this step's values
    batch  = method.device_augment(batch, generator)               # no grad; generator seeded by (seed, step, rank)
    out    = method(batch)                                         # {"loss": scalar, **scalar logs}
    backward; unscale; clip; method.before_optimizer_step(step, values)
    optimizer.step(); method.after_optimizer_step(step, values)    # EMA of momentum_pairs(), prototype renorm

`step` is 0-based wherever a method sees it (schedules, hooks): the first step is step 0.
`values` = {"lr", "wd", **method.schedules(max_steps) evaluated at this step}; the trainer logs them.
Optimisation: `param_groups()` names groups with lr/wd scales, a static lr (no schedule) or LARS exclusion.
State (EMA teachers, queues, centres) lives in submodules and buffers, so checkpoints and exact resume carry it.
Evaluation and extraction read `eval_encoder()` (a vidssl.models backbone), exported next to each checkpoint
as encoder.safetensors + encoder.json, so they never need the method's code.
"""
from __future__ import annotations

import typing
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.views import ViewRecipe, augment_views
from vidssl.models.backbones import build_backbone, check_backbone_spec
from vidssl.models.ema import ema_update
from vidssl.optim.lars import exclude_bias_and_norm

METHODS: dict[str, type["Method"]] = {}


def register(name: str):
    """Class decorator: make a method buildable from a config by `name`."""

    def deco(cls):
        METHODS[name] = cls
        cls.name = name
        return cls

    return deco


def decay_groups(module: nn.Module) -> list[dict]:
    """Two parameter groups: weights, and biases + normalisation parameters without weight decay or LARS
    adaptation (the split of the official BYOL / SimCLR / Barlow Twins codes)."""
    regular, excluded = exclude_bias_and_norm(module.named_parameters())
    return [{"name": "weights", "params": regular},
            {"name": "biases_and_norms", "params": excluded, "wd_scale": 0.0, "lars_exclude": True}]


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """The collapse monitor, logged as "z_std": mean over dims of the batch std of the L2-normalised embedding
    (about 1/sqrt(D) when healthy, ~0 when collapsed; the trainer warns below 1e-4)."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


def position_code(maps: torch.Tensor) -> torch.Tensor:
    """The position-shortcut monitor, logged as "pos_code" by dense correspondence methods: for feature maps
    (B, D, H, W) of B >= 2 different images, the mean cosine between the same grid cell of different images minus
    the mean cosine between different cells of the same image. About 0 when features describe content (both
    means are set by the features' shared mean vector), up to 1 when they encode where a cell is rather than what
    it shows: zero padding lets a network whose receptive field covers the crop do that, and a position code
    solves TimeCycle's inlier objective without tracking anything (benchmarks/RESULTS.md, learning curves)."""
    f = F.normalize(maps.detach().float().flatten(2), dim=1)  # (B, D, P)
    B, P = f.shape[0], f.shape[2]
    if B < 2 or P < 2:
        raise ValueError(f"position_code needs >= 2 images of >= 2 cells, got maps of shape {tuple(maps.shape)}")
    per_cell = f.sum(0)  # (D, P): cos summed over image pairs at one cell = |sum|^2 - B, over B(B-1) ordered pairs
    same = ((per_cell * per_cell).sum(0) - B).sum() / (P * B * (B - 1))
    per_image = f.sum(2)  # (B, D): cos over cell pairs of one image = |sum|^2 - P, over P(P-1) ordered pairs
    across = ((per_image * per_image).sum(1) - P).sum() / (B * P * (P - 1))
    return same - across


def check_frame_backbone(net: nn.Module, method: str, spatial_map: bool = False) -> nn.Module:
    """`net` if a single-frame method can use it: ValueError naming `method.backbone` for a 3D video network
    (and, with `spatial_map`, for a ViT, which has no convolutional map: DenseCL, SCRL)."""
    if net.is_video or (spatial_map and getattr(net, "is_vit", False)):
        kind = "a 3D video backbone" if net.is_video else "a ViT (patch tokens, no convolutional map)"
        need = "a 2D CNN with a spatial feature map" if spatial_map else "a 2D backbone"
        raise ValueError(f"method.backbone={net.spec['name']!r} is {kind}, but {method} needs {need} "
                         f"(e.g. resnet50, resnet18{'' if spatial_map else ', timm:vit_small_patch16_224'})")
    return net


def frame_backbone(name: str, kwargs: dict | None, method: str, zero_init_residual: bool = False,
                   spatial_map: bool = False) -> nn.Module:
    """build_backbone + check_frame_backbone. `zero_init_residual` zeroes the last BN scale of every
    torchvision residual block (SimCLR resnet.py `init_zero`, torchvision's option used by the official
    MoCo v3 / SimSiam / Barlow Twins / VICReg codes)."""
    net = check_frame_backbone(build_backbone(name, **(kwargs or {})), method, spatial_map)
    if zero_init_residual:
        for m in net.modules():
            if isinstance(m, torchvision.models.resnet.Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, torchvision.models.resnet.BasicBlock):
                nn.init.zeros_(m.bn2.weight)
    return net


def check_method_kwargs(cls: type, kwargs: dict) -> None:
    """A YAML value of the wrong type (`method.temperature=abc`) named by its key, not an unrelated TypeError from
    deep inside the method: plain int / float / bool / str annotations of the constructor are checked."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - annotations this Python cannot evaluate: nothing to check against
        return
    for key, value in kwargs.items():
        hint = hints.get(key)
        ok = {float: isinstance(value, (int, float)) and not isinstance(value, bool),
              int: isinstance(value, int) and not isinstance(value, bool),
              bool: isinstance(value, bool), str: isinstance(value, str)}.get(hint, True)
        if not ok:
            raise ValueError(f"method.{key} must be {'a number' if hint is float else hint.__name__}, got {value!r}")


def build_method(name: str, **kwargs) -> "Method":
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(sorted(METHODS))}")
    check_method_kwargs(METHODS[name], kwargs)
    if isinstance(kwargs.get("backbone"), str):  # refused before anything is built, naming the config's keys
        check_backbone_spec(kwargs["backbone"], kwargs.get("backbone_kwargs") or {}, "method.backbone",
                            "method.backbone_kwargs")
    try:
        return METHODS[name](**kwargs)
    except TypeError as e:  # an unknown or missing keyword in the YAML's method section
        raise ValueError(f"method {name!r}: {e} (check the method: section of the config)") from e


class Method(nn.Module):
    """Base class: subclasses implement `data_spec` and `forward`; everything else has a default."""

    name: str
    backbone: nn.Module
    ddp_kwargs: dict = {}  # options for DistributedDataParallel (e.g. {"broadcast_buffers": False})
    ema_buffers: str = "own"  # BatchNorm statistics of momentum targets: own | copy | ema (models/ema.py)

    def data_spec(self, data_cfg) -> DataSpec:
        """What one item holds (vidssl/data/spec.py), from the run's `data:` section."""
        raise NotImplementedError

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        """Batched augmentation on the training device (no grad); draws come from `generator` only."""
        return batch

    def param_groups(self) -> list[dict]:
        """Optimizer groups: dicts with "params" and optional "name", "lr_scale", "wd_scale", "static_lr"
        (lr not scheduled), "lars_exclude". Default: one group of every trainable parameter."""
        return [{"name": "all", "params": [p for p in self.parameters() if p.requires_grad]}]

    def schedules(self, max_steps: int) -> dict[str, Callable[[int], float]]:
        """Named per-step values (0-based step -> value) beside lr and wd: EMA momentum, temperatures..."""
        return {}

    def before_optimizer_step(self, step: int, values: dict) -> None:
        """Gradients are unscaled and clipped here (e.g. freeze a last layer by zeroing its gradient)."""

    def after_optimizer_step(self, step: int, values: dict) -> None:
        """After the weights moved: every target of `momentum_pairs()` moves towards its online module with this
        step's `values["ema_momentum"]`. Overrides (prototype normalisation, ...) call super() first."""
        pairs = self.momentum_pairs()
        if pairs:
            m = values["ema_momentum"]
            for online, target in pairs:
                ema_update(target, online, m, self.ema_buffers)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) pairs whose target is an EMA of the online module (BYOL's target, MoCo's key encoder,
        DINO's teacher; solo-learn's `momentum_pairs`): the method names them and a per-step "ema_momentum"
        schedule; the base class updates them. `ema_buffers` says what happens to their BatchNorm statistics."""
        return []

    def queue_lengths(self) -> dict[str, int]:
        """{config key: rows} of the queues of past keys this method holds (MoCo, DenseCL, SwAV): the trainer refuses
        a queue longer than an epoch of the data, naming the key."""
        return {}

    def eval_encoder(self) -> nn.Module:
        """The backbone that evaluation and extraction use (a submodule of this method)."""
        return self.backbone


class FrameViewsMethod(Method):
    """Methods on single frames: one frame per item (the largest square at a random position along the long
    side, resized to `data.img_size`); on the device, one augmented view per recipe of `self.views`, each
    (B, 3, s, s), under batch["views"]."""

    views: tuple[ViewRecipe, ...]

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("frame", 1, d.img_size, "square", frame_skip=1)])

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        frames = batch["frame"][:, 0]  # (B, H, W, 3)
        return {**batch, "views": [augment_views(frames, r, generator) for r in self.views]}
