"""swav and dino specifics: their losses against hand computations, Sinkhorn's marginals, the multi-crop forward,
the teacher temperature schedule, the center update, prototype normalisation/freezing and last-layer freezing
(their demo training, resume and evaluation: tests/test_methods_demo.py; DDP: tests/test_ddp_methods.py)."""
import math

import numpy as np
import pytest
import torch

from vidssl.losses.dino import dino_loss
from vidssl.losses.swav import sinkhorn, swav_loss
from vidssl.methods import build_method
from vidssl.models.heads_multicrop import multicrop_forward

TINY_SWAV = dict(backbone="resnet18", hidden=16, feat_dim=8, prototypes=6, global_size=32, local_size=16,
                 local_crops=2, freeze_prototypes_steps=2)
TINY_DINO = dict(backbone="resnet18", out_dim=12, hidden_dim=16, bottleneck_dim=8, global_size=32, local_size=16,
                 local_crops=2, freeze_last_layer_steps=2)


def numpy_sinkhorn(scores, eps, iters):
    """The official distributed_sinkhorn on one process, element by element in its (K, N) layout."""
    n, k = scores.shape
    q = np.array([[math.exp(scores[i][j] / eps) for i in range(n)] for j in range(k)])  # (K, N)
    total = sum(q[j][i] for j in range(k) for i in range(n))
    q = q / total
    for _ in range(iters):
        for j in range(k):  # every prototype's row -> 1/K
            row = sum(q[j][i] for i in range(n))
            for i in range(n):
                q[j][i] *= (1.0 / k) / row
        for i in range(n):  # every sample's column -> 1/N
            col = sum(q[j][i] for j in range(k))
            for j in range(k):
                q[j][i] *= (1.0 / n) / col
    for i in range(n):
        col = sum(q[j][i] for j in range(k))
        for j in range(k):
            q[j][i] /= col
    return q.T


def test_sinkhorn_matches_a_numpy_loop_and_balances_the_prototypes():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(5, 3, generator=g, dtype=torch.float64) * 2 - 1
    for iters in (0, 1, 3):
        ref = numpy_sinkhorn(scores.numpy(), 0.5, iters)
        np.testing.assert_allclose(sinkhorn(scores, epsilon=0.5, iterations=iters).numpy(), ref, rtol=1e-5)
    q = sinkhorn(scores, epsilon=0.5, iterations=3)
    assert q.dtype == torch.float32 and torch.allclose(q.sum(dim=1), torch.ones(5))
    # after many iterations every prototype receives an equal share of the N samples: N / K each
    q = sinkhorn(scores.float() * 0.1, epsilon=0.05, iterations=200)
    assert torch.allclose(q.sum(dim=0), torch.full((3,), 5 / 3), atol=1e-4)
    assert torch.allclose(q.sum(dim=1), torch.ones(5), atol=1e-5)
    # a shift of every score changes nothing and does not overflow exp (the maximum is subtracted first)
    assert torch.allclose(sinkhorn(scores.float() + 10), sinkhorn(scores.float()), atol=1e-6)


def test_swav_loss_by_hand():
    g = torch.Generator().manual_seed(1)
    scores = [torch.randn(2, 3, generator=g) for _ in range(3)]
    codes = [torch.softmax(torch.randn(2, 3, generator=g), dim=1) for _ in range(2)]
    total, terms = 0.0, 0
    for i in range(2):
        for j in range(3):
            if j == i:
                continue
            for b in range(2):
                logits = [float(scores[j][b, k]) / 0.1 for k in range(3)]
                log_z = math.log(sum(math.exp(x) for x in logits))
                total += -sum(float(codes[i][b, k]) * (logits[k] - log_z) for k in range(3)) / 2
            terms += 1
    assert swav_loss(scores, codes, temperature=0.1).item() == pytest.approx(total / terms, rel=1e-5)
    assert swav_loss([s.half() for s in scores], codes).dtype == torch.float32
    with pytest.raises(ValueError):
        swav_loss(scores[:1], codes[:1])


def test_dino_loss_by_hand():
    g = torch.Generator().manual_seed(2)
    n, k, crops = 2, 4, 3
    student = torch.randn(crops * n, k, generator=g, requires_grad=True)
    teacher = torch.randn(2 * n, k, generator=g, requires_grad=True)
    center = torch.randn(1, k, generator=g)
    s, t, c = student.detach().numpy(), teacher.detach().numpy(), center.numpy()[0]
    total, terms = 0.0, 0
    for i in range(2):
        for v in range(crops):
            if v == i:
                continue
            for b in range(n):
                tq = np.exp((t[i * n + b] - c) / 0.04)
                tq = tq / tq.sum()
                ls = s[v * n + b] / 0.1
                log_p = ls - math.log(np.exp(ls).sum())
                total += -(tq * log_p).sum() / n
            terms += 1
    loss = dino_loss(student, teacher, center, student_temp=0.1, teacher_temp=0.04)
    assert loss.item() == pytest.approx(total / terms, rel=1e-5)
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        dino_loss(student[:3], teacher, center)


def test_multicrop_forward_runs_once_per_resolution_in_crop_order():
    crops = [torch.full((2, 1, 4, 4), float(i)) for i in range(2)] + [torch.full((2, 1, 2, 2), float(i + 2))
                                                                      for i in range(3)]
    calls = []

    def fn(x):
        calls.append(tuple(x.shape))
        return x.flatten(1).mean(1, keepdim=True)

    out = multicrop_forward(fn, crops)
    assert calls == [(4, 1, 4, 4), (6, 1, 2, 2)]
    assert out.flatten().tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_bad_multicrop_settings_are_refused():
    with pytest.raises(ValueError, match="method.backbone"):
        build_method("swav", backbone="r3d_18")
    with pytest.raises(ValueError, match="method.local_size"):
        build_method("dino", **{**TINY_DINO, "local_size": 64})
    with pytest.raises(ValueError, match="method.local_size"):
        build_method("swav", **{**TINY_SWAV, "local_size": 64})


def test_swav_prototypes_are_normalised_and_frozen_first():
    m = build_method("swav", **TINY_SWAV)
    w = m.prototypes.weight
    assert torch.allclose(w.norm(dim=1), torch.ones(6), atol=1e-6)  # from the start (main_swav.py: every step)
    sch = m.schedules(10)
    assert [sch["freeze_prototypes"](s) for s in range(4)] == [1.0, 1.0, 0.0, 0.0]
    assert "use_queue" not in sch  # queue_length 0
    for step in range(4):
        w.grad = torch.ones_like(w)
        m.backbone.conv1.weight.grad = torch.ones_like(m.backbone.conv1.weight)
        m.before_optimizer_step(step, {k: f(step) for k, f in sch.items()})
        assert (w.grad is None) == (step < 2) and m.backbone.conv1.weight.grad is not None
    with torch.no_grad():
        w.mul_(3.0).add_(0.5)
    m.after_optimizer_step(3, {})
    assert torch.allclose(w.norm(dim=1), torch.ones(6), atol=1e-6)


def test_swav_queue_prepends_past_embeddings_once_full():
    m = build_method("swav", **{**TINY_SWAV, "queue_length": 4, "queue_start_step": 3})
    sch = m.schedules(10)
    assert [sch["use_queue"](s) for s in range(5)] == [0.0, 0.0, 0.0, 1.0, 1.0]
    g = torch.Generator().manual_seed(3)
    z = [torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=1) for _ in range(3)]
    scores = [zi @ m.prototypes.weight.detach().t() for zi in z]
    q0 = m.codes(scores[0], z[0], 0, use_queue=False)  # no queue yet: codes of the batch alone, nothing pushed
    assert torch.allclose(q0, sinkhorn(scores[0])) and int(m.queues[0].filled) == 0
    m.codes(scores[0], z[0], 0, use_queue=True)
    q1 = m.codes(scores[1], z[1], 0, use_queue=True)  # the queue was half full: not used yet
    assert torch.allclose(q1, sinkhorn(scores[1])) and m.queues[0].full and int(m.queues[1].filled) == 0
    q2 = m.codes(scores[2], z[2], 0, use_queue=True)  # full: its scores are prepended, the batch's rows kept
    queued = torch.cat([z[0], z[1]]) @ m.prototypes.weight.detach().t()
    assert torch.allclose(q2, sinkhorn(torch.cat([queued, scores[2]]))[4:], atol=1e-6)
    views = [torch.randn(3, 3, 32, 32)] * 2 + [torch.randn(3, 3, 16, 16)] * 2
    with pytest.raises(ValueError, match="method.queue_length"):  # 4 rows for a batch of 3: refused at once
        m({"views": views, "schedule": {"use_queue": 0.0}})


def test_dino_teacher_temperature_center_and_teacher():
    m = build_method("dino", **{**TINY_DINO, "warmup_teacher_temp": 0.04, "teacher_temp": 0.07,
                                "warmup_teacher_temp_steps": 4})
    sch = m.schedules(10)
    expected = list(np.linspace(0.04, 0.07, 4)) + [0.07, 0.07]
    assert [sch["teacher_temp"](s) for s in range(6)] == pytest.approx(expected)
    assert sch["ema_momentum"](0) == pytest.approx(0.996) and sch["ema_momentum"](10) == pytest.approx(1.0)

    m.center.fill_(1.0)
    teacher = torch.arange(24, dtype=torch.float32).view(2, 12)  # two samples' outputs
    m.update_center(teacher)
    assert torch.allclose(m.center, 0.9 * 1.0 + 0.1 * (teacher[0] + teacher[1]) / 2)

    assert m.eval_encoder() is m.teacher_backbone
    assert not any(p.requires_grad for p in [*m.teacher_backbone.parameters(), *m.teacher_head.parameters()])
    grouped = {id(p) for g in m.param_groups() for p in g["params"]}
    assert all(id(p) not in grouped for p in m.teacher_backbone.parameters())
    assert id(m.head.last_layer.parametrizations.weight.original0) not in grouped  # norm_last_layer: fixed norm 1
    no_decay = m.param_groups()[1]
    assert no_decay["wd_scale"] == 0.0 and all(p.ndim == 1 for p in no_decay["params"])


def test_dino_last_layer_gets_no_gradient_in_the_first_steps():
    m = build_method("dino", **TINY_DINO)
    sch = m.schedules(10)
    frames = torch.randint(0, 256, (2, 1, 40, 40, 3), dtype=torch.uint8)
    last = list(m.head.last_layer.parameters())
    for step in range(3):
        values = {k: f(step) for k, f in sch.items()}
        batch = m.device_augment({"frame": frames, "schedule": values}, torch.Generator().manual_seed(step))
        m.zero_grad(set_to_none=True)
        m(batch)["loss"].backward()
        m.before_optimizer_step(step, values)
        frozen = step < 2
        assert all((p.grad is None) == frozen for p in last if p.requires_grad), step
        assert m.head.mlp[0].weight.grad is not None and m.backbone.conv1.weight.grad.abs().sum() > 0
        m.after_optimizer_step(step, values)


def test_dino_teacher_has_no_stochastic_depth():
    m = build_method("dino", **{**TINY_DINO, "backbone": "timm:vit_tiny_patch16_224",
                                "backbone_kwargs": {"drop_path_rate": 0.1}})
    assert m.backbone.spec["kwargs"] == {"drop_path_rate": 0.1}
    assert m.teacher_backbone.spec["kwargs"] == {}
    for a, b in zip(m.backbone.parameters(), m.teacher_backbone.parameters()):
        assert torch.equal(a, b)
