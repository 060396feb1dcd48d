"""The one training loop, for every method.

torchrun/DDP (nccl on GPU, gloo on CPU), AMP, gradient clipping, LR schedules, atomic checkpoints with exact
resume, metrics.jsonl + TensorBoard, a progress bar, and a NaN guard.

Exact resume: batches come from StepBatchSampler (a function of seed and step), the device augmentation
draws from a generator seeded by (seed, step, rank), and the global torch RNG (edge dropout) is reseeded
every step the same way. A run stopped at step k and resumed is therefore the same run.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from vidssl.config import TrainConfig, to_dict
from vidssl.data import ClipDataset, FrameCrop, StepBatchSampler, collate_clips, discover_sources
from vidssl.engine.checkpoint import load_checkpoint, save_checkpoint
from vidssl.engine.schedules import lr_factor
from vidssl.methods import build_method

CHECKPOINT = "checkpoint.pt"


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(spec: str, local_rank: int) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        spec = f"cuda:{local_rank}"
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"trainer.device={spec} but CUDA is not available")
        torch.cuda.set_device(device)
    return device


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"trainer.amp must be auto, bf16, fp16 or off, not {amp!r}")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def build_optimizer(params, cfg) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}: adam, adamw or sgd")


def build_dataset(cfg: TrainConfig) -> ClipDataset:
    d = cfg.data
    if d.root:
        sources = discover_sources(d.root)
    else:
        from vidssl.data.sample_videos import sample_videos
        sources = sample_videos()
    crop = FrameCrop(d.img_size, tuple(d.crop_scale) if d.crop_scale else None, tuple(d.crop_ratio))
    return ClipDataset(sources, d.clip_len, d.frame_rate, d.frame_skip, d.clips_per_video, crop, d.backend,
                       d.folder_fps)


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**62)


class MetricsLog:
    """metrics.jsonl (one JSON object per logged step) and TensorBoard, on the main process only."""

    def __init__(self, out: str, resume_step: int, tensorboard: bool):
        self.path = os.path.join(out, "metrics.jsonl")
        if os.path.exists(self.path):  # drop lines a killed run wrote after its last checkpoint
            with open(self.path) as f:
                kept = [ln for ln in f if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
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


def train(cfg: TrainConfig) -> dict:
    """Train `cfg.method` on `cfg.data`; returns a summary (steps, last loss, checkpoint path)."""
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    want_cuda = cfg.trainer.device.startswith("cuda") or (cfg.trainer.device == "auto" and torch.cuda.is_available())
    info = init_distributed("cuda" if want_cuda else "cpu")
    device = pick_device(cfg.trainer.device, info.local_rank)
    out = cfg.out
    ckpt_path = os.path.join(out, CHECKPOINT)
    os.makedirs(out, exist_ok=True)

    checkpoint = None
    if os.path.exists(ckpt_path):
        if cfg.trainer.resume:
            checkpoint = load_checkpoint(ckpt_path)
        elif not cfg.trainer.overwrite:
            raise FileExistsError(f"{ckpt_path} exists; pass trainer.resume=true to continue it, "
                                  f"trainer.overwrite=true to start over, or choose another out=")
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    method = build_method(**cfg.method).to(device)
    optimizer = build_optimizer(method.parameters(), cfg.optim)
    s = cfg.schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, cfg.trainer.max_steps, s.name, s.warmup_steps, s.milestones, s.gamma, s.min_lr_ratio))
    amp_dtype = autocast_dtype(cfg.trainer.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    start_step = 0
    if checkpoint is not None:
        method.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_step = checkpoint["step"]
    model = method
    if info.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None)

    def save(step: int) -> None:
        if info.main:
            save_checkpoint({"step": step, "model": method.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                             "config": to_dict(cfg), "world_size": info.world_size}, ckpt_path)

    dataset = build_dataset(cfg)
    sampler = StepBatchSampler(len(dataset), cfg.trainer.batch_size, cfg.trainer.max_steps, cfg.seed, start_step,
                               info.rank, info.world_size)
    workers = cfg.data.num_workers
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                         collate_fn=collate_clips, pin_memory=device.type == "cuda",
                                         prefetch_factor=4 if workers else None, persistent_workers=False)
    log = MetricsLog(out, start_step, cfg.trainer.tensorboard) if info.main else None
    bad_path = os.path.join(out, "bad_videos.tsv" if info.world_size == 1 else f"bad_videos.rank{info.rank}.tsv")
    bad_seen = set()
    if os.path.exists(bad_path):
        with open(bad_path) as f:
            bad_seen = {ln.rstrip("\n") for ln in f}
    if info.main:
        with open(os.path.join(out, "config.yaml"), "w") as f:
            yaml.safe_dump(to_dict(cfg), f, sort_keys=False)
        print(f"training {cfg.method.get('name')} on {len(dataset.sources)} videos, {device}, "
              f"{info.world_size} process(es), steps {start_step}->{cfg.trainer.max_steps}, out={out}")

    method.train()
    bar = tqdm(total=cfg.trainer.max_steps, initial=start_step, disable=not info.main, unit="step",
               dynamic_ncols=True)
    step, last, t_log, clips = start_step, {}, time.time(), 0
    sums: dict[str, float] = {}  # scalar outputs summed since the last log line (logged as means)
    logged_from = step
    for batch in loader:
        step += 1
        if batch["skipped"]:
            new = [p for p in batch["skipped"] if p not in bad_seen]
            bad_seen.update(new)
            if new:
                with open(bad_path, "a") as f:
                    f.writelines(p + "\n" for p in new)
                bar.write(f"skipped {len(new)} undecodable video(s), listed in {bad_path}: {new[0]}")
        seed = _step_seed(cfg.seed, step, info.rank)
        torch.manual_seed(seed)
        batch["clip"] = batch["clip"].to(device, non_blocking=True)
        with torch.no_grad():
            batch = method.device_augment(batch, torch.Generator().manual_seed(seed))
        ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with ctx:
            outputs = model(batch)
        loss = outputs["loss"]
        finite = torch.isfinite(loss.detach()).float()
        if info.world_size > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            raise FloatingPointError(
                f"loss is {loss.item()} at step {step} (on some rank); stopping. The last good checkpoint is "
                f"{ckpt_path}. Lower optim.lr, set trainer.grad_clip, or trainer.amp=off.")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.trainer.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(method.parameters(), cfg.trainer.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        method.after_step(step, cfg.trainer.max_steps)
        clips += batch["clip"].shape[0] * info.world_size
        bar.update(1)
        for k, v in outputs.items():
            if torch.is_tensor(v) and v.numel() == 1:
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        if step % cfg.trainer.log_every == 0 or step == cfg.trainer.max_steps or step == 1:
            now = time.time()
            last = {k: v / (step - logged_from) for k, v in sums.items()}
            last.update(lr=optimizer.param_groups[0]["lr"], clips_per_s=clips / max(now - t_log, 1e-9),
                        bad_videos=len(bad_seen))
            t_log, clips, sums, logged_from = now, 0, {}, step
            if log is not None:
                log.write(step, last)
                bar.set_postfix(loss=f"{last['loss']:.4f}", clips_s=f"{last['clips_per_s']:.2f}")
        if step % cfg.trainer.ckpt_every == 0 and step != cfg.trainer.max_steps:
            save(step)
    bar.close()
    save(step)
    if log is not None:
        log.close()
        print(f"done: step {step}, loss {last.get('loss', float('nan')):.4f}, checkpoint {ckpt_path}")
    if info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return {"step": step, "last": last, "checkpoint": ckpt_path, "bad_videos": sorted(bad_seen)}
