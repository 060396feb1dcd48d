"""A joint space-time ViT on tubelet patches (VideoMAE's encoder: Tong et al., NeurIPS 2022; MCG-NJU/VideoMAE
modeling_pretrain.py PretrainVisionTransformerEncoder), registered as the video backbone "vit3d".

(N, 3, T, H, W) -> Conv3d patch embedding with kernel = stride = (tubelet, p, p) -> (T/tubelet) x (H/p) x (W/p)
tokens in (t, h, w) order + a fixed separable 3D sin-cos position embedding (vidssl/models/mae.py sincos_3d,
computed for whatever grid the input gives) -> timm ViT blocks (qkv bias, LayerNorm eps 1e-6) with attention over
all tokens of the clip -> LayerNorm. `forward_dense` gives (N, C, T', h, w) (T' = ceil(T / tubelet)), the input
padded to whole cubes (time by repeating the last frame, space with zeros, as the 2D timm ViTs); `forward_global`
the mean of the normed tokens (VideoMAE's fine-tuning pools by the mean). No CLS token, as VideoMAE.

Deviation from VideoMAE: its encoder adds a 1D sinusoid table over the flat token index (`sinusoid_table`), which
only means something at the pre-training grid; the separable 3D embedding here also holds at DAVIS's 480p frames.
Its attention has a bias on q and v only; timm's block has one on k too.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.models.backbones import Backbone, register_backbone
from vidssl.models.mae import mae_init, sincos_3d


@register_backbone("vit3d")
class VideoViT(Backbone):
    is_video = True

    def __init__(self, embed_dim: int = 384, depth: int = 12, num_heads: int = 6, patch_size: int = 16,
                 tubelet: int = 2, mlp_ratio: float = 4.0):
        super().__init__()
        from timm.models.vision_transformer import Block

        if embed_dim % 2 or embed_dim < 6:
            raise ValueError(f"vit3d: embed_dim must be even and >= 6, got {embed_dim}")
        self.patch_embed = nn.Conv3d(3, embed_dim, kernel_size=(tubelet, patch_size, patch_size),
                                     stride=(tubelet, patch_size, patch_size))
        norm = functools.partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(embed_dim)
        self.out_channels, self.stride, self.temporal_stride = embed_dim, patch_size, tubelet
        mae_init(self)  # VideoMAE's _init_weights: xavier Linear, unit LayerNorm (the patch Conv3d keeps its own)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(N, 3, T, H, W) -> tokens (N, t*h*w, C) with positions added, and the grid (t, h, w)."""
        p, k = self.stride, self.temporal_stride
        pad_t, pad_h, pad_w = -x.shape[2] % k, -x.shape[3] % p, -x.shape[4] % p
        if pad_t:
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad_t, -1, -1)], dim=2)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.patch_embed(x)
        grid = tuple(x.shape[2:])
        pos = sincos_3d(self.out_channels, *grid).to(device=x.device, dtype=x.dtype)
        return x.flatten(2).transpose(1, 2) + pos, grid

    def run_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        tokens, (t, h, w) = self.embed(x)
        return self.run_blocks(tokens).transpose(1, 2).reshape(x.shape[0], -1, t, h, w)

    def forward_global(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_blocks(self.embed(x)[0]).mean(dim=1)
