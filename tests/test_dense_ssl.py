"""densecl and scrl specifics: DenseCL's matching and dense loss by hand, its two queues; SCRL's box geometry
(intersections in each view, flips) and box sampling. Their demo training, resume and evaluation:
tests/test_methods_demo.py."""
import math

import pytest
import torch
import torch.nn.functional as F

from vidssl.losses.dense_ssl import densecl_dense_loss, match_locations
from vidssl.methods import build_method
from vidssl.methods.scrl import box_iou, sample_boxes_in, scrl_box_pairs, view_intersections

TINY_RESNET = {"backbone": "resnet18", "backbone_kwargs": {"out_layer": "layer3", "stride8": True}, "crop_size": 32}


def test_matching_recovers_a_permutation_of_the_locations():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 8, 3, 4, generator=g)  # 12 locations
    perm = torch.randperm(12, generator=g)
    k = q.flatten(2)[:, :, perm] * 3.0  # key location j holds query location perm[j] (scaled: cosine ignores it)
    expected = torch.argsort(perm)  # query location i sits at key location perm^-1(i)
    index = match_locations(q, k.view(2, 8, 3, 4))
    assert torch.equal(index, expected.expand(2, -1))


def test_dense_loss_by_hand():
    # N = 1 image, D = 2, two query and two key locations; backbone C = 2; a queue of two negatives
    q_dense = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (1, D, S): location 0 = (1, 0), location 1 = (0, 2)
    k_dense = torch.tensor([[[0.6, 3.0], [0.8, 4.0]]])  # key 0 = (0.6, 0.8), key 1 = (3, 4) -> (0.6, 0.8)
    q_bb = torch.tensor([[[1.0, 0.1], [0.2, 1.0]]])  # query backbone: (1, 0.2), (0.1, 1)
    k_bb = torch.tensor([[[0.0, 5.0], [1.0, 0.5]]])  # key backbone: (0, 1), (5, 0.5)
    queue = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    t = 0.2

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    qb, kb = [(1.0, 0.2), (0.1, 1.0)], [(0.0, 1.0), (5.0, 0.5)]
    match = [max(range(2), key=lambda j: cos(qb[i], kb[j])) for i in range(2)]
    assert match == [1, 0]
    assert match_locations(q_bb, k_bb).tolist() == [match]
    qs = [(1.0, 0.0), (0.0, 1.0)]  # normalised query projections
    ks = [(0.6, 0.8), (0.6, 0.8)]
    expected = 0.0
    for i in range(2):
        pos = cos(qs[i], ks[match[i]]) / t
        neg = [cos(qs[i], n) / t for n in queue.tolist()]
        expected += math.log(math.exp(pos) + sum(math.exp(v) for v in neg)) - pos
    loss = densecl_dense_loss(q_dense, k_dense, q_bb, k_bb, queue, t)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-6)
    # bf16 inputs are computed in float32; the gradient reaches the query projection only
    qd = q_dense.clone().requires_grad_(True)
    kd = k_dense.clone().requires_grad_(True)
    densecl_dense_loss(qd, kd, q_bb, k_bb, queue, t).backward()
    assert kd.grad is None and qd.grad.abs().sum() > 0
    assert densecl_dense_loss(q_dense.bfloat16(), k_dense.bfloat16(), q_bb, k_bb, queue, t).dtype == torch.float32


def test_densecl_pushes_global_and_pooled_dense_keys_and_moves_its_key_encoder():
    m = build_method("densecl", hidden=16, dim=8, queue_size=8, momentum=0.9, **TINY_RESNET)
    batch = {"frame": torch.randint(0, 256, (4, 1, 40, 40, 3), dtype=torch.uint8)}
    batch = m.device_augment(batch, torch.Generator().manual_seed(1))
    old_queue, old_dense = m.queue.keys.clone(), m.dense_queue.keys.clone()
    out = m(batch)
    with torch.no_grad():
        k_map = m.key_backbone(batch["views"][1])
        k, k_dense = m.key_neck(k_map)
    assert torch.allclose(m.queue.keys[:4], F.normalize(k, dim=1), atol=1e-6)
    assert torch.allclose(m.dense_queue.keys[:4], F.normalize(k_dense.mean(dim=(2, 3)), dim=1), atol=1e-6)
    assert torch.equal(m.queue.keys[4:], old_queue[4:]) and torch.equal(m.dense_queue.keys[4:], old_dense[4:])
    assert int(m.queue.ptr) == 4 and int(m.dense_queue.ptr) == 4
    out["loss"].backward()  # the queues changed after the loss was built: backward still works
    assert out["loss_global"] > 0 and out["loss_dense"] > 0 and 0 < out["z_std"] < 1
    assert not any(p.requires_grad for p in m.key_backbone.parameters())
    with torch.no_grad():
        m.backbone.conv1.weight.add_(1.0)
    before = m.key_backbone.conv1.weight.clone()
    m.after_optimizer_step(1, {"ema_momentum": 0.9})
    assert torch.allclose(m.key_backbone.conv1.weight, 0.9 * before + 0.1 * m.backbone.conv1.weight)
    assert m.eval_encoder() is m.backbone


@pytest.mark.parametrize("name", ["densecl", "scrl"])
def test_backbones_without_a_spatial_map_are_refused(name):
    with pytest.raises(ValueError, match="method.backbone='timm:vit_tiny_patch16_224' is a ViT"):
        build_method(name, backbone="timm:vit_tiny_patch16_224")
    with pytest.raises(ValueError, match="method.backbone='r3d_18' is a 3D video backbone"):
        build_method(name, backbone="r3d_18")


def test_view_intersections_by_hand_with_flips():
    # canvas crops (top, left, h, w); views are 10 x 10
    crops1 = torch.tensor([[10, 20, 40, 50], [10, 20, 40, 50], [0, 0, 10, 10]])
    crops2 = torch.tensor([[30, 40, 60, 30], [30, 40, 60, 30], [20, 20, 10, 10]])  # the third pair is disjoint
    flips1 = torch.tensor([False, True, False])
    flips2 = torch.tensor([False, False, True])
    in1, in2, nonempty = view_intersections(crops1, flips1, crops2, flips2, 10)
    # shared canvas region: x 40..70, y 30..50
    # view 1 maps x -> (x - 20) * 10 / 50, y -> (y - 10) * 10 / 40: (4, 5, 10, 10); mirrored: (0, 5, 6, 10)
    # view 2 maps x -> (x - 40) * 10 / 30, y -> (y - 30) * 10 / 60: (0, 0, 10, 10 / 3)
    assert in1[0].tolist() == pytest.approx([4, 5, 10, 10])
    assert in1[1].tolist() == pytest.approx([0, 5, 6, 10])
    assert in2[0].tolist() == pytest.approx([0, 0, 10, 10 / 3]) and in2[1].tolist() == pytest.approx([0, 0, 10, 10 / 3])
    assert nonempty.tolist() == [True, True, False]


def test_box_pairs_match_the_same_canvas_region_in_both_views():
    g = torch.Generator().manual_seed(0)
    crops1 = torch.tensor([[10, 20, 40, 50], [0, 0, 64, 64], [0, 0, 64, 64], [0, 0, 20, 20]])
    crops2 = torch.tensor([[30, 40, 60, 30], [0, 0, 64, 64], [8, 4, 32, 40], [30, 30, 20, 20]])
    flips1 = torch.tensor([False, False, True, False])
    flips2 = torch.tensor([True, True, False, False])
    size, k, min_size = 32, 6, 4
    b1, b2, valid = scrl_box_pairs(crops1, flips1, crops2, flips2, size, k, min_size, g)
    assert b1.shape == b2.shape == (4, k, 4) and valid.tolist() == [True, True, True, False]  # the last: disjoint

    def to_canvas(boxes, crops, flips):  # invert view -> canvas by hand
        out = []
        for i in range(3):
            t, l, h, w = crops[i].tolist()
            for x1, y1, x2, y2 in boxes[i].tolist():
                if flips[i]:
                    x1, x2 = size - x2, size - x1
                out.append([l + x1 * w / size, t + y1 * h / size, l + x2 * w / size, t + y2 * h / size])
        return torch.tensor(out)

    c1, c2 = to_canvas(b1, crops1, flips1), to_canvas(b2, crops2, flips2)
    assert torch.allclose(c1, c2, atol=1e-3)  # each pair covers one canvas region
    assert (b1 >= 0).all() and (b1 <= size).all() and (b2 >= 0).all() and (b2 <= size).all()
    # identical crops, view 2 mirrored: its boxes are view 1's mirrored
    assert torch.allclose(b2[1], torch.stack([size - b1[1, :, 2], b1[1, :, 1], size - b1[1, :, 0], b1[1, :, 3]], 1))
    # boxes are >= min_size in the view that magnifies the region least, per axis: for pair 0, x in view 1
    # (50 canvas px -> 32) and y in view 2 (60 -> 32)
    sides = c1[:k, 2:] - c1[:k, :2]  # canvas pixels
    assert (sides[:, 0] * 32 / 50 >= min_size - 1e-4).all() and (sides[:, 1] * 32 / 60 >= min_size - 1e-4).all()
    again = scrl_box_pairs(crops1, flips1, crops2, flips2, size, k, min_size, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], b1) and torch.equal(again[1], b2)  # every draw from the generator


@pytest.mark.parametrize("grid", [True, False])
def test_sampled_boxes_lie_inside_are_large_enough_and_spread(grid):
    g = torch.Generator().manual_seed(3)
    width, height = torch.tensor([40.0, 100.0, 9.0]), torch.tensor([60.0, 20.0, 9.0])
    boxes = sample_boxes_in(width, height, 10, 8, g, iou_threshold=0.5, tries=50, grid=grid)
    assert boxes.shape == (3, 10, 4) and torch.equal(boxes, boxes.round())  # integer boxes
    assert (boxes[..., :2] >= 0).all() and (boxes[..., 2] <= width[:, None]).all()
    assert (boxes[..., 3] <= height[:, None]).all() and (boxes[..., 2:] - boxes[..., :2] >= 8).all()
    for i in range(2):  # 50 tries find boxes below the IoU threshold in regions this large
        iou = box_iou(boxes[i:i + 1], boxes[i:i + 1])[0]
        for j in range(1, 10):
            assert iou[j, :j].max() < 0.5


def test_scrl_skips_images_without_an_intersection_and_trains_on_matched_boxes():
    m = build_method("scrl", proj_hidden=16, proj_dim=8, pred_hidden=16, min_box_size=8, num_boxes=3, **TINY_RESNET)
    batch = m.device_augment({"frame": torch.randint(0, 256, (4, 1, 40, 40, 3), dtype=torch.uint8)},
                             torch.Generator().manual_seed(0))
    assert batch["boxes"][0].shape == (4, 3, 4) and batch["box_valid"].shape == (4,)
    batch["box_valid"] = torch.tensor([True, False, True, False])
    out = m(batch)
    assert out["boxes"] == 6 and out["skipped_images"] == 2 and out["z_std"] > 0
    out["loss"].backward()
    assert m.backbone.conv1.weight.grad.abs().sum() > 0
    m.zero_grad()
    out = m({**batch, "box_valid": torch.zeros(4, dtype=torch.bool)})
    assert out["loss"] == 0 and out["skipped_images"] == 4 and out["boxes"] == 0
    out["loss"].backward()
    assert m.backbone.conv1.weight.grad.abs().sum() == 0
    assert m.schedules(10)["ema_momentum"](0) == pytest.approx(0.996) and m.eval_encoder() is m.backbone
