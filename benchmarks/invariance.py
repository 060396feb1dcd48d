"""What did training make an encoder's dense features invariant to? A diagnostic for learning curves (issue 25).

For each exported encoder (a folder written by training or benchmarks/learning.py), read frames of the DAVIS-2016
validation sequences at the evaluation input size, and compare the dense feature map of each frame with that of
the same frame after one photometric change: grayscale, a Gaussian blur, a colour jitter (BYOL's strengths). Per
cell cosine similarity after subtracting the mean feature vector of the unchanged frames (without it every random
network looks invariant: its ReLU maps share one large mean vector), averaged. Also: the fraction of exactly-zero
feature values (dead ReLU outputs) and the position-shortcut monitor `pos_code` (vidssl/methods/base.py) on
112-px centre crops, the scale the CPU recipes train at. Compare a trained encoder with its init after BatchNorm
re-estimation (learning.py's bn baseline): the views a method trains with should raise the similarities they
teach (blur, jitter); a fall in propagation scores while they rise says what the features gave up.

    PYTHONPATH=$PWD python benchmarks/invariance.py runs/learning/byol_cpu/seed0/step0 runs/learning/byol_cpu/seed0/step1000
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F

from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
from vidssl.data.views import adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, gaussian_blur, to_grayscale
from vidssl.eval.protocol import input_shape
from vidssl.eval.tasks.davis import resize_frames
from vidssl.io.frames import list_frames, read_image
from vidssl.methods.base import position_code
from vidssl.models.export import read_encoder

SHARED = os.environ.get("VIDSSL_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def validation_frames(per_sequence: int = 4) -> np.ndarray:
    """`per_sequence` evenly spaced frames (uint8 RGB) of each DAVIS-2016 sequence in ../shared."""
    root = os.path.join(SHARED, "davis2016", "JPEGImages", "480p")
    frames = []
    for seq in sorted(os.listdir(root)):
        paths = list_frames(os.path.join(root, seq))
        frames += [read_image(paths[int((i + 0.5) * len(paths) / per_sequence)]) for i in range(per_sequence)]
    return np.stack(frames)


def changes(x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Photometric variants of RGB images `x` (N, 3, H, W) in [0, 1]: the same pixels, another appearance."""
    n = len(x)

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=generator)
    jitter = adjust_hue(adjust_saturation(adjust_contrast(adjust_brightness(x, u(0.6, 1.4)), u(0.6, 1.4)),
                                          u(0.8, 1.2)), u(-0.1, 0.1)).clamp(0, 1)
    return {"grayscale": to_grayscale(x), "blur (sigma 2 px)": gaussian_blur(x, torch.full((n,), 2.0), 13),
            "colour jitter": jitter}


def centre_crops(x: torch.Tensor, size: int = 112) -> torch.Tensor:
    """Images (N, 3, H, W) resized (short side) and centre-cropped to `size`."""
    h, w = x.shape[-2:]
    x = F.interpolate(x, scale_factor=size / min(h, w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size].clamp(0, 1)


@torch.no_grad()
def invariance(folder: str, frames: np.ndarray, input_size: str, batch: int = 4) -> dict[str, float]:
    encoder, _ = read_encoder(folder, dense=True)
    h, w = input_shape(input_size, *frames.shape[1:3])
    x = resize_frames(torch.from_numpy(frames), (h, w)).permute(0, 3, 1, 2).float() / 255
    variants = {"original": x, **changes(x, torch.Generator().manual_seed(0))}

    def features(images):
        return torch.cat([encoder(normalize(images[s:s + batch] * 255, IMAGENET_MEAN, IMAGENET_STD))  # takes 0..255
                          for s in range(0, len(images), batch)])
    base = features(x)
    centre = base.mean(dim=(0, 2, 3), keepdim=True)  # a random ReLU network's maps share a large mean vector
    row = {"zeros": float((base == 0).float().mean()), "pos_code": float(position_code(features(centre_crops(x))))}
    for name, images in variants.items():
        if name != "original":
            row[name] = float(F.cosine_similarity(base - centre, features(images) - centre, dim=1).mean())
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("encoders", nargs="+", help="exported encoder folders")
    p.add_argument("--input-size", default="short:240")
    p.add_argument("--per-sequence", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    frames = validation_frames(args.per_sequence)
    rows = [(folder, invariance(folder, frames, args.input_size)) for folder in args.encoders]
    cols = list(rows[0][1])
    print(f"centred dense-feature cosine similarity to the unchanged frame ({len(frames)} DAVIS frames at {args.input_size}); "
          "zeros: fraction of exactly-zero values; pos_code: same cell across images minus different cells within one")
    print("| encoder | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for folder, row in rows:
        print(f"| {folder} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
