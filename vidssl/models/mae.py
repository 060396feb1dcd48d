"""Shared pieces of the masked-modelling methods (mae, siammae, cropmae, videomae).

- `patchify` / `unpatchify`: images (N, 3, H, W) <-> patch rows (N, L, p*p*3) in MAE's order (facebookresearch/mae
  models_mae.py: patches row-major, each patch's pixels row-major with the channel last); `patchify_video` cuts
  (N, 3, T, H, W) into (N, t*h*w, tubelet*p*p*3) tubes in VideoMAE's order ('b c (t p0) (h p1) (w p2) ->
  b (t h w) (p0 p1 p2 c)', MCG-NJU/VideoMAE engine_for_pretraining.py).
- `random_masking`: MAE's per-sample shuffle (argsort of uniform noise; keep int(L * (1 - ratio)) tokens);
  `tube_masking`: VideoMAE's TubeMaskingGenerator (int(ratio * h*w) patches masked per frame, the same spatial
  mask for every temporal slot). Both draw from an explicit CPU `torch.Generator` (the one the trainer passes to
  `device_augment`), never from the global RNG, so resumed runs draw the same masks.
- `sincos_1d` / `sincos_2d` (MAE util/pos_embed.py; the first half of the channels encodes the column, the second
  the row, as MAE's meshgrid puts w first), `sincos_3d` (MAE's 1D parts concatenated for time, column and row),
  `sinusoid_table` (VideoMAE's interleaved 1D table over the flat token index, what its ViTs use).
- `masked_patch_loss` (MAE forward_loss: optional per-patch normalisation, mean squared error averaged over the
  masked patches), `MaskedDecoder` (MAE's light decoder: embed, mask tokens unshuffled into place, fixed sin-cos
  positions, blocks, norm, pixel head), `CrossDecoderBlock` (the cross-attention block of the CropMAE repository's
  SiamMAE/CropMAE decoder, alexandre-eymael/CropMAE models/components/DecoderBlock.py), `encode_visible` (a
  vidssl timm ViT backbone run on the visible tokens only) and `mae_init` (MAE's initialisation).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn as nn

# --- patches --------------------------------------------------------------------------------------------------

def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, H/p * W/p, p*p*C): MAE's 'nchpwq->nhwpqc' order."""
    n, c, h, w = imgs.shape
    if h % p or w % p:
        raise ValueError(f"patchify: image size {h}x{w} is not a multiple of the patch size {p}")
    x = imgs.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, p: int, h: int, w: int, channels: int = 3) -> torch.Tensor:
    """Inverse of `patchify` for an (h, w) grid of patches: (N, h*w, p*p*C) -> (N, C, h*p, w*p)."""
    n = x.shape[0]
    if x.shape[1] != h * w or x.shape[2] != p * p * channels:
        raise ValueError(f"unpatchify: expected (N, {h * w}, {p * p * channels}), got {tuple(x.shape)}")
    x = torch.einsum("nhwpqc->nchpwq", x.reshape(n, h, w, p, p, channels))
    return x.reshape(n, channels, h * p, w * p)


def patchify_video(videos: torch.Tensor, tubelet: int, p: int) -> torch.Tensor:
    """(N, C, T, H, W) -> (N, T/tubelet * H/p * W/p, tubelet*p*p*C): tubes in (t, h, w) order, each tube's pixels
    in (time, row, column, channel) order (VideoMAE's rearrange)."""
    n, c, t, h, w = videos.shape
    if t % tubelet or h % p or w % p:
        raise ValueError(f"patchify_video: clip {t}x{h}x{w} is not a multiple of the cube {tubelet}x{p}x{p}")
    x = videos.reshape(n, c, t // tubelet, tubelet, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # n, t, h, w, p0, p1, p2, c
    return x.reshape(n, (t // tubelet) * (h // p) * (w // p), tubelet * p * p * c)


# --- masks ----------------------------------------------------------------------------------------------------

@dataclass
class MaskDraw:
    """One draw for N samples of L tokens. ids_keep (N, K) int64: visible tokens in shuffled order; ids_restore
    (N, L): unshuffles [visible, mask tokens] back to token order; mask (N, L) float: 1 = masked (MAE's)."""
    ids_keep: torch.Tensor
    ids_restore: torch.Tensor
    mask: torch.Tensor

    def to(self, device) -> "MaskDraw":
        return MaskDraw(self.ids_keep.to(device), self.ids_restore.to(device), self.mask.to(device))


def kept_tokens(length: int, ratio: float) -> int:
    """MAE's visible count int(L * (1 - ratio)) (0.95 of 196 keeps 9, 0.985 keeps 2; 0 is possible on small grids,
    where the decoder sees the CLS token and positions only, as in the official code)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {ratio}")
    return int(length * (1 - ratio))


def check_masked_settings(method: str, mask_ratio: float, decoder_dim: int, decoder_depth: int, decoder_heads: int,
                          dim_multiple: int = 4) -> None:
    """A masked-modelling recipe's numbers, checked at construction with errors naming the method.* key (instead
    of an assertion deep in timm or torch at the first step)."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"{method}: method.mask_ratio must lie in [0, 1), got {mask_ratio}")
    if decoder_depth < 0:
        raise ValueError(f"{method}: method.decoder_depth must be >= 0, got {decoder_depth}")
    if decoder_heads < 1 or decoder_dim < 1 or decoder_dim % decoder_heads:
        raise ValueError(f"{method}: method.decoder_dim={decoder_dim} must be a positive multiple of "
                         f"method.decoder_heads={decoder_heads}")
    if decoder_dim % dim_multiple:
        raise ValueError(f"{method}: method.decoder_dim={decoder_dim} must be a multiple of {dim_multiple} (its sin-cos "
                         f"position embedding)")


def check_min_scale(method: str, min_scale: float) -> None:
    if not 0.0 < min_scale <= 1.0:
        raise ValueError(f"{method}: method.min_scale must lie in (0, 1], got {min_scale}")


def random_masking(n: int, length: int, ratio: float, generator: torch.Generator | None) -> MaskDraw:
    """MAE's random_masking (models_mae.py) for N samples of `length` tokens, noise drawn (on the CPU) from
    `generator`: ascending argsort of the noise; the first int(L * (1 - ratio)) are kept."""
    keep = kept_tokens(length, ratio)
    noise = torch.rand(n, length, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(n, length)
    mask[:, :keep] = 0
    return MaskDraw(ids_shuffle[:, :keep], ids_restore, torch.gather(mask, 1, ids_restore))


def tube_masking(n: int, frames: int, per_frame: int, ratio: float, generator: torch.Generator | None) -> MaskDraw:
    """VideoMAE's TubeMaskingGenerator (masking_generator.py) for N clips of `frames` temporal slots x `per_frame`
    patches: int(ratio * per_frame) patches masked per slot, the same positions in every slot. Token order is
    (t, h, w); ids_keep lists the visible tokens in ascending order (as VideoMAE's x[~mask])."""
    masked = int(ratio * per_frame)
    if not 0 <= masked < per_frame:
        raise ValueError(f"tube mask ratio {ratio} leaves no visible patch of {per_frame}")
    order = torch.argsort(torch.rand(n, per_frame, generator=generator), dim=1)
    spatial = torch.zeros(n, per_frame)
    spatial.scatter_(1, order[:, :masked], 1.0)  # a uniformly random subset of `masked` positions
    mask = spatial.repeat(1, frames)
    ids_sorted = torch.argsort(mask, dim=1, stable=True)  # visible (0) first, each group in token order
    ids_restore = torch.argsort(ids_sorted, dim=1)
    keep = frames * (per_frame - masked)
    return MaskDraw(ids_sorted[:, :keep], ids_restore, mask)


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """x (N, L, D), ids (N, K) -> (N, K, D)."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# --- positional embeddings ------------------------------------------------------------------------------------

def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """MAE's get_1d_sincos_pos_embed_from_grid in float64: (M,) positions -> (M, dim) = [sin(pos * w), cos(pos * w)]
    with w_k = 1 / 10000^(2k / dim)."""
    if dim % 2:
        raise ValueError(f"sin-cos embeddings need an even dimension, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, h: int, w: int, cls_token: bool = False) -> torch.Tensor:
    """MAE's get_2d_sincos_pos_embed for an h x w grid (row-major tokens), float64 (h*w [+1], dim): the first half
    encodes the column, the second the row (MAE's meshgrid puts w first); a zero row first with `cls_token`."""
    if dim % 4:
        raise ValueError(f"2D sin-cos embeddings need a dimension divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=emb.dtype), emb]) if cls_token else emb


def sincos_3d(dim: int, t: int, h: int, w: int) -> torch.Tensor:
    """Separable 3D sin-cos for a t x h x w grid ((t, h, w)-major tokens), float64 (t*h*w, dim): [time, column, row]
    parts; column and row get (dim // 3) rounded down to even channels each, time the rest."""
    spatial = (dim // 3) // 2 * 2  # per spatial axis
    temporal = dim - 2 * spatial
    if temporal % 2 or spatial == 0:
        raise ValueError(f"3D sin-cos embeddings need an even dimension >= 6, got {dim}")
    tt, rr, cc = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.cat([sincos_1d(temporal, tt), sincos_1d(spatial, cc), sincos_1d(spatial, rr)], dim=1)


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    """VideoMAE's get_sinusoid_encoding_table (modeling_pretrain.py), float64 (n, dim): angle(pos, j) =
    pos / 10000^(2 * (j // 2) / dim); sin on even channels, cos on odd ones (interleaved, 1D over token index)."""
    j = torch.arange(dim, dtype=torch.float64)
    angle = torch.arange(n, dtype=torch.float64)[:, None] / 10000 ** (2 * torch.div(j, 2, rounding_mode="floor") / dim)
    return torch.where(j.long() % 2 == 0, angle.sin(), angle.cos())


# --- loss -----------------------------------------------------------------------------------------------------

def normalise_patches(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE's norm_pix_loss target: each patch minus its mean over its pixels and channels, divided by
    sqrt(unbiased variance + eps)."""
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + eps) ** 0.5


def videomae_target(videos: torch.Tensor, tubelet: int, p: int, mean, std, eps: float = 1e-6) -> torch.Tensor:
    """VideoMAE's normalised target (engine_for_pretraining.py, normlize_target): the ImageNet normalisation undone
    (pixels in [0, 1]), each tube's values normalised per channel over its tubelet*p*p pixels by the mean and the
    unbiased std + eps; (N, 3, T, H, W) -> (N, L, tubelet*p*p*3) in patchify_video's order."""
    m = torch.as_tensor(mean, dtype=videos.dtype, device=videos.device).view(1, 3, 1, 1, 1)
    s = torch.as_tensor(std, dtype=videos.dtype, device=videos.device).view(1, 3, 1, 1, 1)
    tubes = patchify_video(videos * s + m, tubelet, p)
    tubes = tubes.reshape(tubes.shape[0], tubes.shape[1], -1, 3)  # (N, L, pixels, channels)
    tubes = (tubes - tubes.mean(dim=-2, keepdim=True)) / (tubes.var(dim=-2, keepdim=True).sqrt() + eps)
    return tubes.flatten(2)


def masked_patch_loss(target: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True) -> torch.Tensor:
    """MAE's forward_loss on patch rows: target, pred (N, L, P); mask (N, L), 1 = masked. Mean over the patch's
    values of the squared error, averaged over the masked patches (in float32 at least)."""
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    target = target.to(dtype)
    if norm_pix:
        target = normalise_patches(target)
    loss = (pred.to(dtype) - target).pow(2).mean(dim=-1)
    mask = mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum()


# --- modules --------------------------------------------------------------------------------------------------

def mae_init(module: nn.Module) -> None:
    """MAE's _init_weights (models_mae.py): xavier-uniform Linear weights with zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            pass  # PyTorch's own xavier init of in_proj, as the CropMAE repository (its apply() skips it too)


class CrossDecoderBlock(nn.Module):
    """The decoder block of the CropMAE repository's SiamMAE / CropMAE (models/components/DecoderBlock.py, norm_first
    False): post-norm residuals in the order cross-attention to `memory`, feed-forward (GELU), self-attention;
    LayerNorm eps 1e-6, dropout `dropout` (0.1 there) after each sublayer and inside the feed-forward. The names of
    its parameters are the reference's, so its state dict loads into this block."""

    def __init__(self, dim: int, heads: int, ff_dim: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(dim, ff_dim), nn.Linear(ff_dim, dim)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(dim, eps=1e-6) for _ in range(3))
        self.dropout, self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(4))
        self.activation = nn.GELU()

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm2(x + self.dropout2(self.multihead_attn(x, memory, memory, need_weights=False)[0]))
        x = self.norm3(x + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x))))))
        return self.norm1(x + self.dropout1(self.self_attn(x, x, x, need_weights=False)[0]))


class MaskedDecoder(nn.Module):
    """MAE's light decoder (models_mae.py forward_decoder): Linear to `dim`, mask tokens appended and unshuffled with
    ids_restore, fixed positional embedding `pos` (L [+1 with a prefix token], dim) added, blocks, LayerNorm, a
    Linear to `patch_values` per token; the prefix (CLS) token's prediction is dropped. With `cross=True` every
    block is a CrossDecoderBlock attending to the embedded `memory` tokens (SiamMAE / CropMAE), else timm's ViT
    Block (self-attention). `prefix` 0: no CLS token (VideoMAE)."""

    def __init__(self, in_dim: int, dim: int, depth: int, heads: int, patch_values: int, pos: torch.Tensor,
                 prefix: int = 1, cross: bool = False, ff_dim: int = 2048, dropout: float = 0.0,
                 mlp_ratio: float = 4.0, embed_bias: bool = True):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.prefix, self.cross = prefix, cross
        self.embed = nn.Linear(in_dim, dim, bias=embed_bias)  # VideoMAE's encoder_to_decoder has none
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos", pos.float().unsqueeze(0), persistent=False)  # deterministic: not checkpointed
        if cross:
            self.blocks = nn.ModuleList(CrossDecoderBlock(dim, heads, ff_dim, dropout) for _ in range(depth))
        else:
            norm = functools.partial(nn.LayerNorm, eps=1e-6)
            self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                        for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, patch_values)
        mae_init(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor, memory: torch.Tensor | None = None
                ) -> torch.Tensor:
        """latent (N, prefix + K, in_dim) -> predictions (N, L, patch_values) for every token."""
        x = self.embed(latent)
        n, length, p = x.shape[0], ids_restore.shape[1], self.prefix
        tokens = torch.cat([x[:, p:], self.mask_token.expand(n, length - (x.shape[1] - p), -1).to(x.dtype)], dim=1)
        x = torch.cat([x[:, :p], gather_tokens(tokens, ids_restore)], dim=1) + self.pos.to(x.dtype)
        if self.cross:
            if memory is None:
                raise ValueError("a cross-attention decoder needs the memory tokens")
            memory = self.embed(memory)
            for blk in self.blocks:
                x = blk(x, memory)
        else:
            for blk in self.blocks:
                x = blk(x)
        return self.pred(self.norm(x))[:, p:]


def check_mae_vit(backbone: nn.Module, method: str) -> nn.Module:
    """`backbone` if it is a vidssl timm ViT with a CLS token whose position embedding covers it (MAE's layout)."""
    model = getattr(backbone, "model", None)
    if not getattr(backbone, "is_vit", False) or getattr(model, "cls_token", None) is None \
            or getattr(model, "reg_token", None) is not None or getattr(model, "no_embed_class", True) \
            or getattr(model, "pos_embed", None) is None:
        raise ValueError(f"{method}: method.backbone must be a timm ViT with a CLS token and an absolute position "
                         f"embedding (e.g. timm:vit_small_patch16_224), not {backbone.spec['name']!r}")
    return backbone


def fix_sincos_pos_embed(backbone: nn.Module) -> None:
    """MAE's encoder position embedding: fixed 2D sin-cos over the backbone's patch grid, zero for the CLS token,
    not trained (the exported encoder carries it; timm resamples it at other input sizes)."""
    model = backbone.model
    gh, gw = model.patch_embed.grid_size
    model.pos_embed.data.copy_(sincos_2d(model.pos_embed.shape[-1], gh, gw, cls_token=True).float().unsqueeze(0))
    model.pos_embed.requires_grad_(False)
    w = model.patch_embed.proj.weight.data  # MAE: patch embedding initialised like a Linear
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.normal_(model.cls_token, std=0.02)


def encode_visible(backbone: nn.Module, imgs: torch.Tensor, ids_keep: torch.Tensor | None) -> torch.Tensor:
    """MAE's forward_encoder on a vidssl timm ViT: patch embedding + position embedding (without the CLS entry),
    only the tokens `ids_keep` (all with None), the CLS token (+ its position) prepended, blocks, final norm.
    -> (N, 1 + K, C)."""
    model = backbone.model
    x = model.patch_embed(imgs)
    if x.ndim == 4:  # dynamic_img_size: NHWC
        gh, gw = x.shape[1:3]
        x = x.reshape(x.shape[0], gh * gw, x.shape[-1])
    else:
        gh, gw = model.patch_embed.grid_size
    pos = model.pos_embed
    if (gh, gw) != tuple(model.patch_embed.grid_size):
        from timm.layers import resample_abs_pos_embed
        pos = resample_abs_pos_embed(pos, new_size=(gh, gw), old_size=model.patch_embed.grid_size,
                                     num_prefix_tokens=1)
    x = x + pos[:, 1:]
    if ids_keep is not None:
        x = gather_tokens(x, ids_keep)
    cls = (model.cls_token + pos[:, :1]).expand(x.shape[0], -1, -1)
    x = model.norm_pre(torch.cat([cls, x], dim=1))
    for blk in model.blocks:
        x = blk(x)
    return model.norm(x)
