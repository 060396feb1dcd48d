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
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import yaml
from tqdm import tqdm

from vidssl.config import TrainConfig, to_dict
from vidssl.data import StepBatchSampler, VideoDataset, collate, discover_sources
from vidssl.engine.logs import BadVideoLog, MetricsLog, RunningMeans
from vidssl.engine.resume import previous_run
from vidssl.eval.knn import KNNMonitor
from vidssl.io import open_video
from vidssl.io.atomic import remove_stale_temporaries
from vidssl.io.checkpoint import save_checkpoint
from vidssl.methods import Method, build_method
from vidssl.models.export import CHECKPOINT, META, WEIGHTS, encoder_meta, export_encoder
from vidssl.optim import apply_step_values, build_optimizer, step_values

COLLAPSE_STD = 1e-4  # a logged "z_std" (std of the normalised embedding over the batch) below this = collapse
POSITION_CODE = 0.5  # a logged "pos_code" (methods/base.py position_code) above this = features encode position


def health_warnings(logged: dict) -> list[str]:
    """What a step's logged method signals say is going wrong (the monitors of README "What vidssl guarantees")."""
    out = []
    if logged.get("z_std", 1.0) < COLLAPSE_STD:
        out.append(f"the embedding's std over the batch is {logged['z_std']:.2e} (< {COLLAPSE_STD:g}): the "
                   f"representation is collapsing to a constant")
    if logged.get("pos_code", 0.0) > POSITION_CODE:
        out.append(f"pos_code {logged['pos_code']:.2f} (> {POSITION_CODE:g}): the features encode where a cell is more "
                   f"than what it shows, a padding shortcut (try method.backbone_kwargs.padding_mode=reflect, or "
                   f"crops larger than the receptive field)")
    return out


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


QUEUE_PROBE_LIMIT = 1000  # readable videos the queue check opens at most (their headers) to count unreadable ones


def check_queues(method: Method, dataset: VideoDataset) -> None:
    """A queue of past keys (MoCo, DenseCL, rhoMoCo, SwAV) longer than an epoch of the data would hold the same
    items twice, their keys acting as negatives of themselves: refused, naming the setting. Unreadable videos are
    no data: when the queue needs at most QUEUE_PROBE_LIMIT videos, videos are opened until that many read (or
    too few are left), so that a folder of mostly broken files is refused as well."""
    lengths = method.queue_lengths()
    if not lengths:
        return
    cpv, sources = dataset.clips_per_video, dataset.sources

    def refuse(key: str, rows: int, readable: int, unreadable: list[str]) -> None:
        what = (f"at most {readable * cpv} items: {len(unreadable)} of the {len(sources)} videos cannot be opened, "
                f"e.g. {unreadable[0]}" if unreadable else
                f"{readable * cpv} items = videos x data.clips_per_video")
        raise ValueError(f"{key}={rows} is larger than an epoch of the data ({what}): the queue would hold the same "
                         f"items twice. Lower it or train on more data")

    for key, rows in lengths.items():
        if rows > len(sources) * cpv:
            refuse(key, rows, len(sources), [])
    key, rows = max(lengths.items(), key=lambda kv: kv[1])
    need = -(-rows // cpv)  # readable videos the longest queue needs
    if need > QUEUE_PROBE_LIMIT:
        return
    readable, unreadable = 0, []
    for source in sources:
        if readable >= need or len(sources) - len(unreadable) < need:
            break
        try:
            with open_video(source, backend=dataset.backend, fps=dataset.folder_fps) as reader:
                ok = reader.num_frames > 0
        except Exception:  # noqa: BLE001 - any decoder error: this source holds no data
            ok = False
        if ok:
            readable += 1
        else:
            unreadable.append(source)
    if len(sources) - len(unreadable) < need:
        refuse(key, rows, len(sources) - len(unreadable), unreadable)


@dataclass
class Monitor:
    """A measurement of the encoder during training (the k-NN monitor): `measure(encoder, device)` -> logged values,
    every `every` steps and at the last one. A monitor that fails is reported and dropped; training goes on."""

    every: int
    measure: Callable[[torch.nn.Module, torch.device], dict[str, float]]


def build_monitors(cfg: TrainConfig, rt: "Runtime") -> list[Monitor]:
    t = cfg.trainer
    if not (t.knn_root and rt.main):
        return []
    knn = KNNMonitor(t.knn_root, t.knn_size, t.knn_k, t.knn_temperature)
    return [Monitor(t.knn_every, lambda encoder, device: {"knn_top1": knn.evaluate(encoder, device)})]


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
    """One run: the method, its optimizer and scaler, and the loop. `Trainer(cfg).fit()` = `train(cfg)`.

    `self.step` counts the steps done; the step being taken is step `self.step` (0-based), which is what the
    method's schedules and hooks see. Logs and checkpoints are numbered by steps done."""

    def __init__(self, cfg: TrainConfig):
        self.cfg, self.rt = cfg, setup_runtime(cfg)
        t = cfg.trainer
        if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
            raise ValueError(f"out={cfg.out} is a file; out must be a folder")
        os.makedirs(cfg.out, exist_ok=True)
        self.ckpt_path = os.path.join(cfg.out, CHECKPOINT)
        previous = previous_run(cfg.out, to_dict(cfg), t.resume, t.overwrite, t.allow_changes, self.rt.rank,
                                self.rt.world_size)
        if self.rt.main:  # what a killed save left half-written
            remove_stale_temporaries(cfg.out, [CHECKPOINT, WEIGHTS, META])
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.method = build_method(**cfg.method).to(self.rt.device)
        self.optimizer = build_optimizer(self.method.param_groups(), cfg.optim)
        self.scaler = torch.amp.GradScaler(self.rt.device.type, enabled=self.rt.amp_dtype == torch.float16)
        self.schedules = self.method.schedules(t.max_steps)
        self.step, self.history = 0, []  # history: settings changed at resumes (trainer.allow_changes)
        if previous is not None:
            self.history = previous.get("history", [])
            self.method.load_state_dict(previous["model"])
            self.optimizer.load_state_dict(previous["optimizer"])
            self.scaler.load_state_dict(previous["scaler"])
            self.step = previous["step"]
        self.saved_step = self.step
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
        state = self.method.state_dict()
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:  # e.g. BatchNorm statistics overflowed while the loss stayed finite: keep the last good checkpoint
            raise FloatingPointError(
                f"non-finite values at step {self.step} in {len(bad)} tensor(s) ({', '.join(bad[:3])}); not saved: "
                f"{self.last_good()}. Lower optim.lr, set trainer.grad_clip, or trainer.amp=off.")
        encoder = self.method.eval_encoder()
        source = {"method": self.method.name, "step": self.step, "run": os.path.abspath(self.cfg.out)}
        save_checkpoint({"format": FORMAT, "step": self.step, "model": state,
                         "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                         "config": to_dict(self.cfg), "history": self.history, "world_size": self.rt.world_size,
                         "encoder": encoder_meta(encoder, source), "encoder_prefix": self.encoder_prefix},
                        self.ckpt_path)
        export_encoder(encoder, self.cfg.out, source)
        self.saved_step = self.step

    def last_good(self) -> str:
        if os.path.exists(self.ckpt_path):
            return f"{self.ckpt_path} holds the last good step ({self.saved_step})"
        return "no checkpoint was written yet"

    def train_step(self, batch: dict) -> dict:
        """One optimisation step (step `self.step`, 0-based) on a collated batch; returns the method's outputs."""
        rt, t, step = self.rt, self.cfg.trainer, self.step
        seed = step_seed(self.cfg.seed, step + 1, rt.rank)  # seeded by the 1-based number, as since format 1
        torch.manual_seed(seed)
        values = self.values(step)
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
                f"loss is {loss.item()} at step {step + 1} (on some rank); stopping: {self.last_good()}. Lower "
                f"optim.lr, set trainer.grad_clip, or trainer.amp=off.")
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

    def write_config(self) -> None:
        described = to_dict(self.cfg)
        if self.history:  # settings changed at resumes, with the step they apply from
            described["history"] = self.history
        with open(os.path.join(self.cfg.out, "config.yaml"), "w") as f:
            yaml.safe_dump(described, f, sort_keys=False)

    def fit(self) -> dict:
        cfg, rt, t = self.cfg, self.rt, self.cfg.trainer
        if t.stop_at and self.step >= t.stop_at:
            print(f"{self.ckpt_path} is already at step {self.step} >= trainer.stop_at={t.stop_at}: nothing to train "
                  f"(raise trainer.stop_at, or drop it to run to trainer.max_steps={t.max_steps})")
            return {"step": self.step, "last": {}, "checkpoint": self.ckpt_path, "bad_videos": []}
        dataset, loader = build_data(cfg, self.method, self.step, rt)
        check_queues(self.method, dataset)
        metrics = MetricsLog(cfg.out, self.step, t.tensorboard) if rt.main else None
        bad = BadVideoLog(cfg.out, rt.rank, rt.world_size)
        monitors = build_monitors(cfg, rt)
        if rt.main:
            self.write_config()
            print(f"training {self.method.name} on {len(dataset.sources)} videos, {rt.device}, {rt.world_size} "
                  f"process(es), steps {self.step}->{t.max_steps}, out={cfg.out}")
        self.method.train()
        bar = tqdm(total=t.max_steps, initial=self.step, disable=not rt.main, unit="step", dynamic_ncols=True)
        means, measured, last = RunningMeans(self.step), {}, {}
        for batch in loader:
            new = bad.add(batch["skipped"])
            if "unusable" in batch:
                bar.close()
                raise RuntimeError(f"{batch['unusable']} (all listed in {bad.path})")
            if new:
                bar.write(f"skipped {len(new)} unusable video(s), listed in {bad.path}: {new[0]}")
            outputs = self.train_step(batch)
            self.step += 1
            means.add(outputs, len(batch["video"]) * rt.world_size)
            bar.update(1)
            final = self.step in (t.max_steps, t.stop_at)
            for monitor in list(monitors):
                if self.step % monitor.every == 0 or final:
                    try:
                        values = monitor.measure(self.method.eval_encoder(), rt.device)
                    except Exception as e:  # noqa: BLE001 - a monitor never costs training progress
                        bar.write(f"warning: step {self.step}: a monitor failed and is switched off: {e}")
                        monitors.remove(monitor)
                        continue
                    measured.update(values)
                    bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
            if self.step % t.log_every == 0 or self.step == t.max_steps or self.step == 1:
                last = {**means.pop(self.step), "bad_videos": len(bad.seen), **measured}
                measured = {}
                for warning in health_warnings(last) if rt.main else ():
                    bar.write(f"warning: step {self.step}: {warning}")
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
