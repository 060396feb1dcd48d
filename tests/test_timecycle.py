"""TimeCycle: its geometric pieces against values computed by hand, the loader's motion-biased patch, the
reference's loss weights, the shared backward walks, and per-sample gradients (DDP = mean of halves)."""
import math
import os

import pytest
import torch
import torch.nn.functional as F
from dist_helpers import strip_batchnorm

from vidssl.config import load_config
from vidssl.losses.timecycle import (
    OFFSET_FACTOR,
    affine_grid,
    affinity,
    fixed_scale_theta,
    grid_loss,
    soft_inlier_score,
    warp,
)
from vidssl.methods import build_method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(backbone="resnet18", crop_size=64, patch_size=56, embed_dim=16)


def test_fixed_scale_theta_by_hand():
    th = fixed_scale_theta(torch.tensor([[0.2, -0.4, math.pi / 2], [0.0, 0.0, 0.0]]), 1 / 3)
    want = [[[0.0, -1 / 3, 0.2], [1 / 3, 0.0, -0.4]], [[1 / 3, 0.0, 0.0], [0.0, 1 / 3, 0.0]]]
    torch.testing.assert_close(th, torch.tensor(want), atol=1e-7, rtol=0)


def test_affine_grid_align_corners_and_offset_factor():
    theta = torch.randn(3, 2, 3)
    torch.testing.assert_close(affine_grid(theta, 5, 7), F.affine_grid(theta, (3, 1, 5, 7), align_corners=True))
    # one point by hand: out (2 x 3) grid, point (row 1, col 0) = (x, y) = (-1, 1); translation x 227/210
    th = torch.tensor([[[0.5, 0.1, 0.2], [-0.3, 0.25, -0.1]]])
    g = affine_grid(th, 2, 3, OFFSET_FACTOR)[0, 1, 0]
    x = 0.5 * -1 + 0.1 * 1 + 0.2 * 227 / 210
    y = -0.3 * -1 + 0.25 * 1 - 0.1 * 227 / 210
    torch.testing.assert_close(g, torch.tensor([x, y]), atol=1e-6, rtol=0)


def test_warp_identity_and_crop():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3)
    torch.testing.assert_close(warp(x, eye, 5, 5), x)
    # scale 1/2 centred: a 3x3 output samples the centre pixels 1..3 of the 5x5 map (align_corners)
    half = torch.tensor([[0.5, 0, 0], [0, 0.5, 0]]).expand(2, 2, 3)
    torch.testing.assert_close(warp(x, half, 3, 3), x[:, :, 1:4, 1:4])


def test_grid_loss_by_hand():
    a = torch.tensor([[[0.3, 0.1, -0.2], [0.05, 0.4, 0.5]]])
    assert grid_loss(a, a).item() == pytest.approx(0.0, abs=1e-12)  # a known affine: zero
    b = a.clone()
    b[0, 0, 2] += 0.3  # a known offset (0.3, -0.2): every point moves by it
    b[0, 1, 2] -= 0.2
    assert grid_loss(b, a).item() == pytest.approx(0.3 ** 2 + 0.2 ** 2, rel=1e-5)
    # a linear difference: x' differs by 0.5 x  ->  mean over the 20 x 20 grid of (0.5 x)^2
    c = a.clone()
    c[0, 0, 0] += 0.5
    xs = [-1 + 2 * i / 19 for i in range(20)]
    want = sum((0.5 * x) ** 2 for x in xs for _ in xs) / 400
    assert grid_loss(c, a).item() == pytest.approx(want, rel=1e-5)
    assert grid_loss(torch.cat([b, c]), torch.cat([a, a])).item() == pytest.approx((0.13 + want) / 2, rel=1e-5)


def test_affinity_by_hand():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(1, 4, 2, 1, generator=g), dim=1)  # query 2 x 1
    b = F.normalize(torch.randn(1, 4, 2, 3, generator=g), dim=1)  # base 2 (H) x 3 (W)
    tau = 0.5
    got = affinity(q, b, tau)
    assert got.shape == (1, 6, 2, 1)
    Q, B = q[0].numpy(), b[0].numpy()
    for i in range(2):  # query row
        logits = {}
        for x in range(3):
            for y in range(2):
                logits[x * 2 + y] = float((Q[:, i, 0] * B[:, y, x]).sum()) / tau  # channel = x * H + y
        z = sum(math.exp(v) for v in logits.values())
        for k, v in logits.items():
            assert got[0, k, i, 0].item() == pytest.approx(math.exp(v) / z, rel=1e-5)


def test_soft_inlier_score_by_hand():
    H, W, h, w = 3, 4, 2, 2
    g = torch.Generator().manual_seed(1)
    matches = torch.rand(2, H * W, h, w, generator=g)
    theta = torch.tensor([[[0.4, 0.1, 0.3], [-0.1, 0.5, -0.2]], [[0.9, 0.0, 0.6], [0.0, 0.9, 0.5]]])
    eps, of = 1e-5, OFFSET_FACTOR
    got = soft_inlier_score(matches, theta, (H, W))
    P, T = matches.numpy(), theta.numpy()
    for n in range(2):
        num = den = 0.0
        for i in range(h):
            for j in range(w):
                gx, gy = -1 + 2 * j / (w - 1), -1 + 2 * i / (h - 1)
                x = T[n, 0, 0] * gx + T[n, 0, 1] * gy + T[n, 0, 2] * of
                y = T[n, 1, 0] * gx + T[n, 1, 1] * gy + T[n, 1, 2] * of
                px, py = (x + 1) / 2 * (W - 1), (y + 1) / 2 * (H - 1)  # pixel coordinates (align_corners)
                for r in range(H):
                    for c in range(W):
                        wt = max(0.0, 1 - abs(py - r)) * max(0.0, 1 - abs(px - c))
                        num += wt * P[n, c * H + r, i, j]
                        den += wt
        assert got[n].item() == pytest.approx(num / (den + eps * H * W * h * w), rel=1e-5)
    # differentiable in theta (the reference trains the localizer through the warped mask too)
    theta.requires_grad_(True)
    soft_inlier_score(matches, theta, (H, W)).sum().backward()
    assert theta.grad.abs().sum() > 0


def test_perfect_match_gives_full_inlier_score():
    """An affinity that puts all mass where theta maps each query position scores ~1 (minus eps)."""
    H = W = 9
    th = fixed_scale_theta(torch.tensor([[0.0, 0.0, 0.0]]), 0.5)  # 5 x 5 queries on pixels 2..6 (factor 1)
    m = torch.zeros(1, H * W, 5, 5)
    for i in range(5):
        for j in range(5):
            m[0, (2 + j) * H + (2 + i), i, j] = 1.0
    assert soft_inlier_score(m, th, (H, W), offset_factor=1.0).item() == pytest.approx(1.0, abs=1e-3)


@pytest.fixture(scope="module")
def method():
    torch.manual_seed(0)
    return build_method("timecycle", **TINY)


def fake_batch(B=2, T=3, S=72, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (B, T, S, S, 3), generator=g, dtype=torch.uint8)
    future = torch.full((B, 2, S, S, 3), 100, dtype=torch.uint8)
    return {"frames": frames, "future": future}


def test_patch_sits_on_the_motion(method):
    """Future frames equal except a bright square in the first: the patch centre lands near the square (found in
    the cropped, possibly flipped target the method returns), wherever the square is; the patch is the target
    cut along theta."""
    torch.manual_seed(0)
    wide = build_method("timecycle", backbone="resnet18", crop_size=128, patch_size=56, embed_dim=8)  # scale .44
    S, c = 136, 128
    e = c // 9
    for seed in range(6):
        for top, left in ((8, 80), (80, 8)):  # windows within 2 boxes of the best one make the top 10
            batch = fake_batch(B=2, S=S, seed=seed)
            batch["future"][:, 0, top:top + 3 * e, left:left + 3 * e] = 255
            out = wide.device_augment(batch, torch.Generator().manual_seed(seed))
            target, theta = out["target"], out["theta"]
            torch.testing.assert_close(out["patch"], warp(target, theta, 56, 56))
            for b in range(2):
                ys, xs = torch.nonzero(target[b, 0] > 1.5, as_tuple=True)  # the bright square, normalised
                cx, cy = (theta[b, :, 2] + 1) / 2 * (c - 1)
                assert abs(cx - xs.float().mean()) < 3 * e and abs(cy - ys.float().mean()) < 3 * e
    a = method.device_augment(fake_batch(), torch.Generator().manual_seed(3))
    b = method.device_augment(fake_batch(), torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in ("clip", "target", "patch", "theta"))  # draws: the generator only
    assert a["clip"].shape == (2, 3, 3, 64, 64) and a["theta"].shape == (2, 2, 3)
    det = torch.linalg.det(a["theta"][:, :, :2])
    torch.testing.assert_close(det, torch.full((2,), (56 / 64) ** 2))


def test_loss_weights_logs_and_gradients(method):
    batch = method.device_augment(fake_batch(), torch.Generator().manual_seed(0))
    method.zero_grad()
    out = method(batch)
    want = 0.1 * 0.2 * out["loss_cycle"] + out["loss_inlier"] + 0.1 * out["loss_skip"]
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert -1.0 <= out["loss_inlier"].item() <= 0.0 and out["z_std"].item() > 0 and -1 <= out["pos_code"] <= 1
    out["loss"].backward()
    for part in (method.backbone, method.proj, method.localizer):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in part.parameters())


def test_shared_backward_walks_equal_separate_cycles(method):
    """The reference recomputes the backward walk for every cycle length; sharing its prefix changes nothing."""
    batch = method.device_augment(fake_batch(), torch.Generator().manual_seed(1))
    method.eval()  # fixed BN statistics: the separate embedding passes below see the same normalisation
    try:
        with torch.no_grad():
            got = method(batch)["loss_cycle"]
            T = batch["clip"].shape[1]
            frames = method.embed(batch["clip"].flatten(0, 1))
            frames = frames.view(2, T, *frames.shape[1:])
            frames_n = F.normalize(frames, dim=2)
            patch_n = F.normalize(method.embed(batch["patch"]), dim=1)
            target_n = F.normalize(method.embed(batch["target"]), dim=1)
            losses = []
            for c in range(1, T + 1):
                q = patch_n
                for t in list(range(T))[::-1][:c]:
                    q = method.track(q, frames[:, t], frames_n[:, t])
                for t in list(range(T))[T - c + 1:]:
                    q = method.track(q, frames[:, t], frames_n[:, t])
                losses.append(grid_loss(method.locate(q, target_n)[1], batch["theta"]))
        torch.testing.assert_close(got, torch.stack(losses).mean())
    finally:
        method.train()



def test_gradient_of_the_batch_is_the_mean_of_its_halves():
    """No cross-sample coupling: two ranks' averaged gradients equal one process's (what DDP needs)."""
    torch.manual_seed(0)
    m = strip_batchnorm(build_method("timecycle", **TINY))
    batch = m.device_augment(fake_batch(B=4, T=2), torch.Generator().manual_seed(2))
    keys = ("clip", "target", "patch", "theta")

    def grads(b):
        m.zero_grad()
        m(b)["loss"].backward()
        return [p.grad.clone() for p in m.parameters()]

    full = grads({k: batch[k] for k in keys})
    halves = [grads({k: batch[k][s] for k in keys}) for s in (slice(0, 2), slice(2, 4))]
    for f, a, b in zip(full, *halves):
        torch.testing.assert_close(f, (a + b) / 2, rtol=1e-4, atol=1e-6)


def test_configs_and_errors():
    cfg = load_config(os.path.join(ROOT, "configs", "timecycle.yaml"))
    assert cfg.method["crop_size"] == 240 and cfg.method["patch_size"] == 80 and cfg.data.clip_len == 4
    assert cfg.optim.betas == [0.5, 0.999] and cfg.optim.lr == 2e-4 and cfg.trainer.grad_clip == 10.0
    with torch.device("meta"):
        m = build_method(**cfg.method)
    assert (m.frame_hw, m.patch_hw, m.scale) == (30, 10, pytest.approx(1 / 3))
    assert m.temperature == pytest.approx(512 ** -0.5) and m.localizer.conv1.in_channels == 900
    assert m.backbone.stride == 8 and m.backbone.out_channels == 1024
    spec = m.data_spec(cfg.data)
    frames, future = spec.requests
    assert (frames.length, frames.crop, frames.size) == (4, "square", 256)
    assert (future.length, future.placement, future.gap, future.crop_as) == (2, "gap", 3, "frames")
    demo = load_config(os.path.join(ROOT, "configs", "timecycle_demo.yaml"))
    build_method(**demo.method).data_spec(demo.data)
    with pytest.raises(ValueError, match="patch_size"):
        build_method("timecycle", backbone="resnet18", crop_size=64, patch_size=48)
    with pytest.raises(ValueError, match="multiples"):
        build_method("timecycle", backbone="resnet18", crop_size=100, patch_size=56)
    with pytest.raises(ValueError, match="img_size"):
        build_method("timecycle", **TINY).data_spec(load_config(None, ["data.img_size=60"]).data)


def test_evaluation_reads_the_projected_features_as_the_reference_test_code():
    from vidssl.models import build_backbone

    m = build_method("timecycle", **TINY)
    enc = m.eval_encoder()
    assert enc.spec["name"] == "projected" and enc.out_channels == TINY["embed_dim"] and enc.stride == 8
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), m.embed(x))  # what the method trains is what evaluation reads
        assert (enc(x) >= 0).all()  # after the ReLU
    assert enc.eval_kwargs() == {"base_kwargs": {"out_layer": "layer3", "stride8": True}}
    with pytest.raises(ValueError, match="2D base"):
        build_backbone("projected", base="r3d_18")


def test_position_code_monitor():
    """pos_code (methods/base.py) against its definition, computed pair by pair; high for a pure position code
    (the shortcut that made the zero-padded CPU recipe degrade), about 0 for content; the trainer warns on it."""
    from vidssl.engine.trainer import health_warnings
    from vidssl.methods.base import position_code

    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, 6)
    f = F.normalize(x.flatten(2), dim=1)
    same = [f[b, :, p] @ f[c, :, p] for b in range(3) for c in range(3) if b != c for p in range(24)]
    across = [f[b, :, p] @ f[b, :, q] for b in range(3) for p in range(24) for q in range(24) if p != q]
    assert position_code(x).item() == pytest.approx((torch.stack(same).mean() - torch.stack(across).mean()).item(),
                                                    abs=1e-6)
    where = torch.randn(1, 16, 7, 7).relu().expand(4, -1, -1, -1)  # every image: the same map
    assert position_code(where) > 0.5 > abs(position_code(torch.randn(4, 16, 7, 7).relu()))
    assert any("padding_mode=reflect" in w for w in health_warnings({"pos_code": float(position_code(where))}))
    assert health_warnings({"pos_code": 0.1, "z_std": 0.05}) == []
    with pytest.raises(ValueError, match="2 images"):
        position_code(torch.randn(1, 4, 3, 3))
