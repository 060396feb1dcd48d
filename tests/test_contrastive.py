"""SimCLR / MoCo v2 / MoCo v3: the losses against hand-computed values, MoCo v2's queue and shuffle BN, MoCo v3's
momentum schedule and update, and the errors for backbones these frame methods cannot use. Training, exact
resume and the exported encoder are covered for every method by tests/test_methods_demo.py, two-process
gradients by tests/test_ddp_methods.py."""
import math

import pytest
import torch
import torch.nn as nn

from vidssl.losses.contrastive import info_nce_loss, mocov3_loss
from vidssl.methods import build_method


def _unit(rows):
    return [[v / math.sqrt(sum(x * x for x in r)) for v in r] for r in rows]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_info_nce_loss_by_hand():
    z1 = [[1.0, 2.0, 0.0], [0.5, -1.0, 1.0], [0.0, 1.0, 1.0]]
    z2 = [[2.0, 1.0, 0.5], [1.0, -1.0, 0.0], [-1.0, 0.5, 2.0]]
    t, n = 0.3, 3
    views = _unit(z1) + _unit(z2)  # anchors 0..n-1 are view 1, n..2n-1 view 2
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]  # the positive and the 2n - 2 negatives
        denom = sum(math.exp(_dot(views[i], views[j]) / t) for j in others)
        total += -math.log(math.exp(_dot(views[i], views[pos]) / t) / denom)
    expected = total / (2 * n)
    got = info_nce_loss(torch.tensor(z1), torch.tensor(z2), temperature=t)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    half = info_nce_loss(torch.tensor(z1).bfloat16(), torch.tensor(z2).bfloat16(), temperature=t)
    assert half.dtype == torch.float32
    with pytest.raises(ValueError, match="info_nce_loss"):
        info_nce_loss(torch.zeros(3, 4), torch.zeros(2, 4))


def test_mocov3_loss_by_hand_and_keys_get_no_gradient():
    q = [[1.0, 0.0, 1.0], [0.2, 1.0, -0.5], [1.0, 1.0, 1.0], [-1.0, 0.3, 0.0]]
    k = [[0.9, 0.1, 1.0], [0.0, 1.0, 0.0], [1.0, 0.5, 2.0], [-0.5, 0.0, 0.5]]
    t = 0.5
    qn, kn = _unit(q), _unit(k)
    total = 0.0
    for i in range(4):
        logits = [_dot(qn[i], kn[j]) / t for j in range(4)]
        total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    expected = total / 4 * 2 * t
    qt, kt = torch.tensor(q, requires_grad=True), torch.tensor(k, requires_grad=True)
    got = mocov3_loss(qt, kt, temperature=t)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    got.backward()
    assert kt.grad is None and qt.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mocov3_loss"):
        mocov3_loss(torch.zeros(3, 4), torch.zeros(3, 5))


def _tiny(name, **kw):
    torch.manual_seed(0)
    return build_method(name=name, backbone="resnet18", crop_size=32, **kw)


def _batch(method, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, 1, 40, 40, 3), dtype=torch.uint8, generator=g)
    return method.device_augment({"frame": frames}, torch.Generator().manual_seed(seed + 1))


def test_mocov2_step_enqueues_its_keys():
    m = _tiny("mocov2", hidden=32, dim=16, queue_size=8)
    before = m.queue.keys.clone()
    out = m(_batch(m))
    out["loss"].backward()
    assert math.isfinite(out["loss"].item()) and 0 <= out["z_std"].item() <= 1
    assert int(m.queue.ptr) == 4 and not torch.allclose(m.queue.keys[:4], before[:4])
    assert torch.equal(m.queue.keys[4:], before[4:])  # only the newest keys were written
    assert torch.allclose(m.queue.keys[:4].norm(dim=1), torch.ones(4))
    sym = _tiny("mocov2", hidden=32, dim=16, queue_size=8, symmetric=True)
    sym(_batch(sym))
    assert int(sym.queue.ptr) == 0 and int(sym.queue.filled) == 8  # both views' keys
    with pytest.raises(ValueError, match="multiple of the global batch"):
        _tiny("mocov2", hidden=32, dim=16, queue_size=6)(_batch(m))


class RecordingEncoder(nn.Module):
    """A fake key encoder: remembers the batch it saw and embeds each image by its first pixels."""

    def forward_global(self, x):
        self.seen = x.clone()
        return x.flatten(1)[:, :8]


def test_mocov2_keys_go_through_shuffle_bn(monkeypatch):
    """The permutation itself (across ranks, restored in order) is tested in tests/test_dist.py; in one process
    it cannot change batch statistics and is skipped."""
    import vidssl.methods.mocov2 as mocov2

    m = _tiny("mocov2", hidden=32, dim=16, queue_size=16)
    m.key_backbone, m.key_head = RecordingEncoder(), nn.Identity()
    x = torch.randn(8, 3, 4, 4)
    keys = m.keys(x, seed=3)
    assert torch.allclose(keys, torch.nn.functional.normalize(x.flatten(1)[:, :8], dim=1))
    assert torch.equal(m.key_backbone.seen, x)
    calls = []
    monkeypatch.setattr(mocov2, "shuffle_bn_forward", lambda fn, v, seed, enabled: calls.append((seed, enabled)) or fn(v))
    m.keys(x, seed=3)
    m.shuffle_bn = False
    m.keys(x, seed=4)
    assert calls == [(3, True), (4, False)]


def test_mocov3_momentum_schedule_and_update():
    m = _tiny("mocov3", hidden=32, dim=16, base_momentum=0.99)
    sched = m.schedules(100)["ema_momentum"]
    assert sched(0) == pytest.approx(0.99) and sched(100) == pytest.approx(1.0)
    assert sched(50) == pytest.approx(1 - 0.5 * (1 + math.cos(math.pi * 0.5)) * 0.01)  # main_moco.py formula
    assert all(sched(s) <= sched(s + 1) for s in range(100))
    out = m(_batch(m))
    out["loss"].backward()
    assert math.isfinite(out["loss"].item())
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(0.1)
    old = [p.clone() for p in m.momentum_backbone.parameters()]
    m.after_optimizer_step(0, {"ema_momentum": 0.9})
    for t, o, p in zip(m.momentum_backbone.parameters(), old, m.backbone.parameters()):
        assert torch.allclose(t, 0.9 * o + 0.1 * p)
    assert all(not p.requires_grad for p in m.momentum_projector.parameters())
    assert not hasattr(m, "momentum_predictor")  # the predictor has no momentum copy


def test_heads_follow_the_official_shapes():
    s = _tiny("simclr", proj_hidden=32, proj_dim=16)
    assert isinstance(s.projector[-1], nn.BatchNorm1d) and not s.projector[-1].affine
    out = s(_batch(s))
    out["loss"].backward()
    assert out["loss"].item() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in s.projector.parameters())
    m = _tiny("mocov3", hidden=32, dim=16)
    assert sum(isinstance(x, nn.Linear) for x in m.projector) == 2 and not isinstance(m.predictor[-1], nn.BatchNorm1d)
    assert m.backbone.layer1[0].bn2.weight.abs().sum() == 0  # zero-init residual (BasicBlock)
    v2 = _tiny("mocov2", dim=16, queue_size=16)
    assert not any(isinstance(x, nn.BatchNorm1d) for x in v2.head) and v2.head[0].out_features == 512


@pytest.mark.parametrize("name", ["simclr", "mocov2", "mocov3"])
def test_video_backbone_is_refused(name):
    with pytest.raises(ValueError, match="method.backbone='r3d_18'"):
        build_method(name=name, backbone="r3d_18")
