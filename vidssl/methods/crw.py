"""Contrastive random walk (Jabri, Owens & Efros, NeurIPS 2020; reference ajabri/videowalk code/model.py).

Nodes are image patches (a grid of jittered patches per frame, mean-pooled encoder maps -> Linear(512, 128)
-> L2 norm) or, in dense mode, every location of the frame's feature map. The loss is `walk_loss`.

Data: one clip of `data.clip_len` frames at `data.frame_rate` fps (or every `data.frame_skip`-th frame), each
frame its own random resized crop (`data.crop_scale`, `data.crop_ratio`) to `data.img_size` px; `crop_scale:
null` resizes whole frames instead.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.data.augment import CRW_TRAIN_MEAN, CRW_TRAIN_STD, PatchGrid, WholeFrames
from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.losses.walk import walk_loss
from vidssl.methods.base import Method, register
from vidssl.models.backbones import build_backbone


def mlp_head(in_dim: int, out_dim: int, depth: int = 0) -> nn.Sequential:
    """`depth` hidden Linear+ReLU layers of width in_dim, then Linear(in_dim, out_dim) (depth 0 = linear)."""
    dims = [in_dim] * (depth + 1) + [out_dim]
    layers = []
    for a, b in zip(dims, dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers[:-1])


@register("crw")
class CRW(Method):
    def __init__(self, backbone: str = "crw_resnet18", backbone_kwargs: dict | None = None, embed_dim: int = 128,
                 head_depth: int = 0, temperature: float = 0.05, edge_dropout: float = 0.1,
                 feat_dropout: float = 0.0, skip_shortest: bool = True, order: str = "right",
                 nodes: str = "patches", patch_size: int = 64, patch_stride: int = 32,
                 patch_jitter_scale: tuple[float, float] = (0.7, 0.9), mean=CRW_TRAIN_MEAN, std=CRW_TRAIN_STD,
                 channels_last: bool = True):
        super().__init__()
        if nodes not in ("patches", "dense"):
            raise ValueError(f"nodes must be 'patches' or 'dense', not {nodes!r}")
        self.backbone = build_backbone(backbone, **(backbone_kwargs or {}))
        if channels_last:  # NHWC convolutions: faster with oneDNN on CPUs and with cuDNN on tensor cores
            self.backbone.to(memory_format=torch.channels_last)
        self.head = mlp_head(self.backbone.out_channels, embed_dim, head_depth)
        self.temperature, self.edge_dropout, self.feat_dropout = temperature, edge_dropout, feat_dropout
        self.skip_shortest, self.order, self.nodes, self.channels_last = skip_shortest, order, nodes, channels_last
        self.augment = (PatchGrid(patch_size, patch_stride, tuple(patch_jitter_scale), mean=mean, std=std)
                        if nodes == "patches" else WholeFrames(mean, std))

    def data_spec(self, d) -> DataSpec:
        shortest = 3 if self.skip_shortest else 2  # walks of length >= 2 (>= 1) need that many frames
        if d.clip_len < shortest:
            raise ValueError(f"data.clip_len={d.clip_len} is too short for crw (skip_shortest={self.skip_shortest}): "
                             f"use at least {shortest} frames")
        crop = "per_frame" if d.crop_scale else "resize"
        return DataSpec([ClipRequest("clip", d.clip_len, d.img_size, crop, tuple(d.crop_scale or (1, 1)),
                                     tuple(d.crop_ratio), d.frame_rate, d.frame_skip)])

    def device_augment(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        return {**batch, "views": self.augment(batch["clip"], generator)}

    def embed(self, views: torch.Tensor) -> torch.Tensor:
        """(B, T, P, 3, h, w) -> node embeddings q (B, C, T, N): patches are pooled to one node each; a single
        view per frame (dense mode) gives one node per feature-map location."""
        B, T, P = views.shape[:3]
        x = views.flatten(0, 2)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        maps = self.backbone(x)
        if self.feat_dropout > 0:
            maps = F.dropout(maps, self.feat_dropout, self.training)
        if P == 1:  # dense: every location is a node
            feats = maps.flatten(2).transpose(1, 2)  # (B*T, N, C)
        else:
            feats = maps.mean(dim=(-2, -1)).view(B * T, P, -1)
        q = F.normalize(self.head(feats), dim=-1)  # (B*T, N, D)
        return q.view(B, T, q.shape[1], -1).permute(0, 3, 1, 2)

    def forward(self, batch: dict) -> dict:
        q = self.embed(batch["views"])
        loss, logs = walk_loss(q.float(), self.temperature, self.edge_dropout, self.skip_shortest, self.order)
        return {"loss": loss, **logs}
