"""Online k-NN monitor: top-1 accuracy of a weighted k-nearest-neighbour classifier on the encoder's global
features of a small labelled image folder, every `trainer.knn_every` steps (Wu et al. CVPR 2018 "Unsupervised
Feature Learning via Non-Parametric Instance Discrimination"; the DINO evaluation facebookresearch/dino
eval_knn.py: cosine similarity, k = 200 neighbours, each voting exp(similarity / T) with T = 0.1 for its class).

The folder is in ImageFolder layout: ROOT/train/<class>/*.jpg is the memory bank, ROOT/val/<class>/*.jpg is
classified. Images are resized (short side) and centre-cropped to `size`, normalised with ImageNet statistics,
read batch by batch from disk (nothing is held in memory but the features). Video backbones see each image as a
one-frame clip.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize, resize_frame, short_side_size
from vidssl.io.frames import IMAGE_EXTENSIONS, read_image


def knn_predict(features: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int,
                k: int = 200, temperature: float = 0.1) -> torch.Tensor:
    """Class of each row of `features` (N, D) by its k nearest rows of `bank` (M, D) in cosine similarity, each
    weighted by exp(similarity / temperature); ties go to the lower class id."""
    features, bank = F.normalize(features.float(), dim=1), F.normalize(bank.float(), dim=1)
    sims, idx = (features @ bank.T).topk(min(k, len(bank)), dim=1)
    votes = torch.zeros(len(features), num_classes, device=features.device)
    votes.scatter_add_(1, bank_labels[idx], (sims / temperature).exp())
    return votes.argmax(dim=1)


def image_folder(root: str) -> tuple[list[str], list[int], list[str]]:
    """(image paths, class ids, class names) of an ImageFolder-layout folder, sorted."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"k-NN folder {root} not found (trainer.knn_root needs train/ and val/ in "
                                f"ImageFolder layout: <split>/<class>/<image>)")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = sorted(f for f in os.listdir(os.path.join(root, name)) if f.lower().endswith(IMAGE_EXTENSIONS))
        paths += [os.path.join(root, name, f) for f in files]
        labels += [c] * len(files)
    if not paths:
        raise FileNotFoundError(f"no images in the class folders of {root}")
    return paths, labels, classes


def check_images(paths: list[str], root: str) -> None:
    """Every image opens (header and, for PNG, checksums) and no JPEG lacks its end marker: a damaged image is
    found at start-up, naming it, not at the first k-NN step hours into training. Decodes nothing (cheap)."""
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as img:
                fmt = img.format
                img.verify()
            if fmt == "JPEG":
                with open(path, "rb") as f:
                    f.seek(max(0, os.path.getsize(path) - 1024))
                    if b"\xff\xd9" not in f.read():
                        raise ValueError("truncated JPEG (no end-of-image marker)")
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds; one message naming the file
            raise ValueError(f"trainer.knn_root {root}: {path} is not a readable image ({e}); remove or replace it"
                             ) from None


def _load(path: str, size: int) -> np.ndarray:
    img = read_image(path)
    img = resize_frame(img, short_side_size(*img.shape[:2], size))
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return img[top:top + size, left:left + size]


class KNNMonitor:
    def __init__(self, root: str, size: int = 224, k: int = 200, temperature: float = 0.1, batch_size: int = 64):
        self.train = image_folder(os.path.join(root, "train"))
        self.val = image_folder(os.path.join(root, "val"))
        if self.train[2] != self.val[2]:
            raise ValueError(f"{root}: train/ and val/ must hold the same class folders")
        check_images(self.train[0] + self.val[0], root)
        self.size, self.k, self.temperature, self.batch_size = size, k, temperature, batch_size

    @torch.no_grad()
    def features(self, encoder: torch.nn.Module, paths: list[str], device: torch.device, desc: str) -> torch.Tensor:
        out = []
        for i in tqdm(range(0, len(paths), self.batch_size), desc=desc, leave=False):
            x = torch.from_numpy(np.stack([_load(p, self.size) for p in paths[i:i + self.batch_size]]))
            x = normalize(x.to(device).permute(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
            if getattr(encoder, "is_video", False):
                x = x[:, :, None]  # (N, 3, 1, H, W): a one-frame clip
            out.append(encoder.forward_global(x).float())
        return torch.cat(out)

    def evaluate(self, encoder: torch.nn.Module, device: torch.device) -> float:
        """Top-1 accuracy on val/ (the encoder is put in eval mode and restored)."""
        was_training = encoder.training
        encoder.eval()
        try:
            bank = self.features(encoder, self.train[0], device, "k-NN bank")
            feats = self.features(encoder, self.val[0], device, "k-NN val")
        finally:
            encoder.train(was_training)
        pred = knn_predict(feats, bank, torch.tensor(self.train[1], device=device), len(self.train[2]), self.k,
                           self.temperature)
        return (pred.cpu() == torch.tensor(self.val[1])).float().mean().item()
