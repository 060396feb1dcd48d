"""Dense frame features for evaluation and extraction: an encoder from a training checkpoint, a backbone with
local weights or random init, or the pixel baseline; frames in, L2-normalised (T, C, h, w) features out."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
from vidssl.engine.checkpoint import load_checkpoint
from vidssl.models.backbones import build_backbone, load_backbone_weights


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

    out_channels, stride = 3, 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        lab = rgb_to_lab((x * std + mean).clamp(0, 1))
        lab = lab - torch.tensor([50.0, 0.0, 0.0], device=x.device).view(1, 3, 1, 1)
        return F.avg_pool2d(lab, 8, 8, ceil_mode=True)


def eval_backbone_kwargs(name: str, kwargs: dict | None = None) -> dict:
    """CRW evaluates its ResNets at layer3 (videowalk test.py: --remove-layers layer4)."""
    kwargs = dict(kwargs or {})
    if name.startswith("resnet"):
        kwargs["remove_layers"] = tuple(set(kwargs.get("remove_layers", ())) | {"layer4"})
    return kwargs


def load_encoder(checkpoint: str | None = None, backbone: str = "resnet18", init: str = "random") -> tuple[nn.Module, str]:
    """(encoder, description). `checkpoint`: a vidssl training checkpoint (its method's backbone).
    Otherwise `backbone` with `init` = random | pixels | weights:PATH (a local state dict, e.g. ImageNet
    weights you downloaded; nothing is downloaded here)."""
    if checkpoint:
        ckpt = load_checkpoint(checkpoint)
        if "model" not in ckpt or "config" not in ckpt:
            raise ValueError(f"{checkpoint} is not a vidssl training checkpoint (no 'model'/'config'); "
                             f"use --backbone NAME --init weights:{checkpoint} for a plain state dict")
        mcfg = ckpt["config"]["method"]
        name = mcfg.get("backbone", "resnet18")
        enc = build_backbone(name, **eval_backbone_kwargs(name, mcfg.get("backbone_kwargs")))
        state = {k[len("backbone."):]: v for k, v in ckpt["model"].items() if k.startswith("backbone.")}
        missing = load_backbone_weights(enc, state)
        if missing:
            raise ValueError(f"{checkpoint}: backbone weights missing for {missing[:3]}")
        return enc.eval(), f"{name} from {checkpoint} (step {ckpt.get('step')})"
    if init == "pixels":
        return PixelEncoder().eval(), "pixel baseline (Lab colour, 8x8 cells)"
    torch.manual_seed(0)
    enc = build_backbone(backbone, **eval_backbone_kwargs(backbone))
    if init == "random":
        return enc.eval(), f"{backbone}, random init (seed 0)"
    if init.startswith("weights:"):
        path = init[len("weights:"):]
        state = torch.load(path, map_location="cpu", weights_only=False)
        state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
        missing = load_backbone_weights(enc, state)
        if missing:
            print(f"warning: {path} has no weights for {len(missing)} backbone tensors, e.g. {missing[:3]}")
        return enc.eval(), f"{backbone} with weights {path}"
    raise ValueError(f"--init must be random, pixels or weights:PATH, not {init!r}")


@torch.no_grad()
def frame_features(encoder: nn.Module, frames: torch.Tensor, device: torch.device, batch: int = 4,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) -> L2-normalised features (T, C, ceil(H/8), ceil(W/8)) on `device`, computed
    `batch` frames at a time (each frame once)."""
    encoder = encoder.to(device)
    out = []
    for s in range(0, frames.shape[0], batch):
        x = normalize(frames[s:s + batch].to(device).permute(0, 3, 1, 2), mean, std)
        out.append(F.normalize(encoder(x).float(), dim=1).to(dtype))
    return torch.cat(out)
