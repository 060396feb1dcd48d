"""The geometric pieces of TimeCycle (Wang, Jabri & Efros, "Learning Correspondence from the Cycle-Consistency of
Time", CVPR 2019; official code xiaolonw/TimeCycle: geotnf/transformation.py, geotnf/loss.py,
models/videos/model_simple.py), as pure functions.

Conventions of the reference (written for PyTorch 0.4, whose `affine_grid`/`grid_sample` behaved as
`align_corners=True`, so every grid here is sampled with align_corners=True):

- a transform `theta` (N, 2, 3) maps output grid points (x, y) in [-1, 1]^2 (x along the width) to input points
  A (x, y) + t; the localizer predicts (tx, ty, angle) and the scale is fixed (`fixed_scale_theta`);
- when features are cropped (`affine_grid(..., offset_factor=227/210)`) the translation is multiplied by the
  reference's `offset_factor` 227/210 (its GeometricTnfAffine divides the base grid by the factor and multiplies
  the transformed grid by it, which leaves A unchanged and scales t); image patches and the grid loss use none;
- an affinity's channels index the base positions column-major (channel k = x * H + y: the reference transposes
  the base map "for the inlier counter"), its spatial dims are the query positions (row-major).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["OFFSET_FACTOR", "fixed_scale_theta", "affine_grid", "warp", "affinity", "grid_loss",
           "soft_inlier_score"]

OFFSET_FACTOR = 227 / 210  # the reference's feature-crop translation factor (GeometricTnfAffine, WeakInlierCountPool)


def fixed_scale_theta(params: torch.Tensor, scale: float) -> torch.Tensor:
    """Localizer output (N, 3) = (tx, ty, angle in radians) -> theta (N, 2, 3) =
    [[s cos a, -s sin a, tx], [s sin a, s cos a, ty]] with the fixed scale s (the reference's 1/3 = 80 px patch /
    240 px frame; model_simple.py `transform_trans_out`)."""
    tx, ty, a = params.float().unbind(-1)
    c, s = scale * torch.cos(a), scale * torch.sin(a)
    return torch.stack([torch.stack([c, -s, tx], -1), torch.stack([s, c, ty], -1)], -2)


def affine_grid(theta: torch.Tensor, out_h: int, out_w: int, offset_factor: float = 1.0) -> torch.Tensor:
    """Sampling grid (N, out_h, out_w, 2) of `theta` (N, 2, 3) over a base grid of linspace(-1, 1) points
    (align_corners=True), translation multiplied by `offset_factor` (see the module doc)."""
    theta = theta.float()
    ys = torch.linspace(-1.0, 1.0, out_h, device=theta.device)
    xs = torch.linspace(-1.0, 1.0, out_w, device=theta.device)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (h, w, 2): (x, y)
    A, t = theta[:, :, :2], theta[:, :, 2] * offset_factor
    return torch.einsum("hwj,nij->nhwi", base, A) + t[:, None, None, :]


def warp(x: torch.Tensor, theta: torch.Tensor, out_h: int, out_w: int, offset_factor: float = 1.0) -> torch.Tensor:
    """Bilinear crop of maps x (N, C, H, W) along theta (N, 2, 3) to (N, C, out_h, out_w); zeros outside."""
    grid = affine_grid(theta, out_h, out_w, offset_factor).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def affinity(query: torch.Tensor, base: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax over the base positions of <query, base> / temperature, for L2-normalised query maps
    (N, C, h, w) and base maps (N, C, H, W): (N, H*W, h, w) in float32, channel k = base position
    (y = k % H, x = k // H) (model_simple.py `compute_corr_softmax`; temperature 512^-0.5 there)."""
    N, C, H, W = base.shape
    h, w = query.shape[-2:]
    b = base.float().transpose(2, 3).reshape(N, C, W * H)  # column-major base positions
    logits = torch.einsum("nck,ncq->nkq", b, query.float().reshape(N, C, h * w)) / temperature
    return logits.softmax(dim=1).view(N, W * H, h, w)


def grid_loss(theta: torch.Tensor, theta_gt: torch.Tensor, grid_size: int = 20) -> torch.Tensor:
    """Mean over samples and a grid_size x grid_size grid of points in [-1, 1]^2 of the squared distance between
    the points moved by theta and by theta_gt (N, 2, 3) (geotnf/loss.py TransformedGridLoss); float32 scalar."""
    axis = torch.linspace(-1.0, 1.0, grid_size, device=theta.device)
    pts = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), 0).reshape(2, -1)  # (2, P): rows x, y
    d = theta.float() - theta_gt.float()
    moved = d[:, :, :2] @ pts + d[:, :, 2:]  # (N, 2, P): difference of the two transformed grids
    return moved.pow(2).sum(1).mean()


def soft_inlier_score(matches: torch.Tensor, theta: torch.Tensor, base_hw: tuple[int, int],
                      offset_factor: float = OFFSET_FACTOR, eps: float = 1e-5) -> torch.Tensor:
    """The reference's normalised weak inlier count (geotnf/loss.py WeakInlierCountPool with
    normalize_inlier_count=True, no dilation): for each query position q the affinity `matches` (N, H*W, h, w)
    (channels as `affinity`) is read bilinearly at the base point where theta puts q (grid of `affine_grid`
    with `offset_factor`, align_corners=True, zero outside), summed over q and divided by the sum over q of the
    bilinear weights that fall inside the base map plus eps * H*W * h*w. Equals the reference's product of the
    warped identity mask with the matches; differentiable in theta and matches. Returns (N,) float32; the
    training loss is -mean."""
    H, W = base_hw
    N, K, h, w = matches.shape
    if K != H * W:
        raise ValueError(f"matches have {K} channels, expected H*W = {H * W} base positions")
    maps = matches.float().view(N, W, H, h * w).permute(0, 3, 2, 1).reshape(N * h * w, 1, H, W)  # (y, x) maps
    grid = affine_grid(theta, h, w, offset_factor).reshape(N * h * w, 1, 1, 2)
    picked = F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=True).view(N, h * w)
    ones = torch.ones(1, 1, H, W, device=maps.device).expand(N * h * w, 1, H, W)
    inside = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=True).view(N, h * w)
    return picked.sum(1) / (inside.sum(1) + eps * K * h * w)

