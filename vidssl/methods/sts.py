"""Motion and appearance statistics (Wang et al., "Self-supervised Spatio-temporal Representation Learning for
Videos by Predicting Motion and Appearance Statistics", CVPR 2019, and the TPAMI 2021 extension; official code
laura-wang/video_repres_sts: train.py, datasets/ucf101_dataset.py, networks/r3d.py, sts/).

A 3D backbone regresses, from its pooled features, 14 motion statistics (which region moves most and in which
direction, per spatial partition and flow component; which frame moves most) and 13 appearance statistics
(which region changes / keeps its colours most and its dominant colour; the clip's dominant colour), computed
in the data workers by vidssl.data.statistics (its docstring gives the labels). Two linear heads; loss
MSE(motion) * motion_weight + MSE(appearance) * appearance_weight on the raw integer labels (reference:
nn.MSELoss, weights 1 and 0.1).

Data (reference: 16 consecutive frames of a 128 x 171 resized UCF101 frame, one random 112 x 112 crop for the
clip, random horizontal flip): `data.clip_len` frames at `data.frame_rate` fps / every `data.frame_skip`-th,
one random resized crop per clip (`data.crop_scale`, `data.crop_ratio`; 0.57 of the area = 112^2 / (128 x 171))
resized to `data.img_size` (a multiple of 8; 112 in the paper). Flow: precomputed by `python -m data_prep.flow`
under `data.flow_root` (read for the clip's frames and cropped with its boxes), else DIS flow computed in the
workers on the cropped clip (slow). The flip (`flip`) mirrors clip and flow before the labels; the reference
does not negate u when it mirrors the flow (a defect: the mirrored horizontal motion points the wrong way),
here it does unless `flip_negates_u: false`.

Deviations: the backbone is a vidssl video backbone (default torchvision r3d_18; the reference's R3D has one
block per stage (an R3D-10) and the CVPR paper's C3D is not available); inputs are normalised with ImageNet's
mean/std as evaluation does (the reference feeds raw 0-255 values); the labels' fixed reference defects are
listed in vidssl/data/statistics.py (`reference_labels: true` restores them).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.statistics import (
    NUM_APPEARANCE,
    NUM_MOTION,
    appearance_labels,
    clip_flow,
    flow_dir,
    motion_labels,
    partitions,
    read_clip_flow,
)
from vidssl.io import VideoDecodeError
from vidssl.methods.base import Method, embedding_std, register
from vidssl.models.backbones import build_backbone


class StatisticsTransform:
    """Worker-side labels of one sample (picklable): flow (precomputed or DIS), optional flip, the labels."""

    def __init__(self, name: str, size: int, flow_root: str = "", data_root: str = "", flip: bool = True,
                 flip_negates_u: bool = True, reference: bool = False, dis_preset: str = "medium"):
        self.name, self.size, self.flow_root, self.data_root = name, size, flow_root, data_root
        self.flip, self.flip_negates_u, self.reference, self.dis_preset = flip, flip_negates_u, reference, dis_preset

    def flow(self, sample: dict, clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.flow_root:
            return clip_flow(clip, "dis", self.dis_preset)
        where = flow_dir(sample["path"], self.data_root, self.flow_root)
        try:
            return read_clip_flow(where, sample[f"{self.name}_index"].tolist(), sample[f"{self.name}_box"].numpy(),
                                  self.size)
        except (OSError, ValueError) as e:  # the dataset skips the video and lists it in bad_videos.tsv
            raise VideoDecodeError(sample["path"], f"precomputed flow: {e}") from e

    def __call__(self, sample: dict, generator: torch.Generator) -> dict:
        clip = sample[self.name].numpy()  # (T, S, S, 3) uint8 RGB
        u, v = self.flow(sample, clip)
        if self.flip and torch.rand(1, generator=generator).item() < 0.5:
            clip, u, v = clip[:, :, ::-1], u[:, :, ::-1], v[:, :, ::-1]
            u = -u if self.flip_negates_u else u
            sample[self.name] = torch.from_numpy(np.ascontiguousarray(clip))
        sample["motion_label"] = torch.from_numpy(motion_labels(u, v, self.reference))
        sample["appearance_label"] = torch.from_numpy(appearance_labels(np.ascontiguousarray(clip), self.reference))
        return sample


@register("sts")
class STS(Method):
    def __init__(self, backbone: str = "r3d_18", backbone_kwargs: dict | None = None, motion_weight: float = 1.0,
                 appearance_weight: float = 0.1, bias_lr_scale: float = 2.0,
                 flip: bool = True, flip_negates_u: bool = True, reference_labels: bool = False,
                 dis_preset: str = "medium"):
        super().__init__()
        self.backbone = build_backbone(backbone, **(backbone_kwargs or {}))
        if not self.backbone.is_video:
            raise ValueError(f"sts needs a video backbone (r3d_18, r2plus1d_18, mc3_18, s3d), not {backbone!r}")
        if motion_weight < 0 or appearance_weight < 0:
            raise ValueError("sts: method.motion_weight and method.appearance_weight must be >= 0")
        self.motion_head = nn.Linear(self.backbone.out_channels, NUM_MOTION)
        self.appearance_head = nn.Linear(self.backbone.out_channels, NUM_APPEARANCE)
        self.motion_weight, self.appearance_weight, self.bias_lr_scale = motion_weight, appearance_weight, bias_lr_scale
        self.flip, self.flip_negates_u = flip, flip_negates_u
        self.reference_labels, self.dis_preset = reference_labels, dis_preset

    def data_spec(self, d) -> DataSpec:
        try:
            partitions(d.img_size)
        except ValueError as e:
            raise ValueError(f"sts: data.img_size: {e}") from e
        if d.clip_len < 2:
            raise ValueError(f"sts needs data.clip_len >= 2 frames (16 in the paper), got {d.clip_len}")
        if not d.flow_root:
            warnings.warn("sts: no data.flow_root: DIS optical flow is computed in the data workers for every clip "
                          "(slow; precompute it with `python -m data_prep.flow`)", stacklevel=2)
        crop_scale = d.crop_scale if d.crop_scale is not None else (1.0, 1.0)
        req = ClipRequest("clip", d.clip_len, d.img_size, "per_clip", tuple(crop_scale), tuple(d.crop_ratio),
                          frame_rate=d.frame_rate, frame_skip=d.frame_skip)
        transform = StatisticsTransform("clip", d.img_size, d.flow_root, d.root, self.flip, self.flip_negates_u,
                                        self.reference_labels, self.dis_preset)
        return DataSpec([req], transform=transform)

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        clip = batch["clip"].permute(0, 1, 4, 2, 3)  # (B, T, 3, S, S)
        return {**batch, "input": normalize(clip, IMAGENET_MEAN, IMAGENET_STD).transpose(1, 2).contiguous()}

    def forward(self, batch: dict) -> dict:
        feats = self.backbone.forward_global(batch["input"])  # (B, C)
        motion = F.mse_loss(self.motion_head(feats).float(), batch["motion_label"].float())
        appearance = F.mse_loss(self.appearance_head(feats).float(), batch["appearance_label"].float())
        loss = self.motion_weight * motion + self.appearance_weight * appearance
        return {"loss": loss, "motion_loss": motion.detach(), "appearance_loss": appearance.detach(),
                "z_std": embedding_std(feats)}

    def param_groups(self) -> list[dict]:
        """The reference's two groups (networks/r21d.py get_1x/2x_lr_params): biases at `bias_lr_scale` x lr,
        weight decay on both (its SGD applies one weight_decay to every group)."""
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        return [{"name": "weights", "params": [p for n, p in named if not n.endswith("bias")]},
                {"name": "biases", "params": [p for n, p in named if n.endswith("bias")],
                 "lr_scale": self.bias_lr_scale}]
