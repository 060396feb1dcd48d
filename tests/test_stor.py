"""stor specifics: spatial-overlap boxes, rotation labels against the pixels, heads and labels, the loss against a
hand computation (its demo training, resume and evaluation: tests/test_methods_demo.py)."""
import math

import numpy as np
import pytest
import torch

from vidssl.methods import build_method
from vidssl.methods.stor import overlap_boxes, rotate_views, stor_loss

TINY = dict(backbone="r3d_18", crop_size=32, proj_hidden=16, proj_dim=8, pred_hidden=16)


@pytest.fixture(scope="module")
def method():
    torch.manual_seed(0)
    return build_method("stor", **TINY)


def intersection(a, b) -> int:
    """Pixels inside both boxes (top, left, h, w), counted on a mask."""
    H = max(a[0] + a[2], b[0] + b[2])
    W = max(a[1] + a[3], b[1] + b[3])
    m = np.zeros((2, H, W), bool)
    for i, (t, l, h, w) in enumerate((a, b)):
        m[i, t:t + h, l:l + w] = True
    return int((m[0] & m[1]).sum())


@pytest.mark.parametrize("rates", [(1.0, 0.8, 0.6, 0.4, 0.2), (0.4,), (0.2,)])
def test_overlap_boxes_share_the_labelled_fraction_of_the_first_box(rates):
    H = W = 64
    a, b, labels = overlap_boxes(200, H, W, rates, torch.Generator().manual_seed(1))
    assert a.shape == b.shape == (200, 4) and labels.shape == (200,)
    for box_a, box_b, k in zip(a.tolist(), b.tolist(), labels.tolist()):
        for t, l, h, w in (box_a, box_b):
            assert 0 <= t and t + h <= H and 0 <= l and l + w <= W and h >= 1 and w >= 1
        assert box_a[2:] == box_b[2:]  # the same size
        p_h, p_w = box_a[2:]
        ratio = intersection(box_a, box_b) / (p_h * p_w)
        assert abs(ratio - rates[k]) <= 1 / min(p_h, p_w) + 1e-9, (box_a, box_b, rates[k])
        if rates[k] == 1.0:
            assert box_a == box_b
        area = p_h * p_w / (H * W)  # first box: area >= 0.2 of the canvas (before rounding), aspect in 3/4..4/3
        assert area >= 0.2 - 2 / H and 3 / 4 - 0.05 <= p_w / p_h <= 4 / 3 + 0.05
    if len(rates) > 1:
        assert set(labels.tolist()) == set(range(len(rates)))  # every class occurs
    again = overlap_boxes(200, H, W, rates, torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip((a, b, labels), again))  # the generator decides everything
    with pytest.raises(ValueError, match="spatial_rates"):
        overlap_boxes(1, H, W, (0.0,))


def test_rotation_matches_pil_rotate_90_by_hand():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)  # (N, C, H, W), all values distinct
    k = torch.tensor([1, 3])
    out = rotate_views(x, k)
    for n, r in enumerate(k.tolist()):
        expected = x[n].clone()
        for _ in range(r):  # one counter-clockwise quarter turn: out[i, j] = in[j, W - 1 - i]
            prev, expected = expected, torch.empty_like(expected)
            for i in range(4):
                for j in range(4):
                    expected[:, i, j] = prev[:, j, 3 - i]
        assert torch.equal(out[n], expected)
    assert torch.equal(rotate_views(x, torch.tensor([0, 0])), x)


def test_each_view_is_rotated_by_its_label(method):
    """Full-canvas boxes, no flip, the null recipe: each view is the normalised clip rotated by its label."""
    import dataclasses

    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (6, 2, 32, 32, 3), dtype=torch.uint8, generator=g)
    old = method.null_view
    method.null_view = dataclasses.replace(old, flip_p=0.0)
    try:
        rot = torch.tensor([0, 1, 2, 3, 1, 3])
        boxes = torch.tensor([[0, 0, 32, 32]]).expand(6, 4)
        out = method._augment(clips, boxes, torch.zeros(6, dtype=torch.bool), rot, g)  # (N, 3, T, s, s)
    finally:
        method.null_view = old
    assert out.shape == (6, 3, 2, 32, 32)
    frames = clips.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # "tf" normalisation to [-1, 1]
    for n, r in enumerate(rot.tolist()):
        expected = torch.from_numpy(np.rot90(frames[n].numpy(), r, axes=(2, 3)).copy())
        assert torch.allclose(out[n], expected, atol=1e-4), n


def test_device_augment_gives_views_and_labels_that_match_the_boxes(method):
    g = torch.Generator().manual_seed(3)
    B = 5
    batch = {"clip": torch.randint(0, 256, (B, 4, 40, 40, 3), dtype=torch.uint8, generator=g),
             "clip_b": torch.randint(0, 256, (B, 4, 40, 40, 3), dtype=torch.uint8, generator=g),
             "clip_rate": torch.tensor([0, 1, 2, 3, 0]), "clip_b_overlap": torch.tensor([0, 1, 2, 3, 4])}
    out = method.device_augment(batch, torch.Generator().manual_seed(7))
    again = method.device_augment(batch, torch.Generator().manual_seed(7))
    assert [v.shape for v in out["views"]] == [(B, 3, 4, 32, 32)] * 2
    assert all(torch.equal(a, b) for a, b in zip(out["views"], again["views"]))
    assert out["spa_label"].shape == (B,) and out["rot_label"].shape == (B, 2) and out["spa_boxes"].shape == (B, 2, 4)
    assert int(out["rot_label"].min()) >= 0 and int(out["rot_label"].max()) <= 3
    for (a, b), k in zip(out["spa_boxes"].tolist(), out["spa_label"].tolist()):
        assert abs(intersection(a, b) / (a[2] * a[3]) - method.spatial_rates[k]) <= 1 / min(a[2:]) + 1e-9
    assert all(v.min() >= -1.0 - 1e-5 and v.max() <= 1.0 + 1e-5 for v in out["views"])  # "tf" range


def test_heads_labels_and_loss_equal_the_hand_computed_weighted_sum(method):
    g = torch.Generator().manual_seed(0)
    B = 4
    batch = {"views": [torch.randn(B, 3, 4, 32, 32, generator=g) for _ in range(2)],
             "spa_label": torch.tensor([0, 1, 2, 4]), "clip_b_overlap": torch.tensor([4, 3, 0, 1]),
             "clip_rate": torch.tensor([3, 2, 1, 0]), "rot_label": torch.tensor([[0, 1], [2, 3], [3, 3], [1, 0]])}
    method.train()
    out = method(batch)
    x1, x2 = batch["views"]
    with torch.no_grad():  # BatchNorm in train mode: the same batch gives the same outputs
        f1, f2 = method.backbone.forward_global(x1), method.backbone.forward_global(x2)
        logits = method.heads(f1, f2)
        p = [method.predictor(method.projector(f)).numpy().astype(np.float64) for f in (f1, f2)]
        z = [method.target(x).numpy().astype(np.float64) for x in (x1, x2)]
    assert {k: tuple(v.shape) for k, v in logits.items()} == {
        "spa": (B, 5), "tem": (B, 5), "pace1": (B, 5), "pace2": (B, 5), "rot1": (B, 5), "rot2": (B, 5)}
    labels = method.labels(batch)
    assert labels["tem"].tolist() == [4, 3, 0, 1] and labels["pace1"].tolist() == labels["pace2"].tolist() == [3, 2, 1, 0]
    assert labels["rot1"].tolist() == [0, 2, 3, 1] and labels["rot2"].tolist() == [1, 3, 3, 0]

    def ce(lg, y):
        total = 0.0
        for row, t in zip(lg.numpy().astype(np.float64), y.tolist()):
            total += math.log(sum(math.exp(v) for v in row)) - row[t]
        return total / lg.shape[0]

    def byol(a, b):
        return float(np.mean([2 - 2 * (u @ v) / (np.linalg.norm(u) * np.linalg.norm(v)) for u, v in zip(a, b)]))

    hand = (0.1 * (byol(p[0], z[1]) + byol(p[1], z[0])) + ce(logits["spa"], labels["spa"])
            + ce(logits["tem"], labels["tem"]) + ce(logits["pace1"], labels["pace1"]) + ce(logits["pace2"], labels["pace2"])
            + ce(logits["rot1"], labels["rot1"]) + ce(logits["rot2"], labels["rot2"]))
    assert out["loss"].item() == pytest.approx(hand, rel=1e-4)
    for key in ("loss_byol", "loss_spa", "loss_tem", "loss_pace", "loss_rot", "acc_spa", "acc_tem", "acc_pace",
                "acc_rot", "z_std"):
        assert out[key].ndim == 0 and math.isfinite(out[key].item())
    acc_rot = ((logits["rot1"].argmax(1) == labels["rot1"]).float().mean()
               + (logits["rot2"].argmax(1) == labels["rot2"]).float().mean()) / 2
    assert out["acc_rot"].item() == pytest.approx(acc_rot.item())
    out["loss"].backward()  # gradients reach the backbone and every head, never the target
    assert all(p.grad is not None for n, p in method.named_parameters() if p.requires_grad)
    assert all(p.grad is None for p in method.target_backbone.parameters())
    method.zero_grad(set_to_none=True)


def test_stor_loss_weights_by_hand():
    lg = {k: torch.tensor([[2.0, 0.0, -1.0, 0.5, 0.0]]) for k in ("spa", "tem", "pace1", "pace2", "rot1", "rot2")}
    y = {k: torch.tensor([0]) for k in lg}
    p = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    z = [torch.tensor([[1.0, 1.0]]), torch.tensor([[3.0, 0.0]])]
    ce = math.log(math.exp(2) + 1 + math.exp(-1) + math.exp(0.5) + 1) - 2.0
    byol = (2 - 2 * 1.0) + (2 - 2 * (1 / math.sqrt(2)))  # cos(p1, z2) = 1, cos(p2, z1) = 1/sqrt(2)
    loss, terms = stor_loss(p, z, lg, y, (0.5, 1.0, 2.0, 3.0, 4.0))
    assert loss.item() == pytest.approx(0.5 * byol + ce + 2 * ce + 3 * 2 * ce + 4 * 2 * ce, rel=1e-6)
    assert terms["loss_pace"].item() == pytest.approx(ce) and terms["loss_byol"].item() == pytest.approx(byol)


def test_recipe_pieces(method):
    from vidssl.config import DataConfig

    spec = method.data_spec(DataConfig(clip_len=16, frame_rate=None, frame_skip=1, img_size=128))
    clip, clip_b = spec.requests
    assert (clip.name, clip.length, clip.crop, clip.rate_choices, clip.frame_skip) == ("clip", 16, "square", (1, 2, 4, 8), 1)
    assert (clip_b.placement, clip_b.anchor, clip_b.overlap_rule, clip_b.crop_as) == ("overlap", "clip", "span", "clip")
    assert clip_b.overlap_choices == (1.0, 0.8, 0.6, 0.4, 0.2)
    sched = method.schedules(100)["ema_momentum"]
    assert sched(0) == pytest.approx(0.996) and sched(99) == pytest.approx(0.996)  # constant, as the reference
    for a, b in zip(method.backbone.parameters(), method.target_backbone.parameters()):
        assert torch.equal(a, b)  # the target starts as a copy of the (Glorot-initialised) online network
    w = method.spa_head[0].weight  # Linear(1024, 1024) Glorot-uniform: bound sqrt(6 / 2048)
    assert w.abs().max() <= math.sqrt(6 / 2048) and w.std().item() == pytest.approx(math.sqrt(2 / 2048), rel=0.05)
    conv = method.backbone.stem[0].weight  # Conv3d(3, 64, (3, 7, 7)): fans 3 * 147 and 64 * 147
    assert conv.abs().max() <= math.sqrt(6 / (67 * 147))
    assert all(float(m.weight.detach().min()) == 1.0 for m in method.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert len(method.param_groups()) == 1  # weight decay on every parameter (the reference's plain SGD)
    assert method.eval_encoder() is method.backbone
    with pytest.raises(ValueError, match="video backbone"):
        build_method("stor", backbone="resnet18", **{k: v for k, v in TINY.items() if k != "backbone"})
    with pytest.raises(ValueError, match="loss_weights"):
        build_method("stor", loss_weights=[1.0, 1.0], **TINY)
    with pytest.raises(ValueError, match="cls_outputs"):
        build_method("stor", cls_outputs=3, **TINY)
