import math

import pytest
import torch
import torch.nn.functional as F

from vidssl.eval import propagate_labels, propagate_labels_dense


def naive(feats, labels0, n_context, radius, topk, temperature, restrict_first):
    """One query location at a time, candidates listed explicitly (first frame + padded previous frames)."""
    T, C, h, w = feats.shape
    preds = [labels0.clone()]
    for t in range(1, T):
        ctx = [0] + [max(j, 0) for j in range(t - n_context, t)]
        out = torch.zeros_like(labels0)
        for y in range(h):
            for x in range(w):
                cands = []
                for slot, f in enumerate(ctx):
                    restricted = radius is not None and (slot > 0 or restrict_first)
                    for v in range(h):
                        for u in range(w):
                            if restricted and math.hypot(v - y, u - x) >= radius:
                                continue
                            cands.append((float(feats[t, :, y, x] @ feats[f, :, v, u]), preds[f][:, v, u]))
                cands.sort(key=lambda c: -c[0])
                top = cands[:topk]
                wts = torch.softmax(torch.tensor([c[0] for c in top]) / temperature, 0)
                out[:, y, x] = sum(wt * lab for wt, (_, lab) in zip(wts, top))
        preds.append(out)
    return torch.stack(preds)


@pytest.mark.parametrize("kw", [
    dict(n_context=3, radius=2.5, topk=4, temperature=0.1, restrict_first=False),
    dict(n_context=2, radius=1.5, topk=3, temperature=0.05, restrict_first=True),
    dict(n_context=4, radius=None, topk=5, temperature=0.2, restrict_first=False),
])
def test_against_naive_loop(kw):
    torch.manual_seed(0)
    feats = F.normalize(torch.randn(5, 6, 5, 6), dim=1)
    labels0 = torch.softmax(torch.randn(3, 5, 6), 0)
    want = naive(feats, labels0, **kw)
    got = propagate_labels(feats, labels0, tile=2, **kw)
    assert got.shape == (5, 3, 5, 6)
    assert torch.equal(got[0], labels0)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("tile,budget_mb", [(5, None), (7, 0.05), (16, None)])  # 0.05 MB: one target frame per block
def test_tiled_equals_dense_at_reference_defaults(tile, budget_mb):
    torch.manual_seed(1)
    feats = F.normalize(torch.randn(24, 8, 30, 37), dim=1)  # 24 frames: the 20-frame context wraps around
    labels0 = torch.softmax(torch.randn(4, 30, 37), 0)
    a = propagate_labels(feats, labels0, tile=tile, budget_mb=budget_mb)
    b = propagate_labels_dense(feats, labels0)
    assert torch.allclose(a, b, atol=1e-5)


def test_identical_frames_propagate_labels_unchanged():
    feats = F.normalize(torch.randn(1, 16, 6, 7), dim=1).repeat(4, 1, 1, 1)
    labels0 = F.one_hot(torch.randint(0, 3, (6, 7)), 3).permute(2, 0, 1).float()
    out = propagate_labels(feats, labels0, topk=1, radius=3)
    assert torch.equal(out.argmax(1), labels0.argmax(0).expand(4, -1, -1))


def test_shape_mismatch():
    with pytest.raises(ValueError, match="features"):
        propagate_labels(torch.zeros(2, 4, 5, 5), torch.zeros(2, 4, 4))


@pytest.mark.parametrize("kw", [{}, {"restrict_first": True}, {"radius": None}])
def test_runs_on_the_features_device(kw):
    """Nothing is created on the CPU behind the caller's back: on the "meta" device (shapes only, standing in
    for CUDA on a machine without one) any CPU tensor mixed into an op raises a device mismatch."""
    config = pytest.importorskip("torch.fx.experimental._config")
    if not hasattr(config, "meta_nonzero_assume_all_nonzero"):
        pytest.skip("this torch cannot index boolean masks on the meta device")
    feats = F.normalize(torch.randn(5, 8, 9, 11), dim=1).to("meta")
    old, config.meta_nonzero_assume_all_nonzero = config.meta_nonzero_assume_all_nonzero, True
    try:
        out = propagate_labels(feats, torch.rand(3, 9, 11, device="meta"), **{"n_context": 3, "radius": 3, "topk": 4, **kw})
    finally:
        config.meta_nonzero_assume_all_nonzero = old
    assert out.device.type == "meta" and out.shape == (5, 3, 9, 11)
