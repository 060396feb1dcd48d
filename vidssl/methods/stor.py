"""STOR: BYOL + spatio-temporal overlap rate, pace and rotation prediction ("Contrastive Spatio-Temporal
Pretext Learning for Self-supervised Video Representation", Zhang et al., AAAI 2022; official code Katou2/CSTP:
main_byol.py, models/pace/r21d_byol.py, data_process/datasets.py, data_process/preprocess_data.py).

Two 16-frame clips of one video at one pace (1, 2, 4 or 8 frames apart; the label), the second starting
(1 - r) of the first's span before or after it (r in 1, 0.8, ..., 0.2; the temporal-overlap label), both cut
from one square canvas. On the device the first clip gets a random box (area U(0.2, 1) of the canvas, aspect
U(3/4, 4/3)), the second a box of the same size overlapping one corner region of area r * area(first) (the
spatial-overlap label; `overlap_boxes`, the reference's ClipRandomSizedCropOverlap), each clip then the
reference's "base" augmentation with p 0.3 (colour jitter, grayscale, blur, flip) or its "null" one (flip
only), and a rotation by k * 90 degrees (the rotation label, each clip its own k). An online R(2+1)D with BYOL
projector/predictor (512 -> 4096 -> 512) predicts the EMA target's projection of the other clip (constant
momentum 0.996); four heads read the pooled backbone features: spatial and temporal overlap from the concat of
both clips' features, pace and rotation from each clip's. Loss (main_byol.py train_BYOL, weights 0.1 1 1 1 1):
0.1 * (byol(p1, z2) + byol(p2, z1)) + CE(spa) + CE(tem) + CE(pace1) + CE(pace2) + CE(rot1) + CE(rot2).

Where this differs from the official code, and why:
- Temporal placement follows the frame-folder loader UcfRepreBYOLSpPre.repre_train_clip (the data layer's
  overlap_rule="span"); the reference's LMDB/Kinetics loaders read clip 2 from clip 1's start, so their
  temporal label is noise.
- Rotation: the reference rotates whole FRAMES (PIL transpose) before the spatial crop, so with two different
  angles the spatial-overlap label refers to pixel coordinates of differently rotated frames, and it flips
  after rotating, which makes 90 and 270 degrees the same class up to a mirror image. Here boxes are cut in
  unrotated canvas coordinates and each (square) view is rotated last (torch.rot90, counter-clockwise as
  PIL's ROTATE_90), so the overlap label is about shared content and the rotation label is unambiguous.
- The base augmentation's small random rotation (+-10 degrees) is left out; its grayscale is the luma
  (the reference copies one random channel); colour ops are torchvision's (vidssl.data.views).
- Backbone: the reference's R(2+1)D-10 (layer sizes 1, 1, 1, 1) is not a torchvision model; the default here
  is torchvision's r2plus1d_18 (512 features, any registered video backbone works).
- The target starts as a copy of the online network (the reference initialises it independently, so its
  first steps regress onto an unrelated random network), and is updated after each optimizer step (the
  reference updates it at the start of the next forward: the same sequence of targets).
- Init (r21d_byol.py): Glorot-uniform on every Linear and Conv weight, as the reference (biases keep
  PyTorch's default). The reference also draws BatchNorm weights Glorot-uniform (about +-sqrt(6 / C), half of
  them negative); that is kept off by default (BatchNorm weights 1, `glorot_bn: true` restores it).
- The pace and rotation heads have 5 outputs for 4 classes in the reference; kept (`cls_outputs`).
- Weight decay on every parameter, as the reference's plain SGD (no bias/norm exclusion).
"""
from __future__ import annotations

import dataclasses
import math
import random
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.data.views import ViewRecipe, apply_view_params, draw_view_params
from vidssl.losses.byol import byol_loss
from vidssl.methods.base import Method, embedding_std, register
from vidssl.methods.byol import BYOL
from vidssl.models.heads import mlp

RATES = (1.0, 0.8, 0.6, 0.4, 0.2)  # OVERLAP_SPA_RATE / OVERLAP_TEM_RATE of the reference
PACES = (1, 2, 4, 8)  # PACE of data_process/datasets.py
MAX_DRAWS = 1000


def _first_box(rng: random.Random, H: int, W: int, min_area: float, ratio: tuple) -> tuple[int, int, int, int]:
    """ClipRandomSizedCropOverlap's first crop: area U(min_area, 1) of the canvas, aspect U(ratio) (uniform,
    not log-uniform), w/h swapped with p 0.5, redrawn until it fits; (top, left, h, w)."""
    for _ in range(MAX_DRAWS):
        area = rng.uniform(min_area, 1.0) * H * W
        aspect = rng.uniform(*ratio)
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if rng.random() < 0.5:
            w, h = h, w
        if 1 <= w <= W and 1 <= h <= H:
            return rng.randint(0, H - h), rng.randint(0, W - w), h, w
    return 0, 0, H, W


def _second_box(rng: random.Random, first: tuple, H: int, W: int, rates: Sequence[float]):
    """A box of the first's size sharing one corner region of area rate * area(first) with it: overlap width
    s_w = randint(int(rate * p_w), p_w), height s_h = int(rate * p_w * p_h / s_w) (capped at p_h); class and
    corner (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right of the first box) redrawn until it fits.
    Returns ((top, left, h, w), class) or None when nothing fitted."""
    p_y, p_x, p_h, p_w = first
    for _ in range(100):  # the reference loops for ever; (4/5)^100 ~ 2e-10 when only rate 1.0 fits
        label = rng.randint(0, len(rates) - 1)
        corner = rng.randint(0, 3)
        s_w = rng.randint(max(1, int(rates[label] * p_w)), p_w)
        s_h = min(int(rates[label] * p_w * p_h / s_w), p_h)
        left = p_x - (p_w - s_w) if corner in (0, 2) else p_x + (p_w - s_w)
        top = p_y - (p_h - s_h) if corner in (0, 1) else p_y + (p_h - s_h)
        if 0 <= left <= W - p_w and 0 <= top <= H - p_h:
            return (top, left, p_h, p_w), label
    return None


def overlap_boxes(n: int, height: int, width: int, rates: Sequence[float] = RATES, generator=None,
                  min_area: float = 0.2, ratio: tuple = (3 / 4, 4 / 3)):
    """n pairs of boxes on a (height, width) canvas with a known spatial overlap (the reference's
    ClipRandomSizedCropOverlap, data_process/preprocess_data.py). Returns (first (n, 4), second (n, 4)) int64
    boxes (top, left, h, w) and labels (n,) int64 indexing `rates`: intersection / area(first) = rate within
    the integer rounding. Draws come from a Python RNG seeded by `generator` (the reference's primitives)."""
    if not rates or any(not 0 < r <= 1 for r in rates):
        raise ValueError(f"stor: spatial_rates must be fractions in (0, 1], got {tuple(rates)}")
    rng = random.Random(int(torch.randint(2**62, (1,), generator=generator)))
    first, second, labels = [], [], []
    for _ in range(n):
        for _ in range(100):  # the first box is redrawn only if no class fits beside it
            a = _first_box(rng, height, width, min_area, ratio)
            b = _second_box(rng, a, height, width, rates)
            if b is not None:
                break
        else:
            raise ValueError(f"stor: no spatial overlap of {tuple(rates)} fits a {height}x{width} canvas")
        first.append(a)
        second.append(b[0])
        labels.append(b[1])
    return torch.tensor(first).view(n, 4), torch.tensor(second).view(n, 4), torch.tensor(labels, dtype=torch.long)


def rotate_views(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Rotate each (..., H, W) sample x[i] by k[i] * 90 degrees counter-clockwise (PIL's ROTATE_90 for k = 1);
    square views; k a CPU (N,) tensor in 0..3."""
    out = x.clone()
    for r in range(1, 4):
        idx = (k == r).nonzero().flatten()
        if idx.numel():
            idx = idx.to(x.device)
            out.index_copy_(0, idx, torch.rot90(x.index_select(0, idx), r, dims=(-2, -1)))
    return out


def stor_loss(p: Sequence[torch.Tensor], z: Sequence[torch.Tensor], logits: dict, labels: dict,
              weights: Sequence[float] = (0.1, 1.0, 1.0, 1.0, 1.0)) -> tuple[torch.Tensor, dict]:
    """main_byol.py's total: w0 * (byol(p1, z2) + byol(p2, z1)) + w1 * CE(spa) + w2 * CE(tem) +
    w3 * (CE(pace1) + CE(pace2)) + w4 * (CE(rot1) + CE(rot2)). `logits`/`labels` keyed spa, tem, pace1, pace2,
    rot1, rot2. Float32 math. Returns (loss, per-term values detached; pace and rot as the mean of the two)."""
    ce = {k: F.cross_entropy(logits[k].float(), labels[k]) for k in ("spa", "tem", "pace1", "pace2", "rot1", "rot2")}
    byol = byol_loss(p[0], z[1]) + byol_loss(p[1], z[0])
    w = weights
    loss = (w[0] * byol + w[1] * ce["spa"] + w[2] * ce["tem"] + w[3] * (ce["pace1"] + ce["pace2"])
            + w[4] * (ce["rot1"] + ce["rot2"]))
    terms = {"loss_byol": byol, "loss_spa": ce["spa"], "loss_tem": ce["tem"],
             "loss_pace": (ce["pace1"] + ce["pace2"]) / 2, "loss_rot": (ce["rot1"] + ce["rot2"]) / 2}
    return loss, {k: v.detach() for k, v in terms.items()}


@register("stor")
class STOR(BYOL):
    def __init__(self, backbone: str = "r2plus1d_18", crop_size: int = 112, proj_hidden: int = 4096,
                 proj_dim: int = 512, pred_hidden: int = 4096, base_momentum: float = 0.996,
                 final_momentum: float = 0.996, loss_weights: Sequence[float] = (0.1, 1.0, 1.0, 1.0, 1.0),
                 spatial_rates: Sequence[float] = RATES, temporal_rates: Sequence[float] = RATES,
                 paces: Sequence[int] = PACES, cls_outputs: int = 5, min_area: float = 0.2, base_p: float = 0.3,
                 glorot: bool = True, glorot_bn: bool = False, **kwargs):
        super().__init__(backbone=backbone, crop_size=crop_size, proj_hidden=proj_hidden, proj_dim=proj_dim,
                         pred_hidden=pred_hidden, base_momentum=base_momentum, final_momentum=final_momentum,
                         **kwargs)
        if not self.backbone.is_video:
            raise ValueError(f"stor needs a video backbone (r2plus1d_18, r3d_18, mc3_18, s3d), not {backbone!r}")
        if len(loss_weights) != 5:
            raise ValueError(f"stor: loss_weights are 5 numbers (byol, spatial, temporal, pace, rotation), "
                             f"got {list(loss_weights)}")
        if cls_outputs < max(4, len(paces)):
            raise ValueError(f"stor: cls_outputs ({cls_outputs}) must cover the 4 rotations and {len(paces)} paces")
        if not 0 < min_area <= 1 or not 0 <= base_p <= 1:
            raise ValueError(f"stor: min_area must lie in (0, 1] and base_p in [0, 1], got {min_area}, {base_p}")
        if not temporal_rates or any(not 0 <= r <= 1 for r in temporal_rates):
            raise ValueError(f"stor: temporal_rates must be fractions in [0, 1], got {list(temporal_rates)}")
        if any(not 0 < r <= 1 for r in spatial_rates) or not spatial_rates:
            raise ValueError(f"stor: spatial_rates must be fractions in (0, 1], got {list(spatial_rates)}")
        self.loss_weights, self.paces = tuple(float(w) for w in loss_weights), tuple(int(p) for p in paces)
        self.spatial_rates, self.temporal_rates = tuple(spatial_rates), tuple(temporal_rates)
        self.min_area, self.base_p = min_area, base_p
        C = self.backbone.out_channels
        self.spa_head = mlp(2 * C, 2 * C, len(self.spatial_rates))  # Linear(1024,1024)-BN-ReLU-Linear(1024,5)
        self.tem_head = mlp(2 * C, 2 * C, len(self.temporal_rates))
        self.pace_head = mlp(C, C, cls_outputs)  # Linear(512,512)-BN-ReLU-Linear(512,5)
        self.rot_head = mlp(C, C, cls_outputs)
        # preprocess_data.py get_transforms('pre_train'): "base" (p 0.3) and "null" (flip only), "tf" norm
        norm = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        self.base_view = ViewRecipe(size=crop_size, flip_p=0.5, jitter_p=0.8, brightness=0.4, contrast=0.4,
                                    saturation=0.4, hue=0.1, grayscale_p=0.2, blur_p=0.5, blur_sigma=(0.1, 2.0),
                                    solarize_p=0.0, **norm)
        self.null_view = dataclasses.replace(self.base_view, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
        if glorot:
            self._glorot(glorot_bn)

    @torch.no_grad()
    def _glorot(self, bn: bool) -> None:
        """r21d_byol.py's init: Glorot-uniform weights for Linear/Conv (= nn.init.xavier_uniform_), and with
        `bn` for BatchNorm weights too (the reference's fan of a vector: fan_in = fan_out = C / 2)."""
        online = [self.backbone, self.projector, self.predictor, self.spa_head, self.tem_head, self.pace_head,
                  self.rot_head]
        for m in (m for net in online for m in net.modules()):
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                nn.init.xavier_uniform_(m.weight)
            elif bn and isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
                bound = math.sqrt(6.0 / (2 * (m.weight.numel() // 2)))
                m.weight.uniform_(-bound, bound)
        self.target_backbone.load_state_dict(self.backbone.state_dict())
        self.target_projector.load_state_dict(self.projector.state_dict())

    def data_spec(self, d) -> DataSpec:
        return DataSpec([
            ClipRequest("clip", d.clip_len, d.img_size, "square", frame_rate=d.frame_rate, frame_skip=d.frame_skip,
                        rate_choices=self.paces),
            ClipRequest("clip_b", d.clip_len, d.img_size, "square", placement="overlap", anchor="clip",
                        overlap_choices=self.temporal_rates, overlap_rule="span", crop_as="clip"),
        ])

    def _augment(self, clips: torch.Tensor, boxes: torch.Tensor, base: torch.Tensor, rot: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) -> float (B, 3, T, s, s): crop each clip to its box, the base or null recipe,
        then rotate by rot * 90 degrees."""
        B, T, H, W, _ = clips.shape
        s = self.base_view.size
        out = torch.empty(B, T, 3, s, s, device=clips.device)
        for recipe, mask in ((self.base_view, base), (self.null_view, ~base)):
            idx = mask.nonzero().flatten()
            if idx.numel() == 0:
                continue
            params = dataclasses.replace(draw_view_params(recipe, idx.numel(), H, W, generator), boxes=boxes[idx])
            dev_idx = idx.to(clips.device)
            out.index_copy_(0, dev_idx, apply_view_params(clips.index_select(0, dev_idx), params, recipe))
        return rotate_views(out, rot).transpose(1, 2)

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        clip_a, clip_b = batch["clip"], batch["clip_b"]  # (B, T, H, W, 3) uint8, one canvas
        B, _, H, W, _ = clip_a.shape
        box_a, box_b, spa = overlap_boxes(B, H, W, self.spatial_rates, generator, self.min_area)
        base = torch.rand(2, B, generator=generator) < self.base_p
        rot = torch.randint(0, 4, (2, B), generator=generator)
        views = [self._augment(c, bx, base[i], rot[i], generator)
                 for i, (c, bx) in enumerate(((clip_a, box_a), (clip_b, box_b)))]
        dev = clip_a.device
        return {**batch, "views": views, "spa_label": spa.to(dev), "rot_label": rot.t().contiguous().to(dev),
                "spa_boxes": torch.stack([box_a, box_b], dim=1).to(dev)}  # (B, 2, 4) top, left, h, w on the canvas

    def heads(self, f1: torch.Tensor, f2: torch.Tensor) -> dict:
        """Logits of the four heads from the two clips' pooled online features (r21d_byol.py forward)."""
        cat = torch.cat([f1, f2], dim=1)
        return {"spa": self.spa_head(cat), "tem": self.tem_head(cat), "pace1": self.pace_head(f1),
                "pace2": self.pace_head(f2), "rot1": self.rot_head(f1), "rot2": self.rot_head(f2)}

    def labels(self, batch: dict) -> dict:
        pace, rot = batch["clip_rate"], batch["rot_label"]
        return {"spa": batch["spa_label"], "tem": batch["clip_b_overlap"], "pace1": pace, "pace2": pace,
                "rot1": rot[:, 0], "rot2": rot[:, 1]}

    def forward(self, batch: dict) -> dict:
        x1, x2 = batch["views"]
        f1, f2 = self.backbone.forward_global(x1), self.backbone.forward_global(x2)
        p = [self.predictor(self.projector(f)) for f in (f1, f2)]
        z = [self.target(x) for x in (x1, x2)]
        logits, labels = self.heads(f1, f2), self.labels(batch)
        loss, logs = stor_loss(p, z, logits, labels, self.loss_weights)
        with torch.no_grad():
            acc = {k: (logits[k].argmax(1) == labels[k]).float().mean() for k in logits}
            logs.update(acc_spa=acc["spa"], acc_tem=acc["tem"], acc_pace=(acc["pace1"] + acc["pace2"]) / 2,
                        acc_rot=(acc["rot1"] + acc["rot2"]) / 2,
                        z_std=embedding_std(z[0]))
        return {"loss": loss, **logs}

    def param_groups(self) -> list[dict]:
        return Method.param_groups(self)  # the reference's SGD decays every parameter
