"""Batched multi-view augmentation on the training device (the SimCLR/BYOL family of image views).

One implementation, `augment_clip_views`, augments uint8 clips (N, T, H, W, 3) with one random draw per clip,
applied identically to its T frames (temporally consistent views, as the rho-clip recipes of SlowFast's
projects/contrastive_ssl: each clip its own augmentation, the same over its frames); `augment_views` is the
T = 1 case for single images. Every random number is drawn on the CPU from the `torch.Generator` passed in
(`draw_view_params`), then moved to the data's device, so a resumed run replays exactly and nothing reads the
device back: which samples an op touches is known on the host, so each op runs on that subset only (gathered
and scattered with index_select / index_copy_) and never on the whole batch behind a mask.

Pipeline, on float values in [0, 1] (torchvision's order, as solo-learn and lightly compose it):
random resized crop (`sample_rrc_boxes` + one `roi_align` call) -> horizontal flip -> colour jitter (with
probability `jitter_p`) -> grayscale -> Gaussian blur -> solarize -> normalise with mean/std.

Colour jitter follows torchvision's ColorJitter semantics, through kornia's batched functional ops with one
factor per sample (kornia's plain `adjust_brightness/contrast/saturation` use other conventions, see below):

- brightness: image * f, f ~ U(max(0, 1 - b), 1 + b), clamped to [0, 1]
  (kornia `adjust_brightness_accumulative`; kornia's `adjust_brightness` *adds* f);
- contrast: f * image + (1 - f) * mean(grayscale(image)), f ~ U(max(0, 1 - c), 1 + c), clamped
  (kornia `adjust_contrast_with_mean_subtraction`; kornia's `adjust_contrast` only multiplies);
- saturation: f * image + (1 - f) * grayscale(image), f ~ U(max(0, 1 - s), 1 + s), clamped
  (kornia `adjust_saturation_with_gray_subtraction`; kornia's `adjust_saturation` scales HSV saturation,
  whose zero is max(R, G, B), not the luma);
- hue: shift of the HSV hue by f turns, f ~ U(-h, h) (torchvision's unit, in [-0.5, 0.5]); kornia's
  `adjust_hue` takes radians, so it gets 2 pi f.

The four ops run in one random order per call (per batch), drawn from the generator; torchvision's
ColorJitter (and so solo-learn/lightly) draws the order per image, as does the official BYOL code.
The luma inside kornia's contrast/saturation uses BT.601 weights (0.299, 0.587, 0.114); torchvision and
`to_grayscale` here use (0.2989, 0.587, 0.114): a difference below 1e-4 on [0, 1] values.

Random fields (Mansfield, Afkanpour, Morningstar, Singhal, "Random Field Augmentations for Self-Supervised
Representation Learning", arXiv 2311.03629, NeurIPS 2023 workshop; no official code): local transformations
whose parameters vary smoothly from pixel to pixel, each an independent Gaussian random field (GRF). Off by
default (`field_p` = `color_field_p` = 0: recipes without them draw and compute exactly as before). With
probability `field_p` a clip is warped by a smooth random displacement (`random_field_warp`: per-pixel
translation = `field_amplitude` x a unit GRF per axis, right after the crop); with probability `color_field_p`
its brightness, saturation and hue vary per pixel (`random_field_color`, after colour jitter): factors
1 + a_b g_b, 1 + a_s g_s and a hue shift a_h g_h turns, (a_b, a_s, a_h) = `color_field_strength`. The GRF
(`gaussian_random_field`) is white noise filtered by a Gaussian (an exactly stationary, unit-variance field with
squared-exponential correlation exp(-d^2 / (2 l^2)) at distance d for length scale l = `field_scale` x side).
The paper's spatial family also has local rotation and scale fields (`field_rotation`, `field_log_scale`: each
pixel's position about the centre rotated / zoomed by its own smooth amount) and shear, and its strengths and
length scales are its own parametrisation; vidssl implements translation, rotation, scale (no shear) and the
hue/saturation/brightness forms, and every field is the same for all frames of a clip. The noise comes from a
seed drawn from the step's generator
and regenerated on the data's device (exact resume on the same device type).

Differences from the official BYOL code (deepmind-research byol/utils/augmentations.py, TF conventions), kept
on purpose because solo-learn, lightly and most PyTorch reproductions use torchvision's: there brightness adds
a delta ~ U(-0.4, 0.4), contrast blends each channel with its own mean, saturation scales HSV saturation, and
the blur pads with zeros ('SAME'); here the blur pads by reflection (torchvision's GaussianBlur, kornia's
default). Crops are bilinear (roi_align, aligned=True) with roi_align's adaptive sampling grid: several
bilinear samples per output pixel when the crop shrinks (a box prefilter, close to an antialiased resize),
plain bilinear interpolation when it enlarges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch
from torchvision.ops import roi_align

from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, sample_rrc_boxes

__all__ = ["ViewRecipe", "ViewParams", "BYOL_VIEWS", "SIMCLR_VIEW", "mocov2_view", "augment_views", "augment_clip_views",
           "draw_view_params",
           "apply_view_params", "blur_kernel_size", "adjust_brightness", "adjust_contrast", "adjust_saturation",
           "adjust_hue", "to_grayscale", "gaussian_blur", "solarize", "gaussian_random_field", "random_field_warp",
           "random_field_color"]

# torchvision's rgb_to_grayscale and the official BYOL code (ITU-R 601-2 luma, as TF rounds it).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class ViewRecipe:
    """One view's augmentation. Probabilities are per sample (per clip for clips); `size` is the output side;
    the blur kernel follows from it (`blur_kernel_size`)."""
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    field_p: float = 0.0  # random-field warp (Mansfield et al. 2023): probability per clip
    field_scale: float = 0.1  # its GRF length scale, a fraction of `size`
    field_amplitude: float = 0.02  # std of the per-pixel displacement, a fraction of `size`
    field_rotation: float = 0.0  # std of the per-pixel rotation about the centre, radians (0 = no rotation field)
    field_log_scale: float = 0.0  # std of the per-pixel log zoom about the centre (0 = no scale field)
    color_field_p: float = 0.0  # random-field brightness / saturation / hue: probability per clip
    color_field_scale: float = 0.1  # their GRF length scale, a fraction of `size`
    color_field_strength: tuple[float, float, float] = (0.2, 0.2, 0.05)  # std of the factors / hue shift (turns)


# BYOL's asymmetric pair: Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, Appendix B (Image
# augmentations), Table 6: crop 224 px with scale 0.08-1, flip 0.5, colour jitter 0.8 with brightness 0.4,
# contrast 0.4, saturation 0.2, hue 0.1, grayscale 0.2, blur 1.0 / 0.1 (sigma 0.1-2.0, kernel 10% of the side),
# solarize 0.0 / 0.2. Checked against the official augment_config (deepmind-research byol/utils/augmentations.py)
# and solo-learn's scripts/pretrain/imagenet/augmentations/asymmetric.yaml, which agree.
BYOL_VIEWS = (
    ViewRecipe(size=224, blur_p=1.0, solarize_p=0.0),
    ViewRecipe(size=224, blur_p=0.1, solarize_p=0.2),
)
# SimCLR's (google-research/simclr data_util.py, colour strength 1.0), the same recipe for both views
SIMCLR_VIEW = ViewRecipe(size=224, scale=(0.08, 1.0), brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2,
                         jitter_p=0.8, grayscale_p=0.2, blur_p=0.5, solarize_p=0.0)


def mocov2_view(size: int = 224, min_scale: float = 0.2) -> ViewRecipe:
    """MoCo v2's augmentation (facebookresearch/moco main_moco.py `--aug-plus`; also DenseCL's and SimSiam's):
    crop 0.2-1, jitter 0.4/0.4/0.4/0.1 with p 0.8, grayscale 0.2, blur p 0.5, no solarisation."""
    return ViewRecipe(size=size, scale=(min_scale, 1.0), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                      jitter_p=0.8, grayscale_p=0.2, blur_p=0.5, solarize_p=0.0)


def blur_kernel_size(size: int) -> int:
    """The official BYOL kernel: side / 10, made odd as 2 * int(side / 20) + 1 (23 px at 224, 11 at 112)."""
    return 2 * int(size / 20) + 1


# --- single ops on float (B, 3, H, W) in [0, 1], one factor per sample ------------------------------------------

def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_brightness: x * factor, clamped to [0, 1]."""
    return kornia.enhance.adjust_brightness_accumulative(x, factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_contrast: blend with the mean of the image's grayscale, clamped."""
    return kornia.enhance.adjust_contrast_with_mean_subtraction(x, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_saturation: blend with the grayscale image, clamped."""
    return kornia.enhance.adjust_saturation_with_gray_subtraction(x, factor)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue: HSV hue shifted by `factor` turns (in [-0.5, 0.5])."""
    return kornia.enhance.adjust_hue(x, factor * (2 * math.pi))


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """torchvision's rgb_to_grayscale(x, 3): the luma in all three channels."""
    r, g, b = x.unbind(dim=-3)
    luma = GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b
    return luma.unsqueeze(-3).expand_as(x)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample (CPU tensor (B,)), reflection padding."""
    return kornia.filters.gaussian_blur2d(x, kernel_size, sigma[:, None].expand(-1, 2), border_type="reflect")


def solarize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Values >= threshold become 1 - value (torchvision's solarize, the official BYOL rule)."""
    return torch.where(x >= threshold, 1.0 - x, x)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


# --- Gaussian random fields (Mansfield et al. 2023) ----------------------------------------------------------------

def gaussian_random_field(n: int, h: int, w: int, length_scale: float,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """n independent stationary GRFs (n, h, w) of zero mean and unit variance whose correlation at distance d
    (pixels) is exp(-d^2 / (2 length_scale^2)): white noise on a canvas larger by 3 kernel sigmas on each side,
    filtered by a normalised Gaussian of sigma length_scale / sqrt(2) ('valid', so no border effect), divided by
    the kernel's L2 norm. length_scale <= 0 gives white noise. Drawn on `generator`'s device from it."""
    device = generator.device if generator is not None else torch.device("cpu")
    sigma = length_scale / math.sqrt(2.0)
    r = math.ceil(3 * sigma) if sigma > 0 else 0
    noise = torch.randn(n, 1, h + 2 * r, w + 2 * r, generator=generator, device=device)
    if r == 0:
        return noise[:, 0]
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    field = torch.nn.functional.conv2d(noise, k.view(1, 1, 1, -1))
    field = torch.nn.functional.conv2d(field, k.view(1, 1, -1, 1))
    return field[:, 0] / k.square().sum()  # the 2D kernel's L2 norm is |k|^2: unit variance


def random_field_warp(images: torch.Tensor, field: torch.Tensor, amplitude, rotation: float = 0.0,
                      log_scale: float = 0.0) -> torch.Tensor:
    """Warp images (N, C, H, W) by a smooth field, bilinear, reflected at the borders. `field` (N, 2, H, W) holds
    unit GRFs for the x and y translation, times `amplitude` (pixels; a float or one per image): out[y, x] =
    images[y + a f_y(y, x), x + a f_x(y, x)]. With `rotation` / `log_scale` (the paper's local rotation and scale
    fields) `field` has two more channels: each pixel's position about the image centre is also rotated by
    rotation * f_r radians and scaled by exp(log_scale * f_s). All zero is the identity; constant fields are a
    global translation, rotation, zoom."""
    N, _, H, W = images.shape
    a = torch.as_tensor(amplitude, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    f = field.to(images.dtype)
    ys = torch.arange(H, dtype=images.dtype, device=images.device).view(1, H, 1)
    xs = torch.arange(W, dtype=images.dtype, device=images.device).view(1, 1, W)
    px, py = xs + f[:, 0] * a, ys + f[:, 1] * a  # source positions, pixels
    if rotation or log_scale:
        if f.shape[1] < 4:
            raise ValueError("random_field_warp: rotation / scale fields need a (N, 4, H, W) field")
        theta, zoom = f[:, 2] * rotation, torch.exp(f[:, 3] * log_scale)
        cx, cy = (W - 1) / 2, (H - 1) / 2
        dx, dy = xs - cx, ys - cy
        cos, sin = torch.cos(theta), torch.sin(theta)
        px = px + zoom * (cos * dx - sin * dy) - dx
        py = py + zoom * (sin * dx + cos * dy) - dy
    grid = torch.stack([((px + 0.5) * (2.0 / W) - 1.0).expand(N, H, W),  # pixel centres, align_corners=False
                        ((py + 0.5) * (2.0 / H) - 1.0).expand(N, H, W)], dim=-1)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                                           align_corners=False)


def random_field_color(x: torch.Tensor, fields: torch.Tensor, strength) -> torch.Tensor:
    """Per-pixel colour jitter on float RGB (N, 3, H, W) in [0, 1] from unit GRFs (N, 3, H, W): brightness
    x * (1 + a_b g_b), saturation blend with the luma by 1 + a_s g_s (both clamped to [0, 1], torchvision's
    conventions pixel by pixel), hue shifted by a_h g_h turns; (a_b, a_s, a_h) = strength."""
    a_b, a_s, a_h = strength
    if a_b:
        x = (x * (1 + a_b * fields[:, 0:1])).clamp(0, 1)
    if a_s:
        f = 1 + a_s * fields[:, 1:2]
        x = (f * x + (1 - f) * to_grayscale(x)).clamp(0, 1)
    if a_h:
        hsv = kornia.color.rgb_to_hsv(x)
        hue = torch.remainder(hsv[:, 0:1] + a_h * fields[:, 2:3] * (2 * math.pi), 2 * math.pi)
        x = kornia.color.hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1))
    return x


# --- random parameters -----------------------------------------------------------------------------------------

@dataclass
class ViewParams:
    """One draw for n samples, all on the CPU. boxes (n, 4) int64 (top, left, h, w); masks (n,) bool;
    factors (n, 4): brightness, contrast, saturation, hue; sigma (n,); order (4,) indexes `factors`' columns."""
    boxes: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor
    gray: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    solarize: torch.Tensor
    field: torch.Tensor | None = None  # (n,) bool: random-field warp; None when the recipe has it off
    color_field: torch.Tensor | None = None  # (n,) bool: random-field colour
    field_seed: int | None = None  # regenerates the fields' noise on the data's device



def _uniform(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * u


def draw_view_params(recipe: ViewRecipe, n: int, height: int, width: int,
                     generator: torch.Generator | None) -> ViewParams:
    """Draw everything for n samples from `generator` (CPU). The same numbers are consumed whatever the
    probabilities, so changing one probability does not shift the other draws."""
    boxes = sample_rrc_boxes(height, width, n, recipe.scale, recipe.ratio, generator)
    u = torch.rand(n, 10, generator=generator)
    order = torch.randperm(4, generator=generator)
    b, c, s, h = recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue
    factors = torch.stack([_uniform(u[:, 2], max(0.0, 1 - b), 1 + b), _uniform(u[:, 3], max(0.0, 1 - c), 1 + c),
                           _uniform(u[:, 4], max(0.0, 1 - s), 1 + s), _uniform(u[:, 5], -h, h)], dim=1)
    params = ViewParams(boxes=boxes, flip=u[:, 0] < recipe.flip_p, jitter=u[:, 1] < recipe.jitter_p,
                        factors=factors, order=order, gray=u[:, 6] < recipe.grayscale_p, blur=u[:, 7] < recipe.blur_p,
                        sigma=_uniform(u[:, 8], *recipe.blur_sigma), solarize=u[:, 9] < recipe.solarize_p)
    if recipe.field_p > 0 or recipe.color_field_p > 0:  # drawn only then: recipes without fields are unchanged
        v = torch.rand(n, 2, generator=generator)
        params.field, params.color_field = v[:, 0] < recipe.field_p, v[:, 1] < recipe.color_field_p
        params.field_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return params


# --- application -----------------------------------------------------------------------------------------------

def _apply_to(x: torch.Tensor, mask: torch.Tensor, T: int, fn) -> torch.Tensor:
    """Run fn(frames, clip_idx) on the frames of the clips where the CPU `mask` (N,) is set, in place.
    `clip_idx` (CPU, one per selected frame) picks each frame's parameters."""
    clips = mask.nonzero().flatten()
    if clips.numel() == 0:
        return x
    if clips.numel() == mask.numel():
        return fn(x, torch.arange(mask.numel()).repeat_interleave(T))
    frames = (clips[:, None] * T + torch.arange(T)).flatten()
    frames_dev = frames.to(x.device)
    out = fn(x.index_select(0, frames_dev), clips.repeat_interleave(T))
    return x.index_copy_(0, frames_dev, out)


def apply_view_params(clips: torch.Tensor, params: ViewParams, recipe: ViewRecipe) -> torch.Tensor:
    """uint8 (N, T, H, W, 3) + one draw per clip -> float (N, T, 3, size, size), normalised."""
    N, T, H, W, _ = clips.shape
    dev, size = clips.device, recipe.size
    x = clips.reshape(N * T, H, W, 3).permute(0, 3, 1, 2).float().div_(255.0)

    # random resized crop: one roi_align call, box (x1, y1, x2, y2) in pixel edges (aligned=True)
    top, left, h, w = params.boxes.repeat_interleave(T, dim=0).unbind(1)
    rois = torch.stack([torch.arange(N * T), left, top, left + w, top + h], dim=1).float()
    x = roi_align(x, rois.to(dev), output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)

    field_gen = None if params.field_seed is None else torch.Generator(device=dev).manual_seed(params.field_seed)

    def fields(i: torch.Tensor, count: int, scale: float) -> torch.Tensor:
        """`count` unit GRFs per selected clip, the same for its T frames (i: clip of each frame)."""
        g = gaussian_random_field(len(i) // T * count, size, size, scale * size, field_gen)
        return g.view(-1, count, size, size).repeat_interleave(T, dim=0)

    affine = recipe.field_rotation > 0 or recipe.field_log_scale > 0
    if params.field is not None and (recipe.field_amplitude > 0 or affine):
        x = _apply_to(x, params.field, T, lambda v, i: random_field_warp(
            v, fields(i, 4 if affine else 2, recipe.field_scale), recipe.field_amplitude * size,
            recipe.field_rotation, recipe.field_log_scale))
    x = _apply_to(x, params.flip, T, lambda v, i: v.flip(-1))

    ops = [(_JITTER_OPS[k], k) for k in params.order.tolist()
           if (recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue)[k] > 0]

    def jitter(v, i):
        f = params.factors[i].to(dev)
        for op, k in ops:
            v = op(v, f[:, k])
        return v

    if ops:
        x = _apply_to(x, params.jitter, T, jitter)
    if params.color_field is not None and any(recipe.color_field_strength):
        x = _apply_to(x, params.color_field, T, lambda v, i: random_field_color(
            v, fields(i, 3, recipe.color_field_scale), recipe.color_field_strength))
    x = _apply_to(x, params.gray, T, lambda v, i: to_grayscale(v).contiguous())
    k = blur_kernel_size(size)
    if k > 1:
        x = _apply_to(x, params.blur, T, lambda v, i: gaussian_blur(v, params.sigma[i], k))
    x = _apply_to(x, params.solarize, T, lambda v, i: solarize(v))

    mean = torch.tensor(recipe.mean, dtype=x.dtype).view(3, 1, 1).to(dev)
    std = torch.tensor(recipe.std, dtype=x.dtype).view(3, 1, 1).to(dev)
    return ((x - mean) / std).view(N, T, 3, size, size)


def augment_clip_views(clips: torch.Tensor, recipe: ViewRecipe, generator: torch.Generator | None) -> torch.Tensor:
    """uint8 clips (N, T, H, W, 3) on any device -> float (N, T, 3, size, size), normalised; one augmentation
    per clip, identical for all its frames; random numbers from the CPU `generator`."""
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"expected uint8 clips (N, T, H, W, 3), got {tuple(clips.shape)}")
    N, _, H, W, _ = clips.shape
    return apply_view_params(clips, draw_view_params(recipe, N, H, W, generator), recipe)


def augment_views(images: torch.Tensor, recipe: ViewRecipe, generator: torch.Generator | None) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> float (N, 3, size, size), normalised: `augment_clip_views` with T = 1."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {tuple(images.shape)}")
    return augment_clip_views(images[:, None], recipe, generator)[:, 0]
