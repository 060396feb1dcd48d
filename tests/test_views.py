import dataclasses

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from vidssl.data.views import (
    BYOL_VIEWS,
    ViewRecipe,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    augment_clip_views,
    augment_views,
    blur_kernel_size,
    draw_view_params,
    gaussian_blur,
    solarize,
    to_grayscale,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# every random op off, crop = the whole (centred square of the) frame
PLAIN = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
             solarize_p=0.0)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=4, h=32, w=32, seed=0):
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=gen(seed))


def unnormalize(y, mean=MEAN, std=STD):
    return y * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)


def as_float(x):
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return x.permute(0, 3, 1, 2).float() / 255


def test_byol_recipes():
    v1, v2 = BYOL_VIEWS
    assert v1.size == v2.size == 224 and v1.scale == v2.scale == (0.08, 1.0)
    assert (v1.blur_p, v1.solarize_p, v2.blur_p, v2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    for v in BYOL_VIEWS:
        assert (v.flip_p, v.jitter_p, v.grayscale_p) == (0.5, 0.8, 0.2)
        assert (v.brightness, v.contrast, v.saturation, v.hue, v.blur_sigma) == (0.4, 0.4, 0.2, 0.1, (0.1, 2.0))
    assert blur_kernel_size(224) == 23 and blur_kernel_size(112) == 11 and blur_kernel_size(96) == 9


def test_shapes_dtype_and_range():
    x = images(5, 40, 48)
    y = augment_views(x, dataclasses.replace(BYOL_VIEWS[1], size=24, solarize_p=0.5), gen())
    assert y.shape == (5, 3, 24, 24) and y.dtype == torch.float32
    v = unnormalize(y)
    assert v.min() >= -1e-5 and v.max() <= 1 + 1e-5 and v.std() > 0.05
    c = augment_clip_views(torch.stack([x, x], 1), dataclasses.replace(BYOL_VIEWS[0], size=16), gen())
    assert c.shape == (5, 2, 3, 16, 16) and c.dtype == torch.float32


def test_identity_recipe_is_normalised_input():
    x = images(3, 32, 32)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    y = augment_views(x, ViewRecipe(size=32, mean=mean, std=std, **PLAIN), gen())
    torch.testing.assert_close(unnormalize(y, mean, std), as_float(x), atol=1e-5, rtol=0)


def test_same_seed_same_views_other_seed_other_views():
    x = images(4, 40, 40)
    r = dataclasses.replace(BYOL_VIEWS[0], size=24)
    a, b, c = (augment_views(x, r, gen(s)) for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)


def test_augment_views_is_clip_views_with_one_frame():
    x = images(4, 40, 40)
    r = dataclasses.replace(BYOL_VIEWS[1], size=24)
    assert torch.equal(augment_views(x, r, gen(3)), augment_clip_views(x[:, None], r, gen(3))[:, 0])


@pytest.mark.parametrize("flip_p", [1.0, 0.0])
def test_flip_only(flip_p):
    x = images(3, 32, 48)  # non-square: the (1, 1) crop is the centred 32 x 32 square
    square = as_float(x)[..., 8:40]
    y = unnormalize(augment_views(x, ViewRecipe(size=32, **{**PLAIN, "flip_p": flip_p}), gen()))
    expected = square.flip(-1) if flip_p else square
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)


def test_resize_is_bilinear_up_and_box_filtered_down():
    x = images(2, 16, 16)
    up = unnormalize(augment_views(x, ViewRecipe(size=40, **PLAIN), gen()))
    torch.testing.assert_close(up, F.interpolate(as_float(x), size=40, mode="bilinear", align_corners=False),
                               atol=1e-5, rtol=0)
    # shrinking by 4: roi_align's adaptive grid takes 4 x 4 bilinear samples per output pixel, at pixel centres
    down = unnormalize(augment_views(x, ViewRecipe(size=4, **PLAIN), gen()))
    torch.testing.assert_close(down, F.avg_pool2d(as_float(x), 4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("op, ref, factors, atol", [
    (adjust_brightness, TF.adjust_brightness, [0.6, 1.4], 1e-6),
    (adjust_contrast, TF.adjust_contrast, [0.6, 1.4], 1e-4),  # kornia's luma weights 0.299 vs 0.2989
    (adjust_saturation, TF.adjust_saturation, [0.8, 1.2], 1e-4),
    (adjust_hue, TF.adjust_hue, [-0.1, 0.07], 1e-4),
])
def test_colour_ops_match_torchvision(op, ref, factors, atol):
    img = torch.rand(2, 3, 12, 12, generator=gen(1))
    out = op(img, torch.tensor(factors))
    for i, f in enumerate(factors):  # one factor per sample
        torch.testing.assert_close(out[i], ref(img[i], f), atol=atol, rtol=0)
    assert not torch.allclose(out, img, atol=1e-3)


def test_grayscale_and_solarize():
    img = torch.rand(2, 3, 12, 12, generator=gen(1))
    assert torch.equal(to_grayscale(img), TF.rgb_to_grayscale(img, num_output_channels=3))
    torch.testing.assert_close(solarize(img), torch.where(img >= 0.5, 1 - img, img), atol=0, rtol=0)
    assert torch.equal(solarize(img), TF.solarize(img, 0.5))


def test_blur_matches_torchvision_per_sample_sigma():
    img = torch.rand(2, 3, 20, 20, generator=gen(1))
    sigma = torch.tensor([0.3, 1.7])
    out = gaussian_blur(img, sigma, 7)
    for i in range(2):
        torch.testing.assert_close(out[i], TF.gaussian_blur(img[i], [7, 7], [float(sigma[i])] * 2),
                                   atol=1e-5, rtol=0)


def test_pipeline_applies_drawn_factors_per_sample():
    """Only brightness, always: each sample is the resized input times its own drawn factor."""
    x = images(6, 32, 32)
    r = ViewRecipe(size=32, **{**PLAIN, "jitter_p": 1.0}, contrast=0.0, saturation=0.0, hue=0.0)
    f = draw_view_params(r, 6, 32, 32, gen(5)).factors[:, 0]
    assert f.min() >= 0.6 and f.max() <= 1.4 and f.std() > 0.05
    y = unnormalize(augment_views(x, r, gen(5)))
    expected = (as_float(x) * f.view(6, 1, 1, 1)).clamp(0, 1)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=0)


def test_grayscale_and_solarize_in_pipeline():
    x = images(3, 32, 32)
    gray = unnormalize(augment_views(x, ViewRecipe(size=32, **{**PLAIN, "grayscale_p": 1.0}), gen()))
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(as_float(x), 3), atol=1e-5, rtol=0)
    sol = unnormalize(augment_views(x, ViewRecipe(size=32, **{**PLAIN, "solarize_p": 1.0}), gen()))
    ref = as_float(x)
    torch.testing.assert_close(sol, torch.where(ref >= 0.5, 1 - ref, ref), atol=1e-5, rtol=0)


def test_bernoulli_rates_and_ranges():
    n = 4000
    p1, p2 = (draw_view_params(v, n, 256, 256, gen(0)) for v in BYOL_VIEWS)
    for p, blur, sol in ((p1, 1.0, 0.0), (p2, 0.1, 0.2)):
        for mask, rate in ((p.flip, 0.5), (p.jitter, 0.8), (p.gray, 0.2), (p.blur, blur), (p.solarize, sol)):
            assert abs(mask.float().mean().item() - rate) < 0.03
        lo = torch.tensor([0.6, 0.6, 0.8, -0.1])
        assert (p.factors >= lo).all() and (p.factors <= -lo + torch.tensor([2, 2, 2, 0])).all()
        assert p.sigma.min() >= 0.1 and p.sigma.max() <= 2.0
        assert sorted(p.order.tolist()) == [0, 1, 2, 3]


def test_clip_views_consistent_over_frames_and_different_across_clips():
    frame = images(1, 40, 40)[0]
    clips = frame.expand(6, 4, 40, 40, 3).clone()  # 6 clips of 4 identical frames, all clips equal
    clips[:, 2] = images(1, 40, 40, seed=9)[0]  # one different frame in each clip
    # every op on (all clips) and on part of the clips (the per-clip parameters go to the right frames)
    for p in (1.0, 0.5):
        r = ViewRecipe(size=24, scale=(0.2, 0.6), flip_p=p, jitter_p=p, grayscale_p=0.0, blur_p=p, solarize_p=0.0)
        params = draw_view_params(r, 6, 40, 40, gen(2))
        assert p == 1.0 or 0 < params.jitter.sum() < 6 and 0 < params.blur.sum() < 6
        y = augment_clip_views(clips, r, gen(2))
        assert y.shape == (6, 4, 3, 24, 24)
        for t in (1, 3):
            torch.testing.assert_close(y[:, t], y[:, 0], atol=1e-6, rtol=0)
        assert not torch.allclose(y[:, 2], y[:, 0], atol=1e-2)
        for a in range(6):
            for b in range(a):
                assert not torch.allclose(y[a], y[b], atol=1e-2)


def test_keeps_the_input_device():
    x = images(2, 32, 32).to("meta")
    y = augment_views(x, dataclasses.replace(BYOL_VIEWS[1], size=16, blur_p=0.5, solarize_p=0.5), gen())
    assert y.device.type == "meta" and y.shape == (2, 3, 16, 16)
    c = augment_clip_views(x[:, None].expand(2, 3, 32, 32, 3), dataclasses.replace(BYOL_VIEWS[0], size=16), gen())
    assert c.device.type == "meta" and c.shape == (2, 3, 3, 16, 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    x = images(4, 40, 40)
    r = dataclasses.replace(BYOL_VIEWS[1], size=24, blur_p=0.5, solarize_p=0.5)
    y = augment_views(x.cuda(), r, gen(4))
    assert y.is_cuda
    torch.testing.assert_close(y.cpu(), augment_views(x, r, gen(4)), atol=1e-4, rtol=0)
