"""DenseCL on single video frames (Wang et al., "Dense Contrastive Learning for Self-Supervised Visual
Pre-Training", CVPR 2021; official code WXinlong/DenseCL openselfsup/models/densecl.py, necks.py DenseCLNeck,
configs/selfsup/densecl/densecl_imagenet_200ep.py).

MoCo v2 with a dense branch. Two views of a frame (MoCo v2's augmentation, the same recipe for both); the
query encoder is backbone -> neck, the key encoder a momentum copy (0.999, constant). The neck has two heads in
parallel: a global MLP fc-ReLU-fc (2048-2048-128) on the average-pooled last feature map, and a dense head of
1x1 convs (2048-2048-128) on the map itself (7x7 at 224 px for ResNet-50). Losses (temperature 0.2):
- global: MoCo's InfoNCE of q against its key k and a queue of 65536 past keys;
- dense: every query location's positive is the key location whose *backbone* feature is most similar
  (cosine, argmax; vidssl.losses.dense_ssl), its negatives a second queue of 65536 keys that holds, per past
  image, the average-pooled dense key projection (densecl.py enqueues `k2`, DenseCLNeck's `avgpooled_x2`);
loss = (1 - lambda) * global + lambda * dense, lambda = 0.5. The loss is not symmetrised (view 1 queries,
view 2 keys), as in the official code.

Keys come from the momentum key encoder as in the official code; lightly's DenseCL example takes them from the
online branch instead. Batch norm: the official config uses plain BN (norm_cfg=dict(type='BN'), not SyncBN)
with MoCo's shuffle BN for the key encoder; here the key batch is shuffled across processes under torchrun
(vidssl.dist.batch_shuffle, permutation drawn from the step's generator). In one process a shuffle
cannot change batch statistics, so it is skipped. The queues hold the keys of the whole global batch, so the
queue size must be a multiple of it (ValueError otherwise, as the official assert).

Optimisation (official): SGD momentum 0.9, lr 0.03 x batch / 256, weight decay 1e-4 on every parameter (one
group), cosine schedule to 0; 200 ImageNet epochs at batch 256 (8 GPUs x 32). Evaluation reads the query
backbone (densecl.py keeps `self.backbone = encoder_q[0]`). Init as the official: the neck's Linear layers
Kaiming-normal (fan_in, ReLU; mmcv kaiming_init), its 1x1 convs PyTorch's default. The official moves the key
encoder at the start of each forward; here after each optimizer step, which is the same sequence of weights.

Deviations: video frames instead of ImageNet images; the blur is kornia's Gaussian with a kernel of 10% of the
side (vidssl/data/views.py) instead of PIL's GaussianBlur(radius=sigma); flips are applied right after the crop
(they commute with the colour ops and the symmetric blur).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.data.views import mocov2_view
from vidssl.dist import shuffle_bn_forward, shuffle_seeds
from vidssl.losses.contrastive import moco_loss
from vidssl.losses.dense_ssl import densecl_dense_loss
from vidssl.methods.base import FrameViewsMethod, embedding_std, frame_backbone, register
from vidssl.models.ema import momentum_copy
from vidssl.models.heads import mlp
from vidssl.models.queue import FeatureQueue


class DenseCLNeck(nn.Module):
    """Global MLP (fc-ReLU-fc) on the pooled map and dense 1x1-conv MLP on the map (necks.py DenseCLNeck,
    num_grid=None). forward(map) -> (global (N, D), dense (N, D, h, w))."""

    def __init__(self, in_dim: int, hidden: int = 2048, out: int = 128):
        super().__init__()
        self.mlp = mlp(in_dim, hidden, out, num_layers=2, batch_norm=False)
        self.dense = nn.Sequential(nn.Conv2d(in_dim, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, out, 1))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mlp(x.mean(dim=(2, 3))), self.dense(x)


@register("densecl")
class DenseCL(FrameViewsMethod):
    ddp_kwargs = {"broadcast_buffers": False}  # queues are identical on every rank; BN statistics stay per rank

    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None, hidden: int = 2048,
                 dim: int = 128, queue_size: int = 65536, momentum: float = 0.999, temperature: float = 0.2,
                 loss_lambda: float = 0.5, crop_size: int = 224, min_scale: float = 0.2, shuffle_bn: bool = True):
        super().__init__()
        if not 0.0 <= loss_lambda <= 1.0:
            raise ValueError(f"method.loss_lambda must lie in [0, 1], got {loss_lambda}")
        if temperature <= 0:
            raise ValueError(f"method.temperature must be > 0, got {temperature}")
        self.backbone = frame_backbone(backbone, backbone_kwargs, "densecl", spatial_map=True)
        self.neck = DenseCLNeck(self.backbone.out_channels, hidden, dim)
        self.key_backbone = momentum_copy(self.backbone)
        self.key_neck = momentum_copy(self.neck)
        self.queue = FeatureQueue(queue_size, dim)
        self.dense_queue = FeatureQueue(queue_size, dim)
        self.momentum, self.temperature, self.loss_lambda = momentum, temperature, loss_lambda
        self.shuffle_bn = shuffle_bn
        self.views = (mocov2_view(crop_size, min_scale),) * 2

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        batch = super().device_augment(batch, generator)
        return {**batch, "shuffle_seed": shuffle_seeds(len(batch["frame"]), generator)}

    @torch.no_grad()
    def keys(self, x: torch.Tensor, seed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Key encoder on the (shuffled, under torchrun) key view: (backbone map, global key, dense keys)."""
        def encode(v):
            k_map = self.key_backbone.forward_dense(v)
            return (k_map, *self.key_neck(k_map))
        return shuffle_bn_forward(encode, x, int(seed[0]), self.shuffle_bn)

    def forward(self, batch: dict) -> dict:
        im_q, im_k = batch["views"]
        q_map = self.backbone.forward_dense(im_q)
        q, q_dense = self.neck(q_map)
        k_map, k, k_dense = self.keys(im_k, batch["shuffle_seed"])
        q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
        # clones: the queues are overwritten below, before backward needs the negatives
        loss_global = moco_loss(q, k, self.queue.keys.clone(), self.temperature)
        loss_dense = densecl_dense_loss(q_dense, k_dense, q_map, k_map, self.dense_queue.keys.clone(),
                                        self.temperature)
        self.queue.push(k)
        self.dense_queue.push(F.normalize(k_dense.float().mean(dim=(2, 3)), dim=1))  # DenseCLNeck avgpooled_x2
        loss = (1 - self.loss_lambda) * loss_global + self.loss_lambda * loss_dense
        return {"loss": loss, "loss_global": loss_global.detach(), "loss_dense": loss_dense.detach(),
                "z_std": embedding_std(q)}

    def schedules(self, max_steps: int) -> dict:
        return {"ema_momentum": lambda s: self.momentum}  # constant in DenseCL (MoCo's 0.999)

    def momentum_pairs(self) -> list:
        return [(self.backbone, self.key_backbone), (self.neck, self.key_neck)]

    def queue_lengths(self) -> dict[str, int]:
        return {"method.queue_size": self.queue.size}
