"""rhoMoCo: MoCo over rho clips of one video (Feichtenhofer, Fan, Xiong, Girshick, He, "A Large-Scale Study on
Unsupervised Spatiotemporal Representation Learning", CVPR 2021; facebookresearch/SlowFast
slowfast/models/contrastive.py `ContrastiveModel` with CONTRASTIVE.TYPE "moco" and `contrastive_forward`,
configs/contrastive_ssl/MoCo_SlowR50_8x8.yaml).

rho clips are drawn independently and uniformly over the whole video (the temporal-persistence positive), each
with its own crop and colour augmentation, the same over its frames. The query encoder is a 3D backbone
(global average pool) -> MLP head, SlowFast's `MLPHead` with NUM_MLP_LAYERS 3, MLP_DIM 2048, no BN
(Linear(C, 2048)-ReLU-Linear(2048, 2048)-ReLU-Linear(2048, 128), biases kept); the key encoder is a momentum
copy of both, momentum 0.994 annealed to 1 along a cosine (MOMENTUM_ANNEALING, `momentum_anneal_cosine`).
SEQUENTIAL mode: every clip is a query in its own pass; its positives are the keys of the other rho - 1 clips
and its negatives a queue of 65536 past keys, scored at temperature 0.1. SlowFast concatenates the rho - 1
logit rows of a query and averages the cross-entropy over them, then backpropagates each query's loss: the loss
here is the same sum over queries of that mean, i.e. moco_loss summed over ordered clip pairs / (rho - 1)
(as rho_byol). The keys of all rho clips are enqueued (MOCO_MULTI_VIEW_QUEUE). Each clip's keys are computed
with shuffle BN (one permutation per clip, from the step's generator). As `contrastive_parameter_surgery`,
the weights do not move during the first queue_size / global batch steps (`queue_warmup`), while the queue fills.

Augmentation (kinetics.py with SSL_MOCOV2_AUG, transform.py `color_jitter_video_ssl`): random resized crop of
area 0.2-0.766 of the frame with aspect 3/4-4/3 (TRAIN_JITTER_SCALES_RELATIVE / _ASPECT_RELATIVE), flip,
colour jitter 0.6/0.6/0.6/0.15 with p 0.8, grayscale 0.2, Gaussian blur sigma 0.1-2 with p 0.5, normalised with
SlowFast's Kinetics mean 0.45 / std 0.225.

Deviations: vidssl's queue is shared by all ranks (keys gathered, FeatureQueue), where SlowFast keeps one local
queue per GPU, so that a run under torchrun computes what one process computes on the global batch; the queue
starts from random unit rows (SlowFast: uniform rows, not normalised); the key encoder moves after each
optimizer step instead of at the start of the next forward (the same weights at every key computation); crops
are cut from a square canvas (vidssl's data layer) where SlowFast crops the whole short-side-resized frame and
jitters colour before the crop; the momentum and lr cosines are per step (SlowFast: per fractional epoch).
Evaluation reads the query backbone.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.views import ViewRecipe, augment_clip_views
from vidssl.dist import get_world_size, shuffle_seeds
from vidssl.losses.contrastive import moco_loss
from vidssl.methods.base import Method, embedding_std, register
from vidssl.methods.mocov2 import MoCoEncoders
from vidssl.models.backbones import build_backbone
from vidssl.models.ema import momentum_copy
from vidssl.models.heads import mlp
from vidssl.models.queue import FeatureQueue
from vidssl.optim.schedules import cosine_ramp

KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)  # SlowFast DATA.MEAN / DATA.STD


def rho_moco_view(size: int = 224, scale: tuple = (0.2, 0.766)) -> ViewRecipe:
    """SlowFast's MoCo clip augmentation (configs/contrastive_ssl/MoCo_SlowR50_8x8.yaml), one draw per clip."""
    return ViewRecipe(size=size, scale=tuple(scale), ratio=(0.75, 1.3333), brightness=0.6, contrast=0.6,
                      saturation=0.6, hue=0.15, jitter_p=0.8, grayscale_p=0.2, blur_p=0.5, solarize_p=0.0,
                      mean=KINETICS_MEAN, std=KINETICS_STD)


@register("rho_moco")
class RhoMoCo(MoCoEncoders, Method):
    ddp_kwargs = {"broadcast_buffers": False}  # the queue is identical on every rank; BN statistics stay per rank

    def __init__(self, rho: int = 2, backbone: str = "slow_r50", backbone_kwargs: dict | None = None,
                 hidden: int = 2048, dim: int = 128, mlp_layers: int = 3, queue_size: int = 65536,
                 base_momentum: float = 0.994, momentum_annealing: bool = True, temperature: float = 0.1,
                 crop_size: int = 224, scale: tuple = (0.2, 0.766), shuffle_bn: bool = True,
                 queue_warmup: bool = True):
        super().__init__()
        if rho < 2:
            raise ValueError(f"rho_moco needs method.rho >= 2 clips per video, got {rho}")
        if temperature <= 0:
            raise ValueError(f"method.temperature must be > 0, got {temperature}")
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"method.base_momentum must lie in [0, 1], got {base_momentum}")
        self.backbone = build_backbone(backbone, **(backbone_kwargs or {}))
        if not self.backbone.is_video:
            raise ValueError(f"rho_moco needs a video backbone (method.backbone: slow_r50, r3d_18, r2plus1d_18, "
                             f"mc3_18, s3d), not {backbone!r}")
        self.head = mlp(self.backbone.out_channels, hidden, dim, num_layers=mlp_layers, batch_norm=False)
        self.key_backbone = momentum_copy(self.backbone)
        self.key_head = momentum_copy(self.head)
        self.queue = FeatureQueue(queue_size, dim)
        self.rho, self.temperature, self.shuffle_bn, self.queue_warmup = rho, temperature, shuffle_bn, queue_warmup
        self.base_momentum, self.momentum_annealing = base_momentum, momentum_annealing
        self.view = rho_moco_view(crop_size, scale)
        self._global_batch = None  # set by forward, read by before_optimizer_step (queue warm-up)

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("clips", d.clip_len, d.img_size, "square", frame_rate=d.frame_rate,
                                     frame_skip=d.frame_skip, count=self.rho)])

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        clips = batch["clips"]  # (B, rho, T, H, W, 3)
        views = [augment_clip_views(clips[:, i], self.view, generator).transpose(1, 2)  # (B, 3, T, s, s)
                 for i in range(self.rho)]
        # shuffle BN's permutation seed, one per sample to stay batch-first (rank 0's permutation is broadcast)
        seed = shuffle_seeds(clips.shape[0], generator)
        return {**batch, "views": views, "shuffle_seed": seed}

    def forward(self, batch: dict) -> dict:
        views, seed = batch["views"], int(batch["shuffle_seed"][0])
        keys = [self.keys(v, seed + i) for i, v in enumerate(views)]
        negatives = self.queue.keys.clone()  # the queue is overwritten below, before backward
        loss, q0 = 0.0, None
        for i, v in enumerate(views):
            q = self.query(v)
            q0 = q if q0 is None else q0
            loss = loss + sum(moco_loss(q, keys[j], negatives, self.temperature)
                              for j in range(self.rho) if j != i) / (self.rho - 1)
        for k in keys:  # every clip's keys (MOCO_MULTI_VIEW_QUEUE), in clip order
            self.queue.push(k)
        self._global_batch = q0.shape[0] * get_world_size()
        return {"loss": loss, "z_std": embedding_std(q0)}

    def param_groups(self) -> list[dict]:
        """SlowFast optimizer.py: normalisation parameters without weight decay (BN.WEIGHT_DECAY 0), every other
        parameter (conv and linear weights, head biases) with it (ZERO_WD_1D_PARAM False)."""
        norm, other = [], []
        for m in self.modules():
            for p in m.parameters(recurse=False):
                if p.requires_grad:
                    (norm if isinstance(m, nn.modules.batchnorm._NormBase) else other).append(p)
        return [{"name": "weights", "params": other}, {"name": "norms", "params": norm, "wd_scale": 0.0}]

    def schedules(self, max_steps: int) -> dict:
        if not self.momentum_annealing:
            return {"ema_momentum": lambda s: self.base_momentum}
        return {"ema_momentum": lambda s: cosine_ramp(s, max_steps, self.base_momentum, 1.0)}

    def before_optimizer_step(self, step: int, values: dict) -> None:
        # SlowFast contrastive_parameter_surgery: no update while cur_iter (0-based, as `step`) < queue_size // global
        # batch. A None gradient makes the optimizer skip the parameter.
        if self.queue_warmup and self._global_batch and step < self.queue.size // self._global_batch:
            for p in self.parameters():
                p.grad = None
