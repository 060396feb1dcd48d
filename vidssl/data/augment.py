"""Augmentations. Random-resized-crop boxes are drawn in one vectorised call; the per-frame crop runs in the
DataLoader workers (it shrinks the decoded frame), the CRW patch grid runs batched on the training device.

CRW recipe (Jabri et al. 2020; ajabri/videowalk code/utils/augs.py): every frame gets its own random resized
crop (scale 0.8-0.95, ratio 0.7-1.3) to 256 px; the frame is cut into a grid of 64 px patches with stride 32
(7 x 7 = 49 nodes); each patch gets its own random resized crop (scale 0.7-0.9, default ratio 3/4-4/3) back to
64 px; then normalisation with the reference's mean/std.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torchvision.ops import roi_align

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# videowalk trains with these (CIFAR) statistics (code/utils/augs.py) and evaluates with ImageNet's.
CRW_TRAIN_MEAN, CRW_TRAIN_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def sample_rrc_boxes(height: int, width: int, n: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                     generator: torch.Generator | None = None, attempts: int = 10) -> torch.Tensor:
    """`n` random-resized-crop boxes (top, left, h, w), int64, with torchvision's RandomResizedCrop rule:
    up to 10 tries of area ~ U(scale), log-aspect ~ U(log ratio); boxes that never fit fall back to the
    largest centred crop within the ratio bounds."""
    area = height * width
    target = area * torch.empty(n, attempts).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(dim=1)
    h = h.gather(1, first[:, None])[:, 0]
    w = w.gather(1, first[:, None])[:, 0]
    u = torch.rand(n, 2, generator=generator)
    top = torch.floor(u[:, 0] * (height - h + 1).clamp(min=1)).long()
    left = torch.floor(u[:, 1] * (width - w + 1).clamp(min=1)).long()
    # fallback: centre crop
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    none_ok = ~ok.any(dim=1)
    h = torch.where(none_ok, fh, h)
    w = torch.where(none_ok, fw, w)
    top = torch.where(none_ok, (height - fh) // 2, top)
    left = torch.where(none_ok, (width - fw) // 2, left)
    return torch.stack([top, left, h, w], dim=1)


def resize_frame(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize HWC uint8 to (height, width): area averaging when shrinking (antialiased), bilinear otherwise."""
    h, w = size
    shrink = h * w < img.shape[0] * img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) scaled so that the shorter side is `short_side` (aspect kept, at least 1 px)."""
    s = short_side / min(height, width)
    return max(round(height * s), 1), max(round(width * s), 1)


class FrameCrop:
    """Crop a uint8 clip (T, H, W, 3) to (T, size, size, 3) in the workers. Policies (a box per frame, then an
    area-averaging resize):

    - "per_frame": each frame its own random resized crop (the CRW recipe);
    - "per_clip": one random resized crop for the whole clip (temporally consistent views);
    - "square": the largest square at a random position along the long side (the whole content, for methods
      that crop again on the device);
    - "resize": the whole frame, aspect ignored. `scale=None` also means "resize" (older configs).
    """

    def __init__(self, size: int = 256, scale: tuple[float, float] | None = (0.8, 0.95),
                 ratio: tuple[float, float] = (0.7, 1.3), policy: str = "per_frame"):
        self.size, self.scale, self.ratio = size, scale, ratio
        self.policy = "resize" if scale is None else policy

    def boxes(self, T: int, H: int, W: int, generator: torch.Generator) -> torch.Tensor:
        """(T, 4) boxes (top, left, h, w)."""
        if self.policy == "per_frame":
            return sample_rrc_boxes(H, W, T, self.scale, self.ratio, generator)
        if self.policy == "per_clip":
            return sample_rrc_boxes(H, W, 1, self.scale, self.ratio, generator).expand(T, 4)
        if self.policy == "square":
            side = min(H, W)
            offset = int(torch.randint(0, max(H, W) - side + 1, (1,), generator=generator))
            box = [offset, 0, side, side] if H > W else [0, offset, side, side]
            return torch.tensor([box]).expand(T, 4)
        if self.policy == "resize":
            return torch.tensor([[0, 0, H, W]]).expand(T, 4)
        raise ValueError(f"unknown crop policy {self.policy!r}")

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.crop(clip, generator)[0]

    def crop(self, clip: torch.Tensor, generator: torch.Generator,
             boxes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(cropped clip, the (T, 4) boxes it was cut from); `boxes` given = cut those (one per frame, or one)."""
        frames = clip.numpy()
        boxes = self.boxes(*frames.shape[:3], generator) if boxes is None else boxes[:1].expand(len(frames), 4)
        out = [resize_frame(f[t:t + h, l:l + w], (self.size, self.size))
               for f, (t, l, h, w) in zip(frames, boxes.tolist())]
        return torch.from_numpy(np.stack(out)), boxes


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float, scaled to [0, 1] and normalised per channel."""
    m = torch.tensor(mean, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, device=x.device).view(3, 1, 1)
    return (x.float() / 255.0 - m) / s


class PatchGrid:
    """CRW nodes: a grid of `patch` px windows with `stride`, each jittered by its own random resized crop,
    all cut in one roi_align call (bilinear, pixel-centre aligned) on whatever device the clips are on.

    Input uint8 clips (B, T, H, W, 3); output float (B, T, P, 3, patch, patch), normalised.
    """

    def __init__(self, patch: int = 64, stride: int = 32, jitter_scale=(0.7, 0.9), jitter_ratio=(3 / 4, 4 / 3),
                 mean=CRW_TRAIN_MEAN, std=CRW_TRAIN_STD):
        self.patch, self.stride = patch, stride
        self.jitter_scale, self.jitter_ratio, self.mean, self.std = jitter_scale, jitter_ratio, mean, std

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Top-left corners (P, 2) of the windows, row-major."""
        ys = torch.arange(0, height - self.patch + 1, self.stride)
        xs = torch.arange(0, width - self.patch + 1, self.stride)
        return torch.cartesian_prod(ys, xs)

    def __call__(self, clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        B, T, H, W, _ = clips.shape
        corners = self.grid(H, W)
        P = len(corners)
        boxes = sample_rrc_boxes(self.patch, self.patch, B * T * P, self.jitter_scale, self.jitter_ratio, generator)
        top = corners[:, 0].repeat(B * T) + boxes[:, 0]
        left = corners[:, 1].repeat(B * T) + boxes[:, 1]
        frame = torch.arange(B * T).repeat_interleave(P)
        rois = torch.stack([frame, left, top, left + boxes[:, 3], top + boxes[:, 2]], dim=1).float()
        frames = normalize(clips.reshape(B * T, H, W, 3).permute(0, 3, 1, 2), self.mean, self.std)
        patches = roi_align(frames, rois.to(frames.device), output_size=self.patch, spatial_scale=1.0,
                            sampling_ratio=1, aligned=True)
        return patches.view(B, T, P, 3, self.patch, self.patch)


class WholeFrames:
    """Dense mode: whole frames, normalised. uint8 (B, T, H, W, 3) -> float (B, T, 1, 3, H, W)."""

    def __init__(self, mean=CRW_TRAIN_MEAN, std=CRW_TRAIN_STD):
        self.mean, self.std = mean, std

    def __call__(self, clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return normalize(clips.permute(0, 1, 4, 2, 3), self.mean, self.std).unsqueeze(2)
