"""simsiam / barlow_twins / vicreg / wmse: each loss against values computed by hand (numpy loops on tiny
inputs), the whitening's identity covariance, and the four methods' own rules (demo training, resume and
evaluation: tests/test_methods_demo.py; gradients under two processes: tests/test_ddp_methods.py)."""
import math

import numpy as np
import pytest
import torch

from vidssl.losses.barlow_twins import barlow_twins_loss
from vidssl.losses.simsiam import simsiam_loss
from vidssl.losses.vicreg import vicreg_loss, vicreg_terms
from vidssl.losses.wmse import whiten, wmse_loss


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def np_standardize(x, eps):
    """Per column: (x - mean) / sqrt(biased var + eps), with explicit loops."""
    n, d = x.shape
    out = np.zeros_like(x)
    for j in range(d):
        mean = sum(x[i, j] for i in range(n)) / n
        var = sum((x[i, j] - mean) ** 2 for i in range(n)) / n
        for i in range(n):
            out[i, j] = (x[i, j] - mean) / math.sqrt(var + eps)
    return out


def np_cov(x):
    n, d = x.shape
    mean = [sum(x[i, j] for i in range(n)) / n for j in range(d)]
    return np.array([[sum((x[i, a] - mean[a]) * (x[i, b] - mean[b]) for i in range(n)) / (n - 1)
                      for b in range(d)] for a in range(d)])


def test_simsiam_loss_by_hand_and_stop_gradient():
    p, z = rand(5, 3, seed=1), rand(5, 3, seed=2)
    P, Z = p.numpy(), z.numpy()
    expected = -sum(P[i] @ Z[i] / (np.linalg.norm(P[i]) * np.linalg.norm(Z[i])) for i in range(5)) / 5
    p.requires_grad_(True)
    z.requires_grad_(True)
    loss = simsiam_loss(p, z)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert z.grad is None and p.grad.abs().sum() > 0
    assert simsiam_loss(p, p).item() == pytest.approx(-1.0, abs=1e-6)


def test_barlow_twins_loss_by_hand():
    z1, z2 = rand(6, 4, seed=3), rand(6, 4, seed=4) * 3 + 1
    a, b = np_standardize(z1.numpy(), 1e-5), np_standardize(z2.numpy(), 1e-5)
    n, d = a.shape
    c = [[sum(a[k, i] * b[k, j] for k in range(n)) / n for j in range(d)] for i in range(d)]
    on = sum((1 - c[i][i]) ** 2 for i in range(d))
    off = sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j)
    for lambd, scale in [(0.0051, 1.0), (0.5, 1 / 32)]:
        got = barlow_twins_loss(z1, z2, lambd=lambd, scale=scale)
        assert got.dtype == torch.float32 and got.item() == pytest.approx(scale * (on + lambd * off), rel=1e-5)
    # perfectly correlated, decorrelated dimensions: c = identity up to the eps of the standardisation
    q = torch.tensor([[1.0, 1], [1, -1], [-1, 1], [-1, -1]])
    assert barlow_twins_loss(q, q).item() == pytest.approx(0.0, abs=1e-4)


def test_vicreg_loss_by_hand():
    z1, z2 = rand(5, 3, seed=5) * 0.5, rand(5, 3, seed=6) * 2
    x, y = z1.numpy(), z2.numpy()
    n, d = x.shape
    inv = sum((x[i, j] - y[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    var = 0.0
    cov = 0.0
    for v in (x, y):
        c = np_cov(v)
        var += sum(max(0.0, 1 - math.sqrt(c[j, j] + 1e-4)) for j in range(d)) / d / 2  # the official / 2
        cov += sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
    terms = vicreg_terms(z1, z2)
    for got, want in zip(terms, (inv, var, cov)):
        assert got.item() == pytest.approx(want, rel=1e-5)
    assert var > 0 and cov > 0
    loss = vicreg_loss(z1, z2, 25.0, 25.0, 1.0)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(25 * inv + 25 * var + cov, rel=1e-5)
    assert vicreg_loss(z1, z2, 2.0, 0.0, 0.0).item() == pytest.approx(2 * inv, rel=1e-5)


def np_whiten(x):
    """The W-MSE whitening by hand: x_c L^-T with L L^T the covariance (unbiased)."""
    xc = x - x.mean(axis=0)
    L = np.linalg.cholesky(np_cov(x))
    return xc @ np.linalg.inv(L).T


def np_norm_mse(a, b):
    return 2 - 2 * np.mean([a[i] @ b[i] / (np.linalg.norm(a[i]) * np.linalg.norm(b[i])) for i in range(len(a))])


def test_whitening_gives_identity_covariance_and_matches_by_hand():
    x = rand(40, 4, seed=7) @ rand(4, 4, seed=8) + 3  # correlated, off-centre
    z = whiten(x)
    assert z.dtype == torch.float32
    np.testing.assert_allclose(np_cov(z.double().numpy()), np.eye(4), atol=1e-4)
    np.testing.assert_allclose(z.numpy(), np_whiten(x.numpy()), atol=1e-4)
    zb = whiten(torch.stack([x, 2 * x + 1]))  # batched over sub-batches; whitening is affine-invariant
    np.testing.assert_allclose(zb[1].numpy(), z.numpy(), atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 with autocast off, whatever the input
        zh = whiten(x.to(torch.bfloat16))
    assert zh.dtype == torch.float32
    np.testing.assert_allclose(np_cov(zh.double().numpy()), np.eye(4), atol=1e-3)
    shrunk = whiten(x, eps=1.0)  # eps = 1: the covariance is replaced by I, only centring remains
    np.testing.assert_allclose(shrunk.numpy(), (x - x.mean(0)).numpy(), atol=1e-5)


def test_wmse_loss_by_hand_two_views_sub_batches():
    v1, v2 = rand(8, 2, seed=9), rand(8, 2, seed=10) + rand(8, 2, seed=9)
    a, b = v1.numpy(), v2.numpy()
    # one sub-batch (w_size None = N)
    assert wmse_loss([v1, v2]).item() == pytest.approx(np_norm_mse(np_whiten(a), np_whiten(b)), rel=1e-5)
    # two sub-batches of 4, two draws: the permutations are the generator's randperm(8), replayed here
    g = torch.Generator().manual_seed(3)
    perms = [torch.randperm(8, generator=g).numpy() for _ in range(2)]
    want = 0.0
    for perm in perms:
        za, zb = np.zeros_like(a), np.zeros_like(b)
        for idx in perm.reshape(2, 4):
            za[idx], zb[idx] = np_whiten(a[idx]), np_whiten(b[idx])
        want += np_norm_mse(za, zb)
    got = wmse_loss([v1, v2], w_size=4, w_iter=2, generator=torch.Generator().manual_seed(3))
    assert got.item() == pytest.approx(want / 2, rel=1e-5)
    again = wmse_loss([v1, v2], w_size=4, w_iter=2, generator=torch.Generator().manual_seed(3))
    assert again.item() == got.item()  # the draws come from the generator only: exact resume


def test_wmse_loss_four_views_averages_the_six_pairs():
    views = [rand(6, 2, seed=s) for s in range(11, 15)]
    z = [np_whiten(v.numpy()) for v in views]
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    want = sum(np_norm_mse(z[i], z[j]) for i, j in pairs) / 6
    assert len(pairs) == 6 and wmse_loss(views).item() == pytest.approx(want, rel=1e-5)
    views = [v.requires_grad_(True) for v in views]
    wmse_loss(views).backward()
    assert all(v.grad is not None and torch.isfinite(v.grad).all() for v in views)


def test_losses_refuse_views_of_unequal_batch_sizes():
    a, b = rand(6, 3), rand(5, 3)
    for fn in (simsiam_loss, barlow_twins_loss, vicreg_loss):
        with pytest.raises(ValueError):
            fn(a, b)
    with pytest.raises(ValueError, match="same shape"):
        wmse_loss([rand(8, 2), rand(6, 2)])
    with pytest.raises(ValueError, match="multiple of w_size"):
        wmse_loss([rand(6, 2), rand(6, 2)], w_size=4)
    with pytest.raises(ValueError, match="exceed the embedding size"):
        wmse_loss([rand(8, 4), rand(8, 4)], w_size=4)


# --- the methods' own rules ----------------------------------------------------------------------------------

TINY_HEADS = {"simsiam": {"dim": 16, "pred_dim": 8, "proj_hidden": 16}, "barlow_twins": {"projector": "16-16"},
              "vicreg": {"expander": "16-16"}, "wmse": {"proj_hidden": 16, "proj_dim": 2, "w_size": 4}}


@pytest.mark.parametrize("name", sorted(TINY_HEADS))
def test_frame_methods_refuse_a_3d_backbone(name):
    from vidssl.methods import build_method

    with pytest.raises(ValueError, match="method.backbone='r3d_18'"):
        build_method(name, backbone="r3d_18", **TINY_HEADS[name])


def test_param_groups_and_heads_follow_the_official_codes():
    from vidssl.methods import build_method

    s = build_method("simsiam", backbone="resnet18", **TINY_HEADS["simsiam"])
    enc, pred = s.param_groups()
    assert pred["static_lr"] and {id(p) for p in pred["params"]} == {id(p) for p in s.predictor.parameters()}
    assert len(enc["params"]) + len(pred["params"]) == len(list(s.parameters()))
    assert not s.projector[-1].affine and s.projector[0].bias is None  # last BN without affine, no biases
    assert (s.backbone.layer1[0].bn2.weight == 0).all()  # zero_init_residual (BasicBlock's last BN)

    b = build_method("barlow_twins", backbone="resnet18", **TINY_HEADS["barlow_twins"])
    weights, biases = b.param_groups()
    assert biases["lr_scale"] == pytest.approx(0.0048 / 0.2) and biases["lars_exclude"] and biases["wd_scale"] == 0
    assert all(p.ndim > 1 for p in weights["params"]) and all(p.ndim == 1 for p in biases["params"])
    assert all(m.bias is None for m in b.projector if isinstance(m, torch.nn.Linear))

    v = build_method("vicreg", backbone="resnet18", **TINY_HEADS["vicreg"])
    linears = [m for m in v.projector if isinstance(m, torch.nn.Linear)]
    assert linears[0].bias is not None and linears[-1].bias is None
    assert "lr_scale" not in v.param_groups()[1]

    with pytest.raises(ValueError, match="method.w_size"):
        build_method("wmse", backbone="resnet18", proj_dim=8, w_size=8)
    with pytest.raises(ValueError, match="method.num_views"):
        build_method("wmse", backbone="resnet18", num_views=1, **TINY_HEADS["wmse"])


def test_wmse_method_four_views_trains_one_step():
    from vidssl.methods import build_method

    m = build_method("wmse", backbone="resnet18", num_views=4, crop_size=32, **TINY_HEADS["wmse"])
    frames = torch.randint(0, 256, (8, 1, 40, 40, 3), dtype=torch.uint8)
    batch = m.device_augment({"frame": frames}, torch.Generator().manual_seed(0))
    assert len(batch["views"]) == 4 and batch["wmse_seed"].shape == (8,)
    out = m(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and 0 < out["z_std"] < 1
    assert m.backbone.conv1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple of method.w_size"):
        m({**batch, "views": [v[:6] for v in batch["views"]]})
