"""Gaussian random field augmentation (Mansfield et al. 2023) in vidssl/data/views.py."""
import dataclasses
import math

import numpy as np
import torch

from vidssl.data.views import (
    ViewRecipe,
    apply_view_params,
    augment_clip_views,
    draw_view_params,
    gaussian_random_field,
    random_field_color,
    random_field_warp,
)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_field_is_reproducible_unit_variance_and_correlation_falls_as_the_length_scale_says():
    a = gaussian_random_field(64, 48, 48, 4.0, gen(0))
    assert a.shape == (64, 48, 48)
    assert torch.equal(a, gaussian_random_field(64, 48, 48, 4.0, gen(0)))
    assert not torch.equal(a, gaussian_random_field(64, 48, 48, 4.0, gen(1)))
    f = a.double().numpy()
    assert abs(f.mean()) < 0.05 and abs(f.var() - 1) < 0.1
    for d in (0, 2, 4, 8):  # empirical correlation at horizontal / vertical lag d vs exp(-d^2 / (2 l^2))
        c = 0.5 * (np.mean(f[:, :, :48 - d] * f[:, :, d:]) + np.mean(f[:, :48 - d] * f[:, d:])) / f.var()
        assert abs(c - math.exp(-d * d / 32.0)) < 0.06, (d, c)
    white = gaussian_random_field(8, 16, 16, 0.0, gen(0))  # no smoothing
    assert abs(np.mean(white[:, :, 1:].numpy() * white[:, :, :-1].numpy())) < 0.1


def test_zero_amplitude_is_identity_and_a_constant_field_is_a_translation():
    x = torch.rand(2, 3, 12, 16)
    field = gaussian_random_field(2 * 2, 12, 16, 3.0, gen(0)).view(2, 2, 12, 16)
    assert torch.allclose(random_field_warp(x, field, 0.0), x, atol=1e-6)
    shift = torch.zeros(2, 2, 12, 16)
    shift[:, 0], shift[:, 1] = 1.0, -1.0  # x + 2 px, y - 2 px with amplitude 2
    y = random_field_warp(x, shift, 2.0)
    assert torch.allclose(y[:, :, 2:, :-2], x[:, :, :-2, 2:], atol=1e-5)
    half = random_field_warp(x, shift, torch.tensor([0.5, 0.5]))  # half a pixel: the mean of two neighbours
    expect = 0.25 * (x[:, :, :-1, 1:] + x[:, :, :-1, :-1] + x[:, :, 1:, 1:] + x[:, :, 1:, :-1])
    assert torch.allclose(half[:, :, 1:, :-1], expect, atol=1e-5)


def test_color_field_zero_strength_is_identity_and_constant_fields_are_global_jitter():
    x = torch.rand(2, 3, 8, 8)
    g = torch.randn(2, 3, 8, 8)
    assert torch.allclose(random_field_color(x, g, (0.0, 0.0, 0.0)), x)
    ones = torch.ones(2, 3, 8, 8)
    assert torch.allclose(random_field_color(x, ones, (0.5, 0.0, 0.0)), (1.5 * x).clamp(0, 1))
    gray = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    out = random_field_color(x, -ones, (0.0, 1.0, 0.0))  # saturation factor 0: the luma
    assert torch.allclose(out, gray[:, None].expand_as(x), atol=1e-6)
    back = random_field_color(x, ones, (0.0, 0.0, 1.0))  # a whole turn of hue: unchanged
    assert torch.allclose(back, x, atol=1e-4)


def test_recipe_option_is_off_by_default_reproducible_and_temporally_consistent():
    clips = torch.randint(0, 256, (3, 2, 24, 24, 3), dtype=torch.uint8)
    base = ViewRecipe(size=16, scale=(0.5, 1.0))
    p = draw_view_params(base, 3, 24, 24, gen(0))
    assert p.field is None and p.field_seed is None  # nothing drawn: existing recipes unchanged
    rf = dataclasses.replace(base, field_p=1.0, field_amplitude=0.1, color_field_p=1.0)
    a, b = augment_clip_views(clips, rf, gen(3)), augment_clip_views(clips, rf, gen(3))
    assert torch.equal(a, b)
    static = clips[:, :1].expand(-1, 2, -1, -1, -1).contiguous()  # a still clip stays still: one field per clip
    v = augment_clip_views(static, rf, gen(4))
    assert torch.allclose(v[:, 0], v[:, 1], atol=1e-6)
    params = draw_view_params(rf, 3, 24, 24, gen(5))
    plain = apply_view_params(clips, dataclasses.replace(params, field=torch.zeros(3, dtype=torch.bool),
                                                         color_field=torch.zeros(3, dtype=torch.bool)), rf)
    off = dataclasses.replace(params, field=None, color_field=None, field_seed=None)
    assert torch.equal(plain, apply_view_params(clips, off, base))  # with every mask off: the plain recipe
    assert not torch.allclose(apply_view_params(clips, params, rf), plain)


def test_constant_rotation_and_scale_fields_are_a_global_rotation_and_zoom():
    N, H, W = 1, 33, 33
    img = torch.rand(N, 3, H, W, generator=gen(1))
    zero = torch.zeros(N, 4, H, W)
    assert torch.allclose(random_field_warp(img, zero, 0.0, rotation=0.3, log_scale=0.2), img, atol=1e-5)
    for rot, zoom in ((0.25, 0.0), (0.0, 0.3), (0.2, -0.2)):
        field = zero.clone()
        field[:, 2], field[:, 3] = 1.0, 1.0
        got = random_field_warp(img, field, 0.0, rotation=rot, log_scale=zoom)
        s = math.exp(zoom)  # source = centre + s R(rot) (p - centre): affine_grid's theta in normalised coords
        theta = torch.tensor([[[s * math.cos(rot), -s * math.sin(rot), 0.0],
                               [s * math.sin(rot), s * math.cos(rot), 0.0]]])
        grid = torch.nn.functional.affine_grid(theta, (N, 3, H, W), align_corners=False)
        ref = torch.nn.functional.grid_sample(img, grid, mode="bilinear", padding_mode="reflection",
                                              align_corners=False)
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    try:
        random_field_warp(img, zero[:, :2], 0.0, rotation=0.1)
        raise AssertionError("a 2-channel field with a rotation must be refused")
    except ValueError as e:
        assert "(N, 4, H, W)" in str(e)
    rf = ViewRecipe(size=16, scale=(0.5, 1.0), field_p=1.0, field_amplitude=0.0, field_rotation=0.2,
                    field_log_scale=0.1)
    clips = torch.randint(0, 256, (2, 1, 24, 24, 3), dtype=torch.uint8)
    assert torch.equal(augment_clip_views(clips, rf, gen(3)), augment_clip_views(clips, rf, gen(3)))
