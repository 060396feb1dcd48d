"""MAE on single video frames (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022; official
code facebookresearch/mae models_mae.py, main_pretrain.py).

One random-resized crop of a frame (scale 0.2-1, flip; main_pretrain.py's only augmentation) is cut into p x p
patches; 75% of them, drawn per sample (models_mae.py random_masking), are removed and a timm ViT (a vidssl
backbone, "timm:vit_base_patch16_224" in the paper's recipe) encodes the visible ones plus its CLS token, with a
fixed 2D sin-cos position embedding (its CLS entry zero, not trained). A light decoder (Linear to `decoder_dim`,
mask tokens, its own fixed sin-cos positions, `decoder_depth` ViT blocks, a Linear to p*p*3 pixels) reconstructs
every patch; the loss is the mean squared error on the removed patches against the per-patch normalised pixels
(`norm_pix_loss`, on for the paper's numbers). Weights: MAE's initialisation (xavier-uniform Linear and patch
embedding, N(0, 0.02) CLS and mask tokens). Masks are drawn in `device_augment` from the trainer's generator.
Evaluation reads the backbone (timm ViT: last block's normed patch tokens; the position embedding is resampled
to other input sizes).

Deviations: the crop is bilinear (roi_align) instead of bicubic; frames come from videos, not ImageNet.

Data: one frame per item, the largest square at a random position along the long side resized to
`data.img_size` (the canvas the crop is cut from).
"""
from __future__ import annotations

import torch

from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.views import ViewRecipe, augment_views
from vidssl.methods.base import Method, check_frame_backbone, decay_groups, embedding_std, register
from vidssl.models.backbones import build_backbone
from vidssl.models.mae import (
    MaskedDecoder,
    check_mae_vit,
    check_masked_settings,
    check_min_scale,
    encode_visible,
    fix_sincos_pos_embed,
    kept_tokens,
    mae_init,
    masked_patch_loss,
    patchify,
    random_masking,
    sincos_2d,
)


def mae_view(size: int, min_scale: float, flip_p: float = 0.5, max_scale: float = 1.0) -> ViewRecipe:
    """MAE's augmentation (main_pretrain.py): RandomResizedCrop(scale=(min_scale, 1)), horizontal flip, ImageNet
    normalisation; no colour, grey, blur or solarisation."""
    return ViewRecipe(size=size, scale=(min_scale, max_scale), flip_p=flip_p, jitter_p=0.0, grayscale_p=0.0,
                      blur_p=0.0, solarize_p=0.0)


class MaskedViTMethod(Method):
    """What mae, siammae and cropmae share: a timm ViT backbone at `crop_size` with MAE's fixed sin-cos position
    embedding and initialisation, a decoder over its patch grid, MAE's loss, decay groups."""

    def __init__(self, backbone: str, backbone_kwargs: dict | None, crop_size: int, decoder_dim: int,
                 decoder_depth: int, decoder_heads: int, norm_pix_loss: bool, cross: bool,
                 decoder_ff_dim: int = 2048, decoder_dropout: float = 0.0, mask_ratio: float = 0.75):
        super().__init__()
        if not backbone.startswith("timm:"):
            raise ValueError(f"{self.name}: method.backbone must be a timm ViT with a CLS token and an absolute position "
                             f"embedding (e.g. timm:vit_small_patch16_224), not {backbone!r}")
        kwargs = {"img_size": crop_size, **(backbone_kwargs or {})}
        self.backbone = check_mae_vit(check_frame_backbone(build_backbone(backbone, **kwargs), self.name), self.name)
        self.patch = self.backbone.stride
        if crop_size % self.patch:
            raise ValueError(f"{self.name}: method.crop_size={crop_size} must be a multiple of the patch size {self.patch}")
        self.grid = crop_size // self.patch
        check_masked_settings(self.name, mask_ratio, decoder_dim, decoder_depth, decoder_heads)
        mae_init(self.backbone)
        fix_sincos_pos_embed(self.backbone)
        self.crop_size, self.norm_pix_loss = crop_size, norm_pix_loss
        self.decoder = MaskedDecoder(self.backbone.out_channels, decoder_dim, decoder_depth, decoder_heads,
                                     self.patch ** 2 * 3, sincos_2d(decoder_dim, self.grid, self.grid, cls_token=True),
                                     cross=cross, ff_dim=decoder_ff_dim, dropout=decoder_dropout)

    @property
    def tokens(self) -> int:
        return self.grid * self.grid

    def reconstruct(self, target: torch.Tensor, masks: dict, memory: torch.Tensor | None = None) -> dict:
        """Encode `target`'s visible tokens, decode (cross-attending to `memory` tokens if given), MAE's loss."""
        latent = encode_visible(self.backbone, target, masks["ids_keep"])
        pred = self.decoder(latent, masks["ids_restore"], memory)
        loss = masked_patch_loss(patchify(target, self.patch), pred, masks["mask"], self.norm_pix_loss)
        # the collapse monitor reads the CLS token of the view the encoder sees most of: with 98.5% masking a
        # small grid can leave no visible patch, and a CLS token that attends to nothing is the same for all
        seen = latent if memory is None else memory
        return {"loss": loss, "z_std": embedding_std(seen[:, 0])}

    def draw_masks(self, n: int, ratio: float, generator: torch.Generator, device) -> dict:
        draw = random_masking(n, self.tokens, ratio, generator).to(device)
        return {"ids_keep": draw.ids_keep, "ids_restore": draw.ids_restore, "mask": draw.mask}

    def param_groups(self) -> list[dict]:
        """MAE's optim_factory.add_weight_decay: no decay on 1-D parameters (biases, norms); the fixed position
        embedding is not trained."""
        return decay_groups(self)


@register("mae")
class MAE(MaskedViTMethod):
    def __init__(self, backbone: str = "timm:vit_base_patch16_224", backbone_kwargs: dict | None = None,
                 crop_size: int = 224, min_scale: float = 0.2, mask_ratio: float = 0.75, decoder_dim: int = 512,
                 decoder_depth: int = 8, decoder_heads: int = 16, norm_pix_loss: bool = True):
        check_min_scale(self.name, min_scale)
        super().__init__(backbone, backbone_kwargs, crop_size, decoder_dim, decoder_depth, decoder_heads,
                         norm_pix_loss, cross=False, mask_ratio=mask_ratio)
        self.mask_ratio = mask_ratio
        self.view = mae_view(crop_size, min_scale)
        kept_tokens(self.tokens, mask_ratio)  # a bad ratio fails here, naming it

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("frame", 1, d.img_size, "square", frame_skip=1)])

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        frames = batch["frame"][:, 0]  # (B, H, W, 3) uint8
        view = augment_views(frames, self.view, generator)
        return {**batch, "view": view, **self.draw_masks(view.shape[0], self.mask_ratio, generator, view.device)}

    def forward(self, batch: dict) -> dict:
        return self.reconstruct(batch["view"], batch)
