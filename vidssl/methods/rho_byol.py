"""rhoBYOL: BYOL over rho clips of one video (Feichtenhofer et al., "A Large-Scale Study on Unsupervised
Spatiotemporal Representation Learning", CVPR 2021; SlowFast projects/contrastive_ssl, models/contrastive.py).

rho clips are drawn independently and uniformly over the whole video (the temporal-persistence positive),
each with its own spatial crop and colour augmentation, consistent over its frames. A 3D backbone embeds each
clip (global pooled features) and BYOL's online/target networks are trained across clips: every clip predicts
every other clip's target, summed over ordered pairs / (rho - 1), which for rho = 2 is SlowFast's
loss(p1, k2) + loss(p2, k1). The paper uses a Slow-only R-50 (8 frames at stride 8, 224 px); vidssl's default
is torchvision's r3d_18 (any registered video backbone works).

Data: `rho` clips of `data.clip_len` frames at `data.frame_rate` fps (or every `data.frame_skip`-th frame),
each the largest square at its own random position, resized to `data.img_size`; on the device each clip gets
its own random resized crop to `crop_size` (BYOL's scale range) and colour augmentation (BYOL's two recipes,
alternating), the same for all its frames.
"""
from __future__ import annotations

import torch

from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.views import augment_clip_views
from vidssl.methods.base import register
from vidssl.methods.byol import BYOL


@register("rho_byol")
class RhoBYOL(BYOL):
    def __init__(self, rho: int = 2, backbone: str = "r3d_18", crop_size: int = 112, **kwargs):
        if rho < 2:
            raise ValueError(f"rho_byol needs rho >= 2 clips per video, got {rho}")
        super().__init__(backbone=backbone, crop_size=crop_size, **kwargs)
        if not self.backbone.is_video:
            raise ValueError(f"rho_byol needs a video backbone (r3d_18, r2plus1d_18, mc3_18, s3d), not {backbone!r}")
        self.rho = rho

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("clips", d.clip_len, d.img_size, "square", frame_rate=d.frame_rate,
                                     frame_skip=d.frame_skip, count=self.rho)])

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        clips = batch["clips"]  # (B, rho, T, H, W, 3)
        views = [augment_clip_views(clips[:, i], self.views[i % len(self.views)], generator)  # (B, T, 3, s, s)
                 for i in range(self.rho)]
        return {**batch, "views": [v.transpose(1, 2) for v in views]}  # (B, 3, T, s, s) for 3D backbones
