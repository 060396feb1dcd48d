"""MoCo v2 on single video frames (Chen, Fan, Girshick, He, "Improved Baselines with Momentum Contrastive
Learning", arXiv 2003.04297; He et al. CVPR 2020 for MoCo; official code facebookresearch/moco main_moco.py with
--mlp --aug-plus --cos and moco/builder.py).

Two views of a frame with MoCo v2's augmentation (`mocov2_view`: crop 0.2-1, colour jitter 0.4/0.4/0.4/0.1 with
p 0.8, grayscale 0.2, Gaussian blur sigma 0.1-2 with p 0.5, flip). The query encoder is backbone -> MLP head
(Linear(C, C) - ReLU - Linear(C, 128), no BN: builder.py's `mlp` hack on the fc); the key encoder is a momentum
copy of both (momentum 0.999, constant; BN statistics its own). The query view is scored against its key and a
queue of 65536 past keys (vidssl.models.queue.FeatureQueue) with InfoNCE at temperature 0.2
(vidssl.losses.contrastive.moco_loss); the keys of the step are then enqueued (gathered over ranks, no
gradient, so every rank holds the same queue; the queue size must be a multiple of the global batch).

Shuffle BN (builder.py `_batch_shuffle_ddp`): the key batch is permuted across the global batch before the key
encoder and the keys are put back in order after it (vidssl.dist.batch_shuffle / batch_unshuffle), so a
key's BatchNorm statistics come from other samples than its query's. The permutation is drawn from the step's
generator (a seed drawn in `device_augment`), so resume is exact. It also runs in one process, where it
leaves batch statistics unchanged (the official code only supports DDP).

The official loss is asymmetric (view 1 queries, view 2 keys); `symmetric=True` adds the swapped term and
enqueues both views' keys, as the CIFAR demo of the official repo (colab/moco_cifar10_demo.ipynb).

Deviations: the key encoder moves after each optimizer step instead of at the start of the next forward (the
same weights at every key computation); the learning rate's cosine is per step, the official one per epoch; the
blur kernel is 10% of the side (vidssl/data/views.py) where the official code uses PIL's radius-sigma blur.
Evaluation reads the query backbone (main_lincls.py loads `encoder_q`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidssl.data.views import mocov2_view
from vidssl.dist import shuffle_bn_forward, shuffle_seeds
from vidssl.losses.contrastive import moco_loss
from vidssl.methods.base import FrameViewsMethod, embedding_std, frame_backbone, register
from vidssl.models.ema import momentum_copy
from vidssl.models.heads import mlp
from vidssl.models.queue import FeatureQueue


class MoCoEncoders:
    """MoCo's query encoder (backbone -> head) and momentum key encoder (key_backbone -> key_head, fed the batch
    shuffled across ranks when `shuffle_bn`): L2-normalised float32 embeddings. Shared by mocov2 and rho_moco."""

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone.forward_global(x)).float(), dim=1)

    @torch.no_grad()
    def keys(self, x: torch.Tensor, seed: int) -> torch.Tensor:
        """L2-normalised keys of `x` in its order; the key encoder sees the batch shuffled (shuffle BN)."""
        return shuffle_bn_forward(lambda v: F.normalize(self.key_head(self.key_backbone.forward_global(v)).float(), dim=1),
                                  x, seed, self.shuffle_bn)

    def momentum_pairs(self) -> list:
        return [(self.backbone, self.key_backbone), (self.head, self.key_head)]

    def queue_lengths(self) -> dict[str, int]:
        return {"method.queue_size": self.queue.size}


@register("mocov2")
class MoCoV2(MoCoEncoders, FrameViewsMethod):
    ddp_kwargs = {"broadcast_buffers": False}  # queues are identical on every rank; BN statistics stay per rank

    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None, mlp_head: bool = True,
                 hidden: int | None = None, dim: int = 128, queue_size: int = 65536, momentum: float = 0.999,
                 temperature: float = 0.2, crop_size: int = 224, min_scale: float = 0.2, shuffle_bn: bool = True,
                 symmetric: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"method.temperature must be > 0, got {temperature}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"method.momentum must lie in [0, 1], got {momentum}")
        self.backbone = frame_backbone(backbone, backbone_kwargs, "mocov2")
        c = self.backbone.out_channels
        self.head = mlp(c, hidden or c, dim, num_layers=2 if mlp_head else 1, batch_norm=False)
        self.key_backbone = momentum_copy(self.backbone)
        self.key_head = momentum_copy(self.head)
        self.queue = FeatureQueue(queue_size, dim)
        self.momentum, self.temperature = momentum, temperature
        self.shuffle_bn, self.symmetric = shuffle_bn, symmetric
        self.views = (mocov2_view(crop_size, min_scale),) * 2

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        batch = super().device_augment(batch, generator)
        return {**batch, "shuffle_seed": shuffle_seeds(len(batch["frame"]), generator)}

    def forward(self, batch: dict) -> dict:
        im1, im2 = batch["views"]
        seed = int(batch["shuffle_seed"][0])
        negatives = self.queue.keys.clone()  # the queue is overwritten below, before backward
        q1, k2 = self.query(im1), self.keys(im2, seed)
        loss = moco_loss(q1, k2, negatives, self.temperature)
        new_keys = k2
        if self.symmetric:
            q2, k1 = self.query(im2), self.keys(im1, seed + 1)
            loss = loss + moco_loss(q2, k1, negatives, self.temperature)
            new_keys = torch.cat([k2, k1])
        self.queue.push(new_keys)
        return {"loss": loss, "z_std": embedding_std(q1)}

    def schedules(self, max_steps: int) -> dict:
        return {"ema_momentum": lambda s: self.momentum}  # constant in MoCo (builder.py `m`)

