"""rhoMoCo (vidssl/methods/rho_moco.py): the loss against a hand computation, the queue, the schedule, the
frozen warm-up and the settings' checks. Training, resume and evaluation: tests/test_methods_demo.py."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vidssl.methods import build_method

TINY = dict(backbone="r3d_18", backbone_kwargs={"out_layer": "layer3"}, hidden=16, dim=8, crop_size=16,
            queue_size=12, shuffle_bn=False)


def make(**kw):
    torch.manual_seed(0)
    return build_method("rho_moco", **{**TINY, **kw})


def batch_for(m, B=2, T=2, size=20, seed=0):
    clips = torch.randint(0, 256, (B, m.rho, T, size, size, 3), dtype=torch.uint8)
    return m.device_augment({"clips": clips}, torch.Generator().manual_seed(seed))


def test_loss_is_moco_over_every_ordered_clip_pair_by_hand_and_every_key_is_enqueued():
    m = make(rho=3, temperature=0.2)
    b = batch_for(m)
    assert len(b["views"]) == 3 and b["views"][0].shape == (2, 3, 2, 16, 16)  # (B, 3, T, s, s) per clip
    queue0 = m.queue.keys.clone().double().numpy()
    with torch.no_grad():
        q = [m.query(v).double().numpy() for v in b["views"]]
        k = [m.keys(v, 0).double().numpy() for v in b["views"]]
    out = m(b)
    expect = 0.0
    for i in range(3):  # query clip i; positives: the other clips' keys; negatives: the queue before the step
        pair = []
        for j in range(3):
            if j == i:
                continue
            per = []
            for n in range(2):
                logits = [q[i][n] @ k[j][n]] + [q[i][n] @ queue0[r] for r in range(12)]
                logits = np.array(logits) / 0.2
                per.append(-(logits[0] - math.log(np.exp(logits).sum())))
            pair.append(np.mean(per))
        expect += np.mean(pair)
    assert out["loss"].item() == pytest.approx(expect, rel=1e-5)
    assert 0 <= out["z_std"].item() <= 1
    got = m.queue.keys.double().numpy()
    assert np.allclose(got[:6], np.concatenate(k), atol=1e-6) and np.allclose(got[6:], queue0[6:])
    assert int(m.queue.ptr) == 6


def test_loss_backpropagates_to_the_query_encoder_only():
    m = make()
    m(batch_for(m))["loss"].backward()
    assert m.backbone.stem[0].weight.grad is not None and m.head[0].weight.grad is not None
    assert all(p.grad is None for p in [*m.key_backbone.parameters(), *m.key_head.parameters()])


def test_momentum_schedule_and_frozen_warm_up_while_the_queue_fills():
    m = make(base_momentum=0.994)
    s = m.schedules(100)["ema_momentum"]
    assert s(0) == pytest.approx(0.994) and s(100) == pytest.approx(1.0) and s(50) == pytest.approx(0.997)
    assert make(momentum_annealing=False).schedules(100)["ema_momentum"](50) == 0.994
    m(batch_for(m))["loss"].backward()  # global batch 2, queue 12: SlowFast skips cur_iter 0..5
    m.before_optimizer_step(5, {})  # step 5 (0-based, SlowFast's cur_iter) < 12 // 2: frozen
    assert all(p.grad is None for p in m.parameters())
    m(batch_for(m))["loss"].backward()
    m.before_optimizer_step(6, {})
    assert m.head[0].weight.grad is not None
    free = make(queue_warmup=False)
    free(batch_for(free))["loss"].backward()
    free.before_optimizer_step(0, {})
    assert free.head[0].weight.grad is not None


def test_head_groups_data_spec_and_bad_settings():
    m = make(rho=4, mlp_layers=3)
    assert [type(l).__name__ for l in m.head] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]  # no BN
    groups = {g["name"]: g for g in m.param_groups()}
    assert groups["norms"]["wd_scale"] == 0.0
    n_trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == n_trainable
    spec = m.data_spec(SimpleNamespace(clip_len=8, img_size=32, frame_rate=None, frame_skip=8))
    (req,) = spec.requests
    assert (req.count, req.length, req.frame_skip, req.placement) == (4, 8, 8, "independent")
    assert m.view.mean == (0.45, 0.45, 0.45) and m.view.scale == (0.2, 0.766)
    with pytest.raises(ValueError, match="rho"):
        make(rho=1)
    with pytest.raises(ValueError, match="video backbone"):
        make(backbone="resnet18", backbone_kwargs={})
    with pytest.raises(ValueError, match="temperature"):
        make(temperature=0.0)
