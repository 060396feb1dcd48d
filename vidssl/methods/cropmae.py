"""CropMAE (Eymaël, Vandeghen, Cioppa, Giancola, Ghanem, Van Droogenbroeck, "Efficient Image Pre-Training with
Siamese Cropped Masked Autoencoders", ECCV 2024; official code alexandre-eymael/CropMAE train_cropmae_k400.py,
data/util/CropMAEStrategies.py GlobalToLocal, models/SiamMAE.py, scripts/train_cropmae_k400.sh).

Two crops of one frame: a global random-resized crop of the frame (scale `global_scale`, 0.5-1 for Kinetics, 0.1-1
for ImageNet; ratio 3/4-4/3) and a local random-resized crop of that global crop (scale `local_scale` 0.3-0.6),
both resized to `crop_size`; each view is flipped on its own with probability 0.5 (the reference's transforms run
per view). SiamMAE's model on them: the global view encoded whole, the local view's visible 1.5% (98.5% masked:
int(196 x 0.015) = 2 tokens at 224 px) encoded, the cross-attention decoder (vidssl/models/mae.py
CrossDecoderBlock) reconstructs the local view from the global one; MAE's per-patch normalised pixel loss on the
local view's masked patches. Evaluation reads the backbone.

Data: one frame per item, the largest square at a random position resized to `data.img_size` (the canvas the
global crop is cut from). Deviations: bilinear crops (roi_align) with torchvision's ten-try crop rule
(vidssl.data.augment.sample_rrc_boxes) where the reference draws one box clipped to the image (its RRC).
"""
from __future__ import annotations

import torch
from torchvision.ops import roi_align

from vidssl.data.augment import sample_rrc_boxes
from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.views import augment_views
from vidssl.methods.base import register
from vidssl.methods.mae import MaskedViTMethod, mae_view
from vidssl.models.mae import encode_visible, kept_tokens


def local_crops(views: torch.Tensor, scale: tuple, ratio: tuple, flip_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """A random-resized crop of each view (N, C, S, S) at the same size, then a flip with probability `flip_p`;
    every draw on the CPU from `generator`. Bilinear interpolation commutes with the per-channel normalisation,
    so cropping normalised views equals normalising cropped ones."""
    n, _, s, _ = views.shape
    top, left, h, w = sample_rrc_boxes(s, s, n, scale, ratio, generator).unbind(1)
    flip = torch.rand(n, generator=generator) < flip_p
    rois = torch.stack([torch.arange(n), left, top, left + w, top + h], dim=1).to(views)
    out = roi_align(views, rois, output_size=s, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return torch.where(flip.to(views.device).view(n, 1, 1, 1), out.flip(-1), out)


@register("cropmae")
class CropMAE(MaskedViTMethod):
    def __init__(self, backbone: str = "timm:vit_small_patch16_224", backbone_kwargs: dict | None = None,
                 crop_size: int = 224, global_scale: list | None = None, local_scale: list | None = None,
                 mask_ratio: float = 0.985, decoder_dim: int = 256, decoder_depth: int = 4, decoder_heads: int = 8,
                 decoder_ff_dim: int = 2048, decoder_dropout: float = 0.1, norm_pix_loss: bool = True):
        super().__init__(backbone, backbone_kwargs, crop_size, decoder_dim, decoder_depth, decoder_heads,
                         norm_pix_loss, cross=True, decoder_ff_dim=decoder_ff_dim, decoder_dropout=decoder_dropout,
                         mask_ratio=mask_ratio)
        global_scale, local_scale = tuple(global_scale or (0.5, 1.0)), tuple(local_scale or (0.3, 0.6))
        for key, (lo, hi) in (("global_scale", global_scale), ("local_scale", local_scale)):
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"cropmae: method.{key} must be [lo, hi] with 0 < lo <= hi <= 1, got {[lo, hi]}")
        kept_tokens(self.tokens, mask_ratio)
        self.mask_ratio, self.local_scale = mask_ratio, local_scale
        self.view = mae_view(crop_size, global_scale[0], max_scale=global_scale[1])

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("frame", 1, d.img_size, "square", frame_skip=1)])

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        frames = batch["frame"][:, 0]  # (B, H, W, 3) uint8
        global_view = augment_views(frames, self.view, generator)
        local_view = local_crops(global_view, self.local_scale, self.view.ratio, self.view.flip_p, generator)
        masks = self.draw_masks(frames.shape[0], self.mask_ratio, generator, global_view.device)
        return {**batch, "global_view": global_view, "local_view": local_view, **masks}

    def forward(self, batch: dict) -> dict:
        memory = encode_visible(self.backbone, batch["global_view"], None)
        return self.reconstruct(batch["local_view"], batch, memory)
