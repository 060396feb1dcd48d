"""SiamMAE (Gupta, Wu, Deng, Fei-Fei, "Siamese Masked Autoencoders", NeurIPS 2023; no official code: the recipe
and model follow the paper and the CropMAE repository's reimplementation, alexandre-eymael/CropMAE models/SiamMAE.py,
data/SiamMAE_PIPE.py, data/util/video_utils.py, scripts/train_siammae_k400.sh).

Two frames of one video `gap` source frames apart, gap uniform in [min_gap, max_gap) (the reference's
np.random.randint(4, 48)), cut by one random-resized crop (scale 0.5-1, ratio 3/4-4/3) and one flip shared by
both (DoubleRandomResizedCrop, same_crop=True). One timm ViT (a vidssl backbone) encodes the past frame whole and
the future frame's visible 5% (95% masked, MAE's per-sample random masking; int(196 x 0.05) = 9 tokens at 224 px),
each with MAE's fixed sin-cos positions and CLS token. The decoder embeds both, places mask tokens in the future
frame's sequence, adds its fixed sin-cos positions (not to the past tokens), then runs blocks of cross-attention
to the embedded past tokens, feed-forward and self-attention (the reference's DecoderBlock: post-norm, 2048-wide
GELU feed-forward, dropout `decoder_dropout`, 0.1 there; the paper's figure orders them cross, self, MLP). Loss:
MAE's per-patch normalised pixel loss on the future frame's masked patches. Evaluation reads the backbone.

Data: a 2-frame clip (request "pair") at every source frame sped up by a factor in [min_gap, max_gap) among those
that fit the video (`data.frame_rate` / `data.frame_skip` are not used: the gap counts source frames as the
reference does), the largest square at a random position resized to `data.img_size` (the canvas of the crop).
Deviation: the crop is a bilinear roi_align of the square canvas (the reference crops the full frame).
"""
from __future__ import annotations

import torch

from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.views import augment_clip_views
from vidssl.methods.base import register
from vidssl.methods.mae import MaskedViTMethod, mae_view
from vidssl.models.mae import check_min_scale, encode_visible, kept_tokens


@register("siammae")
class SiamMAE(MaskedViTMethod):
    def __init__(self, backbone: str = "timm:vit_small_patch16_224", backbone_kwargs: dict | None = None,
                 crop_size: int = 224, min_scale: float = 0.5, mask_ratio: float = 0.95, min_gap: int = 4,
                 max_gap: int = 48, decoder_dim: int = 256, decoder_depth: int = 4, decoder_heads: int = 8,
                 decoder_ff_dim: int = 2048, decoder_dropout: float = 0.1, norm_pix_loss: bool = True):
        check_min_scale(self.name, min_scale)
        super().__init__(backbone, backbone_kwargs, crop_size, decoder_dim, decoder_depth, decoder_heads,
                         norm_pix_loss, cross=True, decoder_ff_dim=decoder_ff_dim, decoder_dropout=decoder_dropout,
                         mask_ratio=mask_ratio)
        if not 1 <= min_gap < max_gap:
            raise ValueError(f"siammae: need 1 <= method.min_gap < method.max_gap, got {min_gap} and {max_gap}")
        kept_tokens(self.tokens, mask_ratio)
        self.mask_ratio, self.gaps = mask_ratio, tuple(range(min_gap, max_gap))
        self.view = mae_view(crop_size, min_scale)

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("pair", 2, d.img_size, "square", frame_skip=1, rate_choices=self.gaps)])

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        pair = augment_clip_views(batch["pair"], self.view, generator)  # (B, 2, 3, S, S): one crop + flip per pair
        masks = self.draw_masks(pair.shape[0], self.mask_ratio, generator, pair.device)
        return {**batch, "past": pair[:, 0], "future": pair[:, 1], **masks}

    def forward(self, batch: dict) -> dict:
        memory = encode_visible(self.backbone, batch["past"], None)
        return self.reconstruct(batch["future"], batch, memory)
