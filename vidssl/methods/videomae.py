"""VideoMAE (Tong, Song, Wang, Wang, "VideoMAE: Masked Autoencoders are Data-Efficient Learners for Self-Supervised
Video Pre-Training", NeurIPS 2022; official code MCG-NJU/VideoMAE modeling_pretrain.py, engine_for_pretraining.py,
masking_generator.py, run_mae_pretraining.py, scripts/kinetics/*/pretrain.sh).

A clip of `data.clip_len` frames (16 every 4th frame in the paper) is cut into 2 x 16 x 16 cubes; tube masking
hides 90% of the spatial positions, the same ones in every temporal slot (TubeMaskingGenerator, drawn in
`device_augment` from the trainer's generator). The joint space-time ViT (vidssl backbone "vit3d",
vidssl/models/vit3d.py) encodes the visible cubes only; a Linear without bias to `decoder_dim`, mask tokens,
VideoMAE's fixed 1D sinusoid table over the token index, `decoder_depth` ViT blocks (4), LayerNorm and a Linear to
2*16*16*3 values reconstruct the masked cubes. Loss: mean squared error on the masked cubes against VideoMAE's
target (ImageNet normalisation undone, each cube normalised per channel by its mean and unbiased std + 1e-6;
`norm_target: false` regresses the [0, 1] pixels). Evaluation reads the backbone (dense (N, C, T/2, h, w) maps,
through the sliding-clip video path).

Deviations: the encoder's position embedding is separable 3D sin-cos (vidssl/models/vit3d.py explains why); the
crop is the data layer's per-clip random resized crop (`data.crop_scale`, `data.crop_ratio`), which approximates
VideoMAE's GroupMultiScaleCrop (short-side scales 1, .875, .75, .66: areas 0.44-1).
"""
from __future__ import annotations

import torch

from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.methods.base import Method, decay_groups, embedding_std, register
from vidssl.models.backbones import build_backbone
from vidssl.models.mae import (
    MaskedDecoder,
    check_masked_settings,
    gather_tokens,
    masked_patch_loss,
    patchify_video,
    sinusoid_table,
    tube_masking,
    videomae_target,
)


@register("videomae")
class VideoMAE(Method):
    def __init__(self, backbone: str = "vit3d", backbone_kwargs: dict | None = None, crop_size: int = 224,
                 clip_len: int = 16, mask_ratio: float = 0.9, decoder_dim: int = 192, decoder_depth: int = 4,
                 decoder_heads: int = 3, norm_target: bool = True):
        super().__init__()
        if backbone != "vit3d":
            raise ValueError(f"videomae: method.backbone must be 'vit3d' (the joint space-time ViT), not {backbone!r}")
        self.backbone = build_backbone(backbone, **(backbone_kwargs or {}))
        p, k = self.backbone.stride, self.backbone.temporal_stride
        if crop_size % p or clip_len % k:
            raise ValueError(f"videomae: method.crop_size={crop_size} must be a multiple of the patch size {p} and "
                             f"method.clip_len={clip_len} of the tubelet {k}")
        self.grid = (clip_len // k, crop_size // p, crop_size // p)
        self.per_frame = self.grid[1] * self.grid[2]
        if not 0 <= int(mask_ratio * self.per_frame) < self.per_frame:
            raise ValueError(f"videomae: method.mask_ratio={mask_ratio} leaves no visible cube")
        tokens = self.grid[0] * self.per_frame
        check_masked_settings(self.name, mask_ratio, decoder_dim, decoder_depth, decoder_heads, 1)
        self.decoder = MaskedDecoder(self.backbone.out_channels, decoder_dim, decoder_depth, decoder_heads,
                                     k * p * p * 3, sinusoid_table(tokens, decoder_dim), prefix=0, embed_bias=False)
        self.crop_size, self.clip_len, self.mask_ratio, self.norm_target = crop_size, clip_len, mask_ratio, norm_target

    def data_spec(self, d) -> DataSpec:
        if d.img_size != self.crop_size or d.clip_len != self.clip_len:
            raise ValueError(f"videomae: data.img_size ({d.img_size}) and data.clip_len ({d.clip_len}) must equal "
                             f"method.crop_size ({self.crop_size}) and method.clip_len ({self.clip_len})")
        crop_scale = d.crop_scale if d.crop_scale is not None else (1.0, 1.0)
        return DataSpec([ClipRequest("clip", d.clip_len, d.img_size, "per_clip", tuple(crop_scale),
                                     tuple(d.crop_ratio), frame_rate=d.frame_rate, frame_skip=d.frame_skip)])

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        clip = normalize(batch["clip"].permute(0, 1, 4, 2, 3), IMAGENET_MEAN, IMAGENET_STD)  # (B, T, 3, S, S)
        draw = tube_masking(clip.shape[0], self.grid[0], self.per_frame, self.mask_ratio, generator).to(clip.device)
        return {**batch, "input": clip.transpose(1, 2).contiguous(), "ids_keep": draw.ids_keep,
                "ids_restore": draw.ids_restore, "mask": draw.mask}

    def forward(self, batch: dict) -> dict:
        x = batch["input"]  # (B, 3, T, S, S)
        tokens, _ = self.backbone.embed(x)
        latent = self.backbone.run_blocks(gather_tokens(tokens, batch["ids_keep"]))
        pred = self.decoder(latent, batch["ids_restore"])
        p, k = self.backbone.stride, self.backbone.temporal_stride
        with torch.no_grad():
            target = (videomae_target(x.float(), k, p, IMAGENET_MEAN, IMAGENET_STD) if self.norm_target else
                      patchify_video(x.float() * torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1, 1)
                                     + torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1, 1), k, p))
        loss = masked_patch_loss(target, pred, batch["mask"], norm_pix=False)
        return {"loss": loss, "z_std": embedding_std(latent.mean(dim=1))}

    def param_groups(self) -> list[dict]:
        """VideoMAE's optim_factory: no weight decay on 1-D parameters (biases, norms)."""
        return decay_groups(self)
