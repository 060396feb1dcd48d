"""Masked-modelling pieces (vidssl/models/mae.py): patch order, masks drawn from the generator, sin-cos values,
MAE's loss against a float64 re-implementation of the official forward_loss (facebookresearch/mae models_mae.py)."""
import math

import pytest
import torch

from vidssl.models.mae import (
    MaskedDecoder,
    kept_tokens,
    masked_patch_loss,
    patchify,
    patchify_video,
    random_masking,
    sincos_1d,
    sincos_2d,
    sincos_3d,
    sinusoid_table,
    tube_masking,
    unpatchify,
)


def test_patchify_order_and_round_trip():
    imgs = torch.randn(2, 3, 8, 12)  # a 2 x 3 grid of 4-pixel patches
    x = patchify(imgs, 4)
    assert x.shape == (2, 6, 48)
    # MAE's order: patch (i, j) is row i * w + j; inside it pixel (a, b), channel c at (a * p + b) * 3 + c
    for n, i, j, a, b, c in [(0, 0, 0, 0, 0, 0), (1, 1, 2, 3, 1, 2), (0, 1, 0, 2, 3, 1)]:
        assert x[n, i * 3 + j, (a * 4 + b) * 3 + c] == imgs[n, c, i * 4 + a, j * 4 + b]
    assert torch.equal(unpatchify(x, 4, 2, 3), imgs)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        patchify(torch.zeros(1, 3, 10, 8), 4)


def test_patchify_video_tube_order():
    v = torch.randn(1, 3, 4, 8, 8)
    x = patchify_video(v, 2, 4)  # 2 x 2 x 2 tubes of 2 x 4 x 4 x 3 values
    assert x.shape == (1, 8, 96)
    t, i, j, dt, a, b, c = 1, 0, 1, 1, 2, 3, 2  # VideoMAE's 'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2 c)'
    assert x[0, t * 4 + i * 2 + j, ((dt * 4 + a) * 4 + b) * 3 + c] == v[0, c, t * 2 + dt, i * 4 + a, j * 4 + b]


def test_random_masking_matches_mae_and_comes_from_the_generator():
    n, length, ratio = 3, 196, 0.75
    rng_before = torch.get_rng_state()
    draw = random_masking(n, length, ratio, torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is untouched
    keep = int(length * (1 - ratio))
    assert keep == 49 and draw.ids_keep.shape == (n, keep) and draw.mask.shape == (n, length)
    assert (draw.mask.sum(1) == length - keep).all()
    assert (torch.gather(draw.mask, 1, draw.ids_keep) == 0).all()
    # the official algorithm on the same noise: argsort ascending, keep the first, unshuffle a [0]*keep + [1]* mask
    noise = torch.rand(n, length, generator=torch.Generator().manual_seed(4))
    shuffle = torch.argsort(noise, dim=1)
    restore = torch.argsort(shuffle, dim=1)
    mask = torch.ones(n, length)
    mask[:, :keep] = 0
    assert torch.equal(draw.ids_keep, shuffle[:, :keep]) and torch.equal(draw.ids_restore, restore)
    assert torch.equal(draw.mask, torch.gather(mask, 1, restore))
    again = random_masking(n, length, ratio, torch.Generator().manual_seed(4))
    other = random_masking(n, length, ratio, torch.Generator().manual_seed(5))
    assert torch.equal(again.mask, draw.mask) and not torch.equal(other.mask, draw.mask)
    assert kept_tokens(196, 0.95) == 9 and kept_tokens(196, 0.985) == 2  # SiamMAE's and CropMAE's counts
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(1, 4, 1.0, None)


def test_tube_masking_is_one_spatial_mask_repeated_over_time():
    n, frames, per_frame, ratio = 2, 3, 16, 0.9
    draw = tube_masking(n, frames, per_frame, ratio, torch.Generator().manual_seed(0))
    masked = int(ratio * per_frame)  # VideoMAE's count: 14 of 16
    m = draw.mask.view(n, frames, per_frame)
    assert (m == m[:, :1]).all() and (m.sum(-1) == masked).all()
    assert draw.ids_keep.shape == (n, frames * (per_frame - masked))
    assert (torch.diff(draw.ids_keep, dim=1) > 0).all()  # visible tokens in token order (VideoMAE's x[~mask])
    assert (torch.gather(draw.mask, 1, draw.ids_keep) == 0).all()
    tokens = torch.arange(frames * per_frame).expand(n, -1)
    rebuilt = torch.gather(torch.cat([torch.gather(tokens, 1, draw.ids_keep),
                                      tokens[draw.mask.bool()].view(n, -1)], 1), 1, draw.ids_restore)
    assert torch.equal(rebuilt, tokens)  # ids_restore undoes [visible, masked]
    assert torch.equal(tube_masking(n, frames, per_frame, ratio, torch.Generator().manual_seed(0)).mask, draw.mask)


def test_sincos_values_by_hand():
    e = sincos_1d(4, torch.tensor([2.0]))[0]  # omega = 1 / 10000^(k / 2), k = 0, 1: (1, 0.01)
    assert e.tolist() == pytest.approx([math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)], abs=1e-15)
    pos = sincos_2d(8, 2, 3, cls_token=True)
    assert pos.shape == (7, 8) and (pos[0] == 0).all()
    row, col = 1, 2  # token 1 + row * 3 + col: column in the first half, row in the second (MAE's w-first grid)
    want = [math.sin(col), math.sin(col / 100), math.cos(col), math.cos(col / 100),
            math.sin(row), math.sin(row / 100), math.cos(row), math.cos(row / 100)]
    assert pos[1 + row * 3 + col].tolist() == pytest.approx(want, abs=1e-15)
    p3 = sincos_3d(12, 2, 2, 3)  # time 4 channels, column 4, row 4
    t, r, c = 1, 1, 2
    assert p3[t * 6 + r * 3 + c].tolist() == pytest.approx(
        [math.sin(t), math.sin(t / 100), math.cos(t), math.cos(t / 100),
         math.sin(c), math.sin(c / 100), math.cos(c), math.cos(c / 100),
         math.sin(r), math.sin(r / 100), math.cos(r), math.cos(r / 100)], abs=1e-15)
    table = sinusoid_table(5, 6)  # VideoMAE: angle(pos, j) = pos / 10000^(2 (j // 2) / 6), sin even, cos odd
    assert table[3, 2] == pytest.approx(math.sin(3 / 10000 ** (2 / 6)), abs=1e-15)
    assert table[3, 3] == pytest.approx(math.cos(3 / 10000 ** (2 / 6)), abs=1e-15)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(6, 2, 2)


def official_forward_loss(imgs, pred, mask, p, norm_pix_loss):
    """facebookresearch/mae models_mae.py patchify + forward_loss, written out in float64."""
    n, _, h, w = imgs.shape
    x = imgs.reshape(n, 3, h // p, p, w // p, p)
    target = torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * 3)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.e-6) ** .5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


@pytest.mark.parametrize("norm_pix", [True, False])
def test_mae_loss_equals_the_official_formula(norm_pix):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
    pred = torch.randn(2, 16, 192, generator=g, dtype=torch.float64)
    mask = random_masking(2, 16, 0.75, g).mask.double()
    ours = masked_patch_loss(patchify(imgs, 8), pred, mask, norm_pix)
    assert ours.dtype == torch.float64
    assert ours.item() == pytest.approx(official_forward_loss(imgs, pred, mask, 8, norm_pix).item(), rel=1e-14)
    # only masked patches count: changing a visible patch's prediction leaves the loss unchanged
    visible = int((mask[0] == 0).nonzero()[0])
    pred2 = pred.clone()
    pred2[0, visible] += 5.0
    assert masked_patch_loss(patchify(imgs, 8), pred2, mask, norm_pix).item() == pytest.approx(ours.item(), rel=1e-14)


@pytest.mark.parametrize("cross", [False, True])
def test_decoder_puts_tokens_back_in_place_and_handles_no_visible_token(cross):
    torch.manual_seed(0)
    dec = MaskedDecoder(8, 16, 1, 2, 12, sincos_2d(16, 2, 2, cls_token=True), cross=cross, ff_dim=32).eval()
    memory = torch.randn(2, 5, 8) if cross else None
    for keep in (1, 0):
        draw = random_masking(2, 4, 1 - keep / 4 - 1e-9, torch.Generator().manual_seed(1))
        assert draw.ids_keep.shape == (2, keep)
        out = dec(torch.randn(2, 1 + keep, 8), draw.ids_restore, memory)
        assert out.shape == (2, 4, 12) and torch.isfinite(out).all()
    if cross:
        with pytest.raises(ValueError, match="memory"):
            dec(torch.randn(2, 2, 8), draw.ids_restore)


def official_videomae_target(videos, p, mean, std):
    """MCG-NJU/VideoMAE engine_for_pretraining.py normlize_target, written out in float64 (einops rearrange
    'b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c' as reshape + permute)."""
    unnorm = videos * torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1, 1) \
        + torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1, 1)
    b, c, t, h, w = unnorm.shape
    x = unnorm.reshape(b, c, t // 2, 2, h // p, p, w // p, p).permute(0, 2, 4, 6, 3, 5, 7, 1)
    squeeze = x.reshape(b, (t // 2) * (h // p) * (w // p), 2 * p * p, c)
    norm = (squeeze - squeeze.mean(dim=-2, keepdim=True)) / (squeeze.var(dim=-2, unbiased=True, keepdim=True).sqrt()
                                                              + 1e-6)
    return norm.reshape(b, squeeze.shape[1], -1)


def test_videomae_target_and_loss_equal_the_official_formula():
    from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD
    from vidssl.models.mae import videomae_target

    g = torch.Generator().manual_seed(0)
    videos = torch.randn(2, 3, 4, 16, 16, generator=g, dtype=torch.float64)
    ours = videomae_target(videos, 2, 8, IMAGENET_MEAN, IMAGENET_STD)
    want = official_videomae_target(videos, 8, IMAGENET_MEAN, IMAGENET_STD)
    assert torch.allclose(ours, want, rtol=0, atol=1e-12)
    draw = tube_masking(2, 2, 4, 0.75, g)  # 3 of 4 positions masked per slot
    pred = torch.randn(2, 8, ours.shape[-1], generator=g, dtype=torch.float64)
    m = draw.mask.bool()  # VideoMAE: nn.MSELoss over outputs[mask] vs labels[mask]
    official = torch.nn.functional.mse_loss(pred[m], want[m])
    assert masked_patch_loss(ours, pred, draw.mask, norm_pix=False).item() == pytest.approx(official.item(), rel=1e-13)


def test_vit3d_is_a_video_backbone_with_dense_maps_at_any_size():
    from vidssl.models.backbones import build_backbone

    net = build_backbone("vit3d", embed_dim=24, depth=1, num_heads=2, patch_size=8, tubelet=2).eval()
    assert net.is_video and net.stride == 8 and net.temporal_stride == 2 and net.out_channels == 24
    x = torch.randn(1, 3, 5, 20, 30)  # padded to 6 frames and 24 x 32 pixels
    assert net(x).shape == (1, 24, 3, 3, 4) and net.forward_global(x).shape == (1, 24)
    clip = torch.randn(1, 3, 4, 16, 16)  # the first temporal slot sees frames 0-1 only
    a, b = net.embed(clip)[0], net.embed(torch.cat([clip[:, :, :2], torch.zeros(1, 3, 2, 16, 16)], 2))[0]
    assert torch.allclose(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4:], b[:, 4:])
    with pytest.raises(ValueError, match="embed_dim"):
        build_backbone("vit3d", embed_dim=5)


def test_methods_refuse_backbones_they_cannot_mask():
    from vidssl.methods import build_method

    with pytest.raises(ValueError, match="timm ViT"):
        build_method("mae", backbone="resnet18", crop_size=32)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        build_method("mae", backbone="timm:vit_tiny_patch16_224", backbone_kwargs={"depth": 1}, crop_size=40)
    with pytest.raises(ValueError, match="mask_ratio"):
        build_method("siammae", backbone="timm:vit_tiny_patch16_224", backbone_kwargs={"depth": 1}, crop_size=32,
                     mask_ratio=1.0, decoder_dim=16, decoder_depth=1, decoder_heads=2, decoder_ff_dim=16)
    with pytest.raises(ValueError, match="vit3d"):
        build_method("videomae", backbone="r3d_18")


def test_cropmae_collapse_monitor_reads_the_seen_view_when_no_patch_is_visible():
    """At 98.5% masking of a 6x6 grid no patch of the local crop is visible, so its CLS token is the same for every
    image; z_std must come from the global view, which differs (a false 'collapsing' warning otherwise)."""
    from vidssl.methods import build_method

    torch.manual_seed(0)
    method = build_method("cropmae", backbone="timm:vit_tiny_patch16_224", backbone_kwargs={"depth": 1}, crop_size=96,
                          mask_ratio=0.985, decoder_dim=16, decoder_depth=1, decoder_heads=2, decoder_ff_dim=16)
    frames = torch.randint(0, 256, (4, 1, 112, 112, 3), dtype=torch.uint8)
    batch = method.device_augment({"frame": frames}, torch.Generator().manual_seed(0))
    assert batch["ids_keep"].shape == (4, 0)
    out = method(batch)
    assert torch.isfinite(out["loss"]) and out["z_std"] > 1e-3
