"""SCRL on single video frames (Roh et al., "Spatially Consistent Representation Learning for Dense
Prediction", CVPR 2021; official code kakaobrain/scrl: models/box_generator.py SCRLBoxGenerator,
models/backbone.py, trainer/base.py, config/scrl_1000ep.yaml).

BYOL (vidssl.methods.byol) on matched boxes instead of whole views. Two views of a frame are cut with known
crop boxes and flips (draw_view_params / apply_view_params); K = 10 box pairs per image are sampled inside the
two crops' intersection (`scrl_box_pairs`: the box generator's grid-based sampling, min size 32 px in the view
that is magnified least, a box retried up to 50 times until its IoU with the image's earlier boxes is < 0.5)
and mapped into each view's pixels, mirrored when the view was flipped. Both networks pool each box from the
backbone's last feature map with RoIAlign (1x1 output, spatial_scale = 1 / stride, aligned=False, as the
official `detectron_aligned: False`), project it (the target) or project and predict it (the online
network), and each view's boxes regress the target projections of the same boxes in the other view:
byol_loss(p1, z2) + byol_loss(p2, z1), averaged over all boxes. Images whose intersection is too small are
skipped (logged: `skipped_images`, `boxes` per process and step). Both views go through each network in one
pass (torch.cat, as the official trainer), so BatchNorm normalises them together.

Recipe (config/scrl_1000ep.yaml): ResNet-50, projector/predictor 4096 -> 256, views of BYOL's augmentation with
crop scale 0.2-1, LARS (lr 0.2 x batch / 256, momentum 0.9, weight decay 1.5e-6 without biases and BN), 10
warm-up epochs then cosine, EMA momentum 0.996 -> 1 along a cosine, batch 8192 (README), 1000 epochs.

Deviations: the projector's last Linear keeps its bias (vidssl's BYOL heads; the official drops it); the blur
is the Gaussian of vidssl's BYOL views (the official resizes down and up, `ResizeBlur`); box jittering (off
in the official configs) is not implemented. Under torchrun the loss is the mean over the boxes of the global
batch (each process scales its box sum by the all-reduced box count), which is what one process on the global
batch computes; the official averages per process. A process left with fewer than two boxes (BatchNorm needs
two) contributes a zero loss that step.
"""
from __future__ import annotations

import torch
from torchvision.ops import roi_align

from vidssl.data.views import apply_view_params, draw_view_params
from vidssl.dist import all_reduce_sum, get_world_size, is_distributed
from vidssl.losses.byol import byol_loss
from vidssl.methods.base import check_frame_backbone, embedding_std, register
from vidssl.methods.byol import BYOL

# --- box geometry (pure; boxes are (x1, y1, x2, y2) unless said otherwise; crops are ViewParams.boxes:
# (top, left, height, width) in canvas pixels; a view is its crop resized to size x size) ----------------------


def crop_intersection(crops1: torch.Tensor, crops2: torch.Tensor) -> torch.Tensor:
    """(B, 4) crops (top, left, h, w) -> (B, 4) float intersection (x1, y1, x2, y2) in canvas pixels; empty
    where x2 <= x1 or y2 <= y1."""
    t1, l1, h1, w1 = crops1.double().unbind(1)
    t2, l2, h2, w2 = crops2.double().unbind(1)
    return torch.stack([torch.maximum(l1, l2), torch.maximum(t1, t2),
                        torch.minimum(l1 + w1, l2 + w2), torch.minimum(t1 + h1, t2 + h2)], dim=1)


def canvas_to_view(boxes: torch.Tensor, crops: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """Boxes (B, ..., 4) in canvas pixels -> the same boxes in the pixels of each view (its crop resized to
    size x size), mirrored (x -> size - x, edges swapped) where `flips` (B,) is set."""
    t, l, h, w = (c.view(-1, *[1] * (boxes.ndim - 2)) for c in crops.double().unbind(1))
    x1 = (boxes[..., 0] - l) * size / w
    x2 = (boxes[..., 2] - l) * size / w
    y1 = (boxes[..., 1] - t) * size / h
    y2 = (boxes[..., 3] - t) * size / h
    f = flips.view(-1, *[1] * (boxes.ndim - 2))
    x1, x2 = torch.where(f, size - x2, x1), torch.where(f, size - x1, x2)
    return torch.stack([x1, y1, x2, y2], dim=-1)


def view_intersections(crops1: torch.Tensor, flips1: torch.Tensor, crops2: torch.Tensor, flips2: torch.Tensor,
                       size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The region two views share, in each view's pixels: (in_view1 (B, 4), in_view2 (B, 4), nonempty (B,))."""
    inter = crop_intersection(crops1, crops2)
    nonempty = (inter[:, 2] > inter[:, 0]) & (inter[:, 3] > inter[:, 1])
    return canvas_to_view(inter, crops1, flips1, size), canvas_to_view(inter, crops2, flips2, size), nonempty


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (B, n, 4) and (B, m, 4) boxes -> (B, n, m)."""
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[..., 2:] - x[..., :2]).prod(-1)
    return inter / (area(a)[:, :, None] + area(b)[:, None, :] - inter)


def _randint(u: torch.Tensor, low, high) -> torch.Tensor:
    """Integers uniform in [low, high) from uniforms u in [0, 1) (low, high broadcast)."""
    return low + torch.floor(u * (high - low)).clamp(max=high - low - 1)


def sample_boxes_in(width: torch.Tensor, height: torch.Tensor, k: int, min_size: int, generator: torch.Generator,
                    iou_threshold: float = 0.5, tries: int = 50, grid: bool = True) -> torch.Tensor:
    """k integer boxes (B, k, 4) inside [0, width] x [0, height] of each of B regions (sides > min_size),
    at least `min_size` on each side (SCRLBoxGenerator.generate, vectorised over images and tries).

    grid=True (the official `grid_based_box_gen`): split each axis into d ~ U{1..side // min_size} cells, pick a
    cell, then a box of side U{min_size..cell} at a random integer offset inside it. grid=False: side
    U{min_size..side - 1}, anywhere. Box j > 0 is the first of `tries` candidates whose IoU with every earlier
    box of its image is < iou_threshold (the last candidate if none is), box 0 the first candidate. All draws
    (B * k * tries * 8 uniforms) come from `generator`, whatever is accepted."""
    B = width.shape[0]
    u = torch.rand(B, k, tries, 2, 4, generator=generator, dtype=torch.float64)
    sides = torch.stack([width, height], dim=1).double()[:, None, None, :]  # (B, 1, 1, 2): x then y
    if grid:
        cells = _randint(u[..., 0], 1.0, torch.floor(sides / min_size) + 1)
        cell = sides / cells
        index = _randint(u[..., 1], 0.0, cells)
        length = _randint(u[..., 2], float(min_size), torch.floor(cell + 1))
        start = _randint(u[..., 3], 0.0, torch.floor(cell - length + 1)) + torch.floor(index * cell)
    else:
        length = _randint(u[..., 2], float(min_size), sides)
        start = _randint(u[..., 3], 0.0, sides - length)
    cand = torch.cat([start, start + length], dim=-1)  # (B, k, tries, 4): x1, y1, x2, y2
    rows = torch.arange(B)
    chosen = [cand[:, 0, 0]]
    for j in range(1, k):
        if iou_threshold >= 1.0:
            chosen.append(cand[:, j, 0])
            continue
        ok = box_iou(cand[:, j], torch.stack(chosen, dim=1)).amax(dim=2) < iou_threshold  # (B, tries)
        pick = torch.where(ok.any(dim=1), ok.int().argmax(dim=1), tries - 1)
        chosen.append(cand[rows, j, pick])
    return torch.stack(chosen, dim=1)


def scrl_box_pairs(crops1: torch.Tensor, flips1: torch.Tensor, crops2: torch.Tensor, flips2: torch.Tensor,
                   size: int, k: int, min_size: int, generator: torch.Generator, iou_threshold: float = 0.5,
                   tries: int = 50, grid: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k matched boxes per image in each of two views: (boxes1 (B, k, 4), boxes2 (B, k, 4) float32 in view
    pixels, valid (B,) bool). Boxes are sampled in the intersection measured in the pixels of the view that
    magnifies it least (per axis; the official `scale_wmin`, `scale_hmin`); an image is valid when that
    rounded intersection exceeds `min_size` on both sides (the official skips the others). Boxes are clipped
    to [0, size] (the rounding may overshoot the intersection by half a pixel), as the official `clip_box`."""
    inter = crop_intersection(crops1, crops2)
    scale = torch.minimum(size / crops1[:, 2:].double(), size / crops2[:, 2:].double()).flip(1)  # (B, 2): x, y
    extent = torch.round((inter[:, 2:] - inter[:, :2]).clamp(min=0) * scale)  # (B, 2) in those pixels
    valid = (extent > min_size).all(dim=1)
    extent = torch.where(valid[:, None], extent, torch.full_like(extent, min_size + 1.0))  # any boxes, unused
    boxes = sample_boxes_in(extent[:, 0], extent[:, 1], k, min_size, generator, iou_threshold, tries, grid)
    canvas = inter[:, None, :2].repeat(1, 1, 2) + boxes / scale[:, None, :].repeat(1, 1, 2)
    # the rounded extent may overshoot the intersection by half a pixel: clip to the view (the official clip_box)
    in_view = lambda crops, flips: canvas_to_view(canvas, crops, flips, size).clamp(0, size).float()
    return in_view(crops1, flips1), in_view(crops2, flips2), valid


@register("scrl")
class SCRL(BYOL):
    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None, crop_size: int = 224,
                 min_scale: float = 0.2, num_boxes: int = 10, min_box_size: int = 32, iou_threshold: float = 0.5,
                 box_tries: int = 50, grid_boxes: bool = True, roi_aligned: bool = False, **kwargs):
        if num_boxes < 1 or min_box_size < 1 or box_tries < 1:
            raise ValueError(f"method.num_boxes, method.min_box_size and method.box_tries must be >= 1, got "
                             f"{num_boxes}, {min_box_size}, {box_tries}")
        if min_box_size >= crop_size:
            raise ValueError(f"method.min_box_size ({min_box_size}) must be smaller than method.crop_size "
                             f"({crop_size})")
        super().__init__(backbone=backbone, backbone_kwargs=backbone_kwargs, crop_size=crop_size,
                         min_scale=min_scale, **kwargs)
        check_frame_backbone(self.backbone, "scrl", spatial_map=True)
        self.crop_size, self.num_boxes, self.min_box_size = crop_size, num_boxes, min_box_size
        self.iou_threshold, self.box_tries, self.grid_boxes = iou_threshold, box_tries, grid_boxes
        self.roi_aligned = roi_aligned

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        frames = batch["frame"]  # (B, 1, H, W, 3)
        B, _, H, W, _ = frames.shape
        params = [draw_view_params(r, B, H, W, generator) for r in self.views]
        views = [apply_view_params(frames, p, r)[:, 0] for p, r in zip(params, self.views)]
        b1, b2, valid = scrl_box_pairs(params[0].boxes, params[0].flip, params[1].boxes, params[1].flip,
                                       self.crop_size, self.num_boxes, self.min_box_size, generator,
                                       self.iou_threshold, self.box_tries, self.grid_boxes)
        dev = frames.device
        return {**batch, "views": views, "boxes": [b1.to(dev), b2.to(dev)], "box_valid": valid.to(dev)}

    def pool(self, feats: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """RoIAlign of each (batch index, x1, y1, x2, y2) box in view pixels -> (n, C)."""
        out = roi_align(feats, rois.to(feats.dtype), output_size=1, spatial_scale=1.0 / self.backbone.stride,
                        sampling_ratio=-1, aligned=self.roi_aligned)
        return out.flatten(1)

    def forward(self, batch: dict) -> dict:
        v1, v2 = batch["views"]
        b1, b2 = batch["boxes"]
        valid = batch["box_valid"]
        B = v1.shape[0]
        images = valid.nonzero().flatten()  # the images with a usable intersection
        n_local = images.numel() * self.num_boxes
        count = torch.tensor(float(n_local), device=v1.device)
        n_global = all_reduce_sum(count) if is_distributed() else count
        logs = {"boxes": count, "skipped_images": torch.tensor(float(B - images.numel()))}
        if n_local < 2:  # nothing to pool (or BatchNorm on one box): a zero loss that reaches every parameter
            zero = sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
            return {"loss": zero, **logs}
        idx = images.repeat_interleave(self.num_boxes).to(torch.float32)[:, None]
        rois = torch.cat([torch.cat([idx, b1[images].reshape(-1, 4)], dim=1),
                          torch.cat([idx + B, b2[images].reshape(-1, 4)], dim=1)])  # view 2 follows view 1
        x = torch.cat([v1, v2])
        p = self.predictor(self.projector(self.pool(self.backbone.forward_dense(x), rois)))
        with torch.no_grad():
            z = self.target_projector(self.pool(self.target_backbone.forward_dense(x), rois))
        p1, p2 = p.chunk(2)
        z1, z2 = z.chunk(2)
        loss = byol_loss(p1, z2) + byol_loss(p2, z1)  # mean over this process's boxes
        if is_distributed():  # -> the mean over the global batch's boxes once DDP averages the gradients
            loss = loss * (n_local * get_world_size() / n_global)
        return {"loss": loss, "z_std": embedding_std(z), **logs}
