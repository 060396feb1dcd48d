"""Dense frame features for evaluation and extraction: an exported encoder (or a training checkpoint), a
backbone with local weights or random init, or the pixel baseline; frames in, L2-normalised (T, C, h, w) out."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
from vidssl.models.backbones import build_backbone, check_backbone_spec, eval_kwargs_of
from vidssl.models.dense import iter_frame_maps
from vidssl.models.export import read_encoder
from vidssl.models.published import load_published, read_weights_file


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], (N, 3, H, W) -> CIE L*a*b* (D65), L in [0, 100]."""
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                      [0.019334, 0.119193, 0.950227]], device=rgb.device, dtype=rgb.dtype)
    xyz = torch.einsum("ij,njhw->nihw", m, lin) / torch.tensor([0.950456, 1.0, 1.088754], device=rgb.device).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    L = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([L, a, b], 1)


class PixelEncoder(nn.Module):
    """Sanity baseline: CIE Lab colour averaged over 8x8 pixel cells (L centred at 50), stride 8, 3 channels.
    Its input is ImageNet-normalised RGB like every other encoder's."""

    out_channels, stride, temporal_stride, is_video = 3, 8, 1, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        lab = rgb_to_lab((x * std + mean).clamp(0, 1))
        lab = lab - torch.tensor([50.0, 0.0, 0.0], device=x.device).view(1, 3, 1, 1)
        return F.avg_pool2d(lab, 8, 8, ceil_mode=True)


def parse_device(text: str, option: str = "--device") -> torch.device:
    """auto (cuda when available) | cpu | cuda | cuda:N; anything else is an error naming the option."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"{option} must be auto, cpu, cuda or cuda:N, got {text!r}")
    return device


def load_encoder(checkpoint: str | None = None, backbone: str = "crw_resnet18", init: str = "random",
                 dense: bool = True, allow_partial: bool = False) -> tuple[nn.Module, str]:
    """(encoder in eval mode, description).

    `checkpoint`: a run folder, its encoder.json / encoder.safetensors, or a training checkpoint (read without
    running code; see vidssl/models/export.py). Otherwise `backbone` (a registered name) with `init` = random |
    pixels | weights:PATH (a local .safetensors or torch file; nothing downloads): its key layout is recognised
    (published checkpoints: CRW, VFS, Spa-then-Temp, DINO, MAE/CropMAE, torchvision/timm files; see
    vidssl/models/published.py) and mapped onto `backbone`.
    `dense`: the backbone as label propagation reads it (its eval_kwargs, e.g. ResNets at layer3, stride 8);
    else as trained (global features). A weights file that leaves backbone tensors unset is an error unless
    `allow_partial`."""
    if checkpoint:
        enc, meta = read_encoder(checkpoint, dense)
        src = meta.get("source", {})
        return enc, f"{meta['backbone']} ({src.get('method')}, step {src.get('step')}) from {checkpoint}"
    if init == "pixels":
        return PixelEncoder().eval(), "pixel baseline (Lab colour, 8x8 cells)"
    if init != "random" and not init.startswith("weights:"):
        raise ValueError(f"--init must be random, pixels or weights:PATH, not {init!r}")
    check_backbone_spec(backbone, {}, "--backbone")
    torch.manual_seed(0)
    try:
        enc = build_backbone(backbone, **(eval_kwargs_of(backbone) if dense else {}))
    except TypeError as e:  # e.g. "projected" needs its base network: only a method's recipe says which
        raise ValueError(f"backbone {backbone!r} cannot be built from its name alone ({e}). Evaluate the method's "
                         f"own initialisation instead: export it (benchmarks/learning.py export_initialisation, "
                         f"or a run with trainer.stop_at) and pass --checkpoint") from e
    if init == "random":
        return enc.eval(), f"{backbone}, random init (seed 0)"
    path = init[len("weights:"):]
    layout, missing = load_published(enc, backbone, read_weights_file(path), path)
    bad = [k for k, v in enc.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: non-finite values in {len(bad)} {backbone} tensor(s) after loading, e.g. {bad[0]}; "
                         f"these weights diverged or are damaged")
    if missing and not allow_partial:
        raise ValueError(f"{path} ({layout}) has no weights for {len(missing)} {backbone} tensors (e.g. "
                         f"{missing[:3]}); pass --allow-partial to keep those at random init")
    return enc.eval(), f"{backbone} with weights {path} ({layout})"


@torch.no_grad()
def frame_features(encoder: nn.Module, frames: torch.Tensor, device: torch.device, batch: int = 4,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype: torch.dtype = torch.float32,
                   clip_len: int = 8) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> L2-normalised per-frame maps (T, C, h, w) on `device`: 2D encoders
    `batch` frames at a time, video encoders `batch` clips at a time, each frame read from the clip of
    `clip_len` frames centred on it (vidssl/models/dense.py). Only one pass's frames are converted at a time."""
    encoder = encoder.to(device)

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return normalize(x.to(device).permute(0, 3, 1, 2), mean, std)

    return torch.cat([F.normalize(maps.float(), dim=1).to(dtype)
                      for maps in iter_frame_maps(encoder, frames, batch, clip_len, prepare)])


def _dino_pos_embed(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm VisionTransformer._pos_embed with DINO's resampling (facebookresearch/dino vision_transformer.py
    interpolate_pos_encoding, copied by CropMAE's src/models_mae.py): the patch grid's embedding resized by
    bicubic interpolation with scale factors (n + 0.1) / N, no antialiasing, left as is when the grid matches.
    x: patch tokens (B, H, W, C) as timm hands them over with dynamic_img_size."""
    B, H, W, C = x.shape
    n_prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    prefix, grid = vit.pos_embed[:, :n_prefix], vit.pos_embed[:, n_prefix:]
    gh, gw = vit.patch_embed.grid_size
    if (H, W) != (gh, gw):
        g = grid.reshape(1, gh, gw, C).permute(0, 3, 1, 2)
        g = F.interpolate(g, scale_factor=((H + 0.1) / gh, (W + 0.1) / gw), mode="bicubic", align_corners=False)
        grid = g.permute(0, 2, 3, 1).reshape(1, H * W, C)
    pos_embed = torch.cat([prefix, grid], 1)
    x = x.reshape(B, H * W, C)
    to_cat = [t.expand(B, -1, -1) for t in (vit.cls_token, getattr(vit, "reg_token", None)) if t is not None]
    if vit.no_embed_class:
        x = torch.cat(to_cat + [x + pos_embed], 1)
    else:
        x = torch.cat(to_cat + [x], 1) + pos_embed
    return vit.pos_drop(x)


def set_vit_pos_embed(encoder: nn.Module, mode: str) -> int:
    """How the ViTs inside `encoder` resample their position embedding to another patch grid: "timm" (timm's
    resample_abs_pos_embed: bicubic, antialiased when shrinking) or "dino" (see _dino_pos_embed). Returns the
    number of ViTs changed (0 for CNNs, where the knob does nothing)."""
    if mode not in ("timm", "dino"):
        raise ValueError(f"vit_pos_embed must be timm or dino, not {mode!r}")
    import types

    n = 0
    for m in encoder.modules():
        if getattr(m, "pos_embed", None) is None or not hasattr(m, "patch_embed") or not hasattr(m, "_pos_embed"):
            continue
        if not getattr(m, "dynamic_img_size", False):
            continue  # a fixed-size ViT never resamples
        if mode == "dino":
            m._pos_embed = types.MethodType(_dino_pos_embed, m)
        elif "_pos_embed" in vars(m):
            del m._pos_embed  # back to the class's (timm's) method
        n += 1
    return n
