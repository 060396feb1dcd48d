"""Typed run configuration: dataclasses filled from a YAML file plus `key=value` command-line overrides.

Unknown keys are errors (a typo must not silently train the default). Values in overrides are parsed as YAML
(`trainer.max_steps=100`, `trainer.resume=true`, `data.crop_scale=[0.5,1.0]`, `data.frame_skip=null`).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import yaml


@dataclass
class DataConfig:
    # Read by each method's data_spec(); what a key means for a method is said in its file.
    root: str = ""  # folder (searched recursively) or list file of videos / frame folders; "" = embedded sample clips
    clip_len: int = 4
    frame_rate: Optional[float] = 8.0  # resample videos to this many fps (the reference's Kinetics setting)
    frame_skip: Optional[int] = None  # or take every k-th frame (frame folders, or videos of unknown fps)
    folder_fps: float = 0.0  # fps of frame folders, when known
    clips_per_video: int = 5
    img_size: int = 256
    crop_scale: Optional[list] = field(default_factory=lambda: [0.8, 0.95])  # null = resize the whole frame
    crop_ratio: list = field(default_factory=lambda: [0.7, 1.3])
    backend: str = "auto"
    num_workers: int = 2
    flow_root: str = ""  # precomputed optical flow (python -m data_prep.flow --out), for methods that use flow


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd | lars
    lr: float = 1e-4
    weight_decay: float = 0.0
    weight_decay_end: Optional[float] = None  # cosine weight-decay schedule to this value (DINO); null = constant
    momentum: float = 0.9  # sgd, lars
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eta: float = 0.001  # lars trust coefficient


@dataclass
class ScheduleConfig:
    name: str = "constant"  # constant | cosine | multistep
    warmup_steps: int = 0
    milestones: list = field(default_factory=list)  # multistep: steps where the lr is multiplied by gamma
    gamma: float = 0.3
    min_lr_ratio: float = 0.0  # cosine: final lr / base lr


@dataclass
class TrainerConfig:
    max_steps: int = 1000
    batch_size: int = 20  # per process
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on GPUs that have it, off on CPU) | bf16 | fp16 | off
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    log_every: int = 10
    ckpt_every: int = 500
    stop_at: int = 0  # stop (with a checkpoint) after this step, e.g. for time-limited jobs; 0 = max_steps
    resume: bool = False  # continue from out/checkpoint.pt
    overwrite: bool = False  # start over even though out/ holds a checkpoint
    allow_changes: bool = False  # resume with changed settings (recorded in config.yaml); else refused
    tensorboard: bool = True
    threads: int = 0  # torch CPU threads; 0 = torch's default
    sync_bn: bool = False  # SyncBatchNorm across processes under torchrun (GPU)
    knn_root: str = ""  # labelled image folder (train/ and val/ in ImageFolder layout): online k-NN monitor
    knn_every: int = 500  # steps between k-NN evaluations (and at the end)
    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_size: int = 224  # images resized and centre-cropped to this side


@dataclass
class TrainConfig:
    out: str = "runs/crw"
    seed: int = 0
    method: dict = field(default_factory=lambda: {"name": "crw"})  # name + the method's constructor arguments
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        node = tree
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return tree


def _build(cls, values: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(sorted(where + k for k in unknown))}; "
                         f"valid under {where or 'top level'}: {', '.join(sorted(names))}")
    kwargs = {}
    defaults = {f.name: f.default_factory() for f in dataclasses.fields(cls) if f.default_factory is not dataclasses.MISSING}
    for name, value in values.items():
        hint = hints[name]
        if hint is dict and isinstance(value, dict):  # free-form sections (method) extend their defaults
            value = {**defaults[name], **value}
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"config {where}{name} must be a section")
            kwargs[name] = _build(hint, value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, where + name)
    return cls(**kwargs)


def _coerce(value: Any, hint, key: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[x]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML reads 3e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"config {key} must be a number, got {value!r}") from None
    if hint in (int, str, bool) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ValueError(f"config {key} must be {hint.__name__}, got {value!r}")
    if hint in (list, dict) and not isinstance(value, hint):
        raise ValueError(f"config {key} must be a {hint.__name__}, got {value!r}")
    return value


# keys that must be at least 1 (checked on load, so a bad value fails before anything runs)
POSITIVE = ("trainer.max_steps", "trainer.batch_size", "trainer.log_every", "trainer.ckpt_every",
            "trainer.knn_every", "trainer.knn_k", "trainer.knn_size", "data.clip_len", "data.img_size",
            "data.clips_per_video")


def validate(cfg: "TrainConfig") -> "TrainConfig":
    for key in POSITIVE:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value < 1:
            raise ValueError(f"config {key} must be >= 1, got {value}")
    if cfg.optim.lr <= 0:
        raise ValueError(f"config optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.trainer.stop_at < 0:
        raise ValueError(f"config trainer.stop_at must be >= 0 (0 = run to trainer.max_steps), got {cfg.trainer.stop_at}")
    if cfg.trainer.device != "auto":
        try:
            torch.device(cfg.trainer.device)
        except (RuntimeError, ValueError):
            raise ValueError(f"config trainer.device must be auto, cpu, cuda or cuda:N, got {cfg.trainer.device!r}") from None
    return cfg


def load_config(path: str | None = None, overrides: list[str] | None = None) -> TrainConfig:
    tree: dict = {}
    if path:
        with open(path) as f:
            tree = yaml.safe_load(f) or {}
        if not isinstance(tree, dict):
            raise ValueError(f"{path}: a config must be a mapping")
    apply_overrides(tree, overrides or [])
    return validate(_build(TrainConfig, tree, ""))


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
