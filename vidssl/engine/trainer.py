"""The one training loop, for every method (the contract is in vidssl/methods/base.py).

torchrun/DDP (nccl on GPU, gloo on CPU), AMP, gradient clipping, per-step lr/wd and method schedules, atomic
checkpoints with exact resume, an exported encoder beside every checkpoint, metrics.jsonl + TensorBoard, a
progress bar, and a NaN guard.

Exact resume: batches come from StepBatchSampler (a function of seed, step and world size), the device
augmentation draws from a generator seeded by (seed, step, rank), and the global torch RNG (e.g. CRW's edge
dropout) is reseeded every step the same way. A run stopped at step k and resumed is therefore the same run,
which is why resuming with another number of processes is refused.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from vidssl.config import TrainConfig, to_dict
from vidssl.data import StepBatchSampler, VideoDataset, collate, discover_sources
from vidssl.io.checkpoint import load_checkpoint, save_checkpoint
from vidssl.eval.knn import KNNMonitor
from vidssl.engine.logs import BadVideoLog, MetricsLog
from vidssl.optim.optimizer import apply_step_values, build_optimizer, step_values
from vidssl.io.atomic import remove_stale_temporaries
from vidssl.methods import Method, build_method
from vidssl.models.export import CHECKPOINT, META, WEIGHTS, encoder_meta, export_encoder
from vidssl.models.queue import FeatureQueue

COLLAPSE_STD = 1e-4  # a logged "z_std" (std of the normalised embedding over the batch) below this = collapse
FORMAT = 2  # checkpoint layout: 2 = method contract + exported encoder (1 = the CRW-only trainer)


@dataclass
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"trainer.amp must be auto, bf16, fp16 or off, not {amp!r}")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Threads, the torchrun process group (when WORLD_SIZE > 1), the device and the AMP dtype."""
    t = cfg.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    spec = t.device
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    rank, world = 0, int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if spec.startswith("cuda") else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    if spec == "cuda":
        spec = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"trainer.device={t.device} but CUDA is not available")
        torch.cuda.set_device(device)
    return Runtime(device, autocast_dtype(t.amp, device), rank, world)


def previous_run(cfg: TrainConfig, rt: Runtime) -> dict | None:
    """The checkpoint to resume from, or None for a fresh run; refuses to overwrite or mix runs silently."""
    path = os.path.join(cfg.out, CHECKPOINT)
    if cfg.trainer.overwrite and not cfg.trainer.resume:
        clear_run(cfg.out, rt)
    if not os.path.exists(path):
        return None
    if not cfg.trainer.resume:
        raise FileExistsError(f"{path} exists; pass trainer.resume=true to continue it, "
                              f"trainer.overwrite=true to start over, or choose another out=")
    ckpt = load_checkpoint(path)
    changes = check_resume_changes(ckpt.get("config", {}), to_dict(cfg), path, cfg.trainer.allow_changes)
    if changes:
        print(f"resuming {path} at step {ckpt['step']} with changed settings: "
              + "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()))
        ckpt["history"] = ckpt.get("history", []) + [
            {"step": ckpt["step"], "changed": {k: {"from": a, "to": b} for k, (a, b) in changes.items()}}]
    saved = ckpt.get("world_size", 1)
    if saved != rt.world_size:
        raise RuntimeError(
            f"{path} was trained by {saved} process(es), this run has {rt.world_size}: the batch order and the "
            f"per-rank augmentation depend on the world size, so it would silently become another run. Resume "
            f"with `torchrun --nproc_per_node {saved}` (or {saved} processes over several nodes), or start a new "
            f"run (another out=) from its encoder.")
    return ckpt


# Keys that do not change what a run computes: they may differ when it is resumed.
BOOKKEEPING = {"out", "trainer.resume", "trainer.overwrite", "trainer.stop_at", "trainer.allow_changes",
               "trainer.log_every", "trainer.ckpt_every", "trainer.tensorboard", "trainer.threads",
               "data.num_workers", "data.backend", "data.root"}


# Changed on resume without trainer.allow_changes, with a message and a record in config.yaml: training longer.
EXTENDABLE = {"trainer.max_steps"}


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v and k != "method":
            out.update(_flatten(v, f"{prefix}{k}."))
        elif k == "method" and isinstance(v, dict):
            out.update({f"method.{mk}": mv for mk, mv in v.items()})
        else:
            out[prefix + k] = v
    return out


def config_changes(old: dict, new: dict) -> dict[str, tuple]:
    """{key: (old value, new value)} of the settings that differ, bookkeeping keys and history aside."""
    a, b = _flatten({k: v for k, v in old.items() if k != "history"}), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
            if k not in BOOKKEEPING and a.get(k) != b.get(k)}


def check_resume_changes(old: dict, new: dict, path: str, allow: bool) -> dict:
    """A resumed run with other settings would silently be another run: refuse, naming each changed key,
    unless trainer.allow_changes=true (then they apply from the resumed step on and config.yaml records them).
    A longer trainer.max_steps is always accepted (said, and recorded): schedules then span the new length."""
    changes = config_changes(old, new)
    if set(changes) - EXTENDABLE and not allow:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
        raise ValueError(f"{path} was trained with other settings ({listed}). Resume with the same settings, or "
                         f"pass trainer.allow_changes=true to apply the new ones from the resumed step on "
                         f"(recorded in config.yaml)")
    return changes


def clear_run(out: str, rt: Runtime) -> None:
    """trainer.overwrite: remove what an earlier run wrote here (its files only, never the folder), so nothing
    stale (metrics, bad_videos, TensorBoard events) mixes with the new run. Each rank removes its own files."""
    own = [f"bad_videos.rank{rt.rank}.tsv"]
    if rt.main:
        own += [CHECKPOINT, WEIGHTS, META, "metrics.jsonl", "bad_videos.tsv", "config.yaml"]
        shutil.rmtree(os.path.join(out, "tb"), ignore_errors=True)
    for name in own:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, name))


def build_data(cfg: TrainConfig, method: Method, start_step: int, rt: Runtime):
    """(dataset, loader) for steps start_step..max_steps of this rank, from the method's data spec."""
    d = cfg.data
    if d.root:
        sources = discover_sources(d.root)
    else:
        from vidssl.data.sample_videos import sample_videos
        sources = sample_videos()
    dataset = VideoDataset(sources, method.data_spec(d), d.clips_per_video, d.backend, d.folder_fps)
    sampler = StepBatchSampler(len(dataset), cfg.trainer.batch_size, cfg.trainer.max_steps, cfg.seed, start_step,
                               rt.rank, rt.world_size)
    workers = d.num_workers
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                         pin_memory=rt.device.type == "cuda",
                                         prefetch_factor=4 if workers else None, persistent_workers=False)
    return dataset, loader


def check_queues(method: Method, cfg: TrainConfig, items: int) -> None:
    """A queue of past keys (MoCo, DenseCL, rhoMoCo, SwAV) longer than an epoch of the data would hold the same
    items twice, their keys acting as negatives of themselves: refused, naming the setting."""
    for name, module in method.named_modules():
        if isinstance(module, FeatureQueue) and module.size > items:
            keys = [f"method.{k}" for k, v in cfg.method.items() if "queue" in k and v == module.size]
            keys = keys or [f"the queue {name!r}"]
            raise ValueError(f"{' / '.join(keys)}={module.size} is larger than an epoch of the data ({items} items = "
                             f"videos x data.clips_per_video): the queue would hold the same items twice. Lower it "
                             f"or train on more data")


def wrap_distributed(method: Method, cfg: TrainConfig, rt: Runtime) -> torch.nn.Module:
    if rt.world_size == 1:
        return method
    if cfg.trainer.sync_bn:
        if rt.device.type != "cuda":
            raise ValueError("trainer.sync_bn needs GPUs (torch's SyncBatchNorm does not run on the CPU)")
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    return torch.nn.parallel.DistributedDataParallel(
        method, device_ids=[rt.device.index] if rt.device.type == "cuda" else None, **method.ddp_kwargs)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**62)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """One run: the method, its optimizer and scaler, and the loop. `Trainer(cfg).fit()` = `train(cfg)`."""

    def __init__(self, cfg: TrainConfig):
        self.cfg, self.rt = cfg, setup_runtime(cfg)
        os.makedirs(cfg.out, exist_ok=True)
        self.ckpt_path = os.path.join(cfg.out, CHECKPOINT)
        previous = previous_run(cfg, self.rt)
        if self.rt.main:  # what a killed save left half-written
            remove_stale_temporaries(cfg.out, [CHECKPOINT, WEIGHTS, META])
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.method = build_method(**cfg.method).to(self.rt.device)
        self.optimizer = build_optimizer(self.method.param_groups(), cfg.optim)
        self.scaler = torch.amp.GradScaler(self.rt.device.type, enabled=self.rt.amp_dtype == torch.float16)
        self.schedules = self.method.schedules(cfg.trainer.max_steps)
        self.step, self.history = 0, []  # history: settings changed at resumes (trainer.allow_changes)
        if previous is not None:
            self.history = previous.get("history", [])
            self.method.load_state_dict(previous["model"])
            self.optimizer.load_state_dict(previous["optimizer"])
            self.scaler.load_state_dict(previous["scaler"])
            self.step = previous["step"]
        self.model = wrap_distributed(self.method, cfg, self.rt)
        encoder = self.method.eval_encoder()
        names = [n for n, m in self.method.named_modules() if m is encoder and n]
        if not names or not hasattr(encoder, "spec"):
            raise ValueError(f"method {self.method.name!r}: eval_encoder() must return one of its submodules built "
                             f"by vidssl.models.build_backbone (evaluation rebuilds it from its spec)")
        self.encoder_prefix = names[0] + "."

    def values(self, step: int) -> dict[str, float]:
        """This (0-based) step's lr, wd and method schedules."""
        c = self.cfg
        return {**step_values(step, c.trainer.max_steps, c.optim, c.schedule),
                **{k: float(f(step)) for k, f in self.schedules.items()}}

    def save(self) -> None:
        """checkpoint.pt, then encoder.safetensors + encoder.json (each written atomically; main rank only)."""
        if not self.rt.main:
            return
        bad = [k for k, v in self.method.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:  # e.g. BatchNorm statistics overflowed while the loss stayed finite: keep the last good checkpoint
            raise FloatingPointError(
                f"non-finite values at step {self.step} in {len(bad)} tensor(s) ({', '.join(bad[:3])}); not saved: "
                f"{self.ckpt_path} still holds the last good step. Lower optim.lr, set trainer.grad_clip, or "
                f"trainer.amp=off.")
        encoder = self.method.eval_encoder()
        source = {"method": self.method.name, "step": self.step, "run": os.path.abspath(self.cfg.out)}
        save_checkpoint({"format": FORMAT, "step": self.step, "model": self.method.state_dict(),
                         "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                         "config": to_dict(self.cfg), "history": self.history, "world_size": self.rt.world_size,
                         "encoder": encoder_meta(encoder, source), "encoder_prefix": self.encoder_prefix},
                        self.ckpt_path)
        export_encoder(encoder, self.cfg.out, source)

    def train_step(self, batch: dict) -> dict:
        """One optimisation step on a collated batch; returns the method's outputs."""
        rt, t, step = self.rt, self.cfg.trainer, self.step  # self.step is already this step's 1-based number
        seed = step_seed(self.cfg.seed, step, rt.rank)
        torch.manual_seed(seed)
        values = self.values(step - 1)
        apply_step_values(self.optimizer, values, self.cfg.optim.lr)
        batch = to_device(batch, rt.device)
        batch["schedule"] = values
        with torch.no_grad():
            batch = self.method.device_augment(batch, torch.Generator().manual_seed(seed))
        ctx = torch.autocast(rt.device.type, dtype=rt.amp_dtype) if rt.amp_dtype else contextlib.nullcontext()
        with ctx:
            outputs = self.model(batch)
        loss = outputs["loss"]
        finite = torch.isfinite(loss.detach()).float()
        if rt.world_size > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            raise FloatingPointError(
                f"loss is {loss.item()} at step {step} (on some rank); stopping. The last good checkpoint is "
                f"{self.ckpt_path}. Lower optim.lr, set trainer.grad_clip, or trainer.amp=off.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.method.parameters(), t.grad_clip)
        self.method.before_optimizer_step(step, values)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.after_optimizer_step(step, values)
        return {**outputs, **values}

    def fit(self) -> dict:
        cfg, rt, t = self.cfg, self.rt, self.cfg.trainer
        dataset, loader = build_data(cfg, self.method, self.step, rt)
        check_queues(self.method, cfg, len(dataset))
        metrics = MetricsLog(cfg.out, self.step, t.tensorboard) if rt.main else None
        bad = BadVideoLog(cfg.out, rt.rank, rt.world_size)
        if rt.main:
            with open(os.path.join(cfg.out, "config.yaml"), "w") as f:
                described = to_dict(cfg)
                if self.history:  # settings changed at resumes, with the step they apply from
                    described["history"] = self.history
                yaml.safe_dump(described, f, sort_keys=False)
            print(f"training {self.method.name} on {len(dataset.sources)} videos, {rt.device}, {rt.world_size} "
                  f"process(es), steps {self.step}->{t.max_steps}, out={cfg.out}")
        knn = (KNNMonitor(t.knn_root, t.knn_size, t.knn_k, t.knn_temperature) if t.knn_root and rt.main else None)
        self.method.train()
        bar = tqdm(total=t.max_steps, initial=self.step, disable=not rt.main, unit="step", dynamic_ncols=True)
        last, sums, pending, samples, t_log, logged_from = {}, {}, {}, 0, time.time(), self.step
        for batch in loader:
            self.step += 1
            new = bad.add(batch["skipped"])
            if "unusable" in batch:
                bar.close()
                raise RuntimeError(f"{batch['unusable']} (all listed in {bad.path})")
            if new:
                bar.write(f"skipped {len(new)} unusable video(s), listed in {bad.path}: {new[0]}")
            outputs = self.train_step(batch)
            samples += len(batch["video"]) * rt.world_size
            bar.update(1)
            for k, v in outputs.items():  # scalar outputs summed since the last log line (logged as means)
                if (torch.is_tensor(v) and v.numel() == 1) or isinstance(v, float):
                    sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
            if knn is not None and (self.step % t.knn_every == 0 or self.step in (t.max_steps, t.stop_at)):
                pending["knn_top1"] = knn.evaluate(self.method.eval_encoder(), rt.device)
                bar.write(f"step {self.step}: k-NN top-1 {pending['knn_top1']:.4f}")
            if self.step % t.log_every == 0 or self.step == t.max_steps or self.step == 1:
                now = time.time()
                last = {k: v / (self.step - logged_from) for k, v in sums.items()}
                last.update(samples_per_s=samples / max(now - t_log, 1e-9), bad_videos=len(bad.seen), **pending)
                pending.clear()
                t_log, samples, sums, logged_from = now, 0, {}, self.step
                if last.get("z_std", 1.0) < COLLAPSE_STD and rt.main:
                    bar.write(f"warning: step {self.step}: the embedding's std over the batch is {last['z_std']:.2e} "
                              f"(< {COLLAPSE_STD:g}): the representation is collapsing to a constant")
                if metrics is not None:
                    metrics.write(self.step, last)
                    bar.set_postfix(loss=f"{last['loss']:.4f}", samples_s=f"{last['samples_per_s']:.2f}")
            if self.step == t.stop_at:  # schedules still span max_steps: resuming continues the same run
                break
            if self.step % t.ckpt_every == 0 and self.step != t.max_steps:
                self.save()
        bar.close()
        self.save()
        if metrics is not None:
            metrics.close()
            print(f"done: step {self.step}, loss {last.get('loss', float('nan')):.4f}, checkpoint {self.ckpt_path}")
        if rt.world_size > 1:
            dist.barrier()
            dist.destroy_process_group()
        return {"step": self.step, "last": last, "checkpoint": self.ckpt_path, "bad_videos": sorted(bad.seen)}


def train(cfg: TrainConfig) -> dict:
    """Train `cfg.method` on `cfg.data`; returns a summary (steps, last logged values, checkpoint path)."""
    return Trainer(cfg).fit()
