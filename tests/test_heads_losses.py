import math

import pytest
import torch
import torch.nn as nn

from vidssl.losses.byol import byol_loss
from vidssl.models.heads import byol_predictor, byol_projector, mlp


def test_byol_loss_by_hand():
    # sample 0: p = (1, 0), z = (1, 1): cos = 1/sqrt(2), term = 2 - sqrt(2)      ~ 0.5858
    # sample 1: p = (0, 1), z = (0, -2): cos = -1,        term = 2 - 2 * (-1) = 4
    # mean = (2 - sqrt(2) + 4) / 2 = 3 - sqrt(2) / 2                              ~ 2.2929
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[1.0, 1.0], [0.0, -2.0]])
    assert byol_loss(p, z).item() == pytest.approx(3 - math.sqrt(2) / 2, abs=1e-6)


def test_byol_loss_zero_for_equal_and_scale_invariant():
    p = torch.randn(8, 16)
    assert byol_loss(p, p).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(p, 3 * p).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(p, -p).item() == pytest.approx(4.0, abs=1e-6)


def test_byol_loss_stops_the_target_gradient():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    byol_loss(p, z).backward()
    assert z.grad is None
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_byol_loss_in_float32():
    p, z = torch.randn(6, 32), torch.randn(6, 32)
    out = byol_loss(p.bfloat16(), z.half())
    assert out.dtype == torch.float32 and out.ndim == 0
    assert out.item() == pytest.approx(byol_loss(p.bfloat16().float(), z.half().float()).item(), abs=1e-6)


def kinds(seq):
    return [type(m) for m in seq]


def test_mlp_structure_and_shapes():
    m = mlp(10, 32, 6)
    assert kinds(m) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (m[0].in_features, m[0].out_features, m[3].in_features, m[3].out_features) == (10, 32, 32, 6)
    assert m(torch.randn(5, 10)).shape == (5, 6)

    m = mlp(10, 32, 6, num_layers=3, batch_norm=False, last_bn=True)
    assert kinds(m) == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert not m[-1].affine and m[-1].num_features == 6
    assert m(torch.randn(5, 10)).shape == (5, 6)

    assert kinds(mlp(10, 32, 6, num_layers=1)) == [nn.Linear]
    with pytest.raises(ValueError):
        mlp(10, 32, 6, num_layers=0)


def test_byol_heads():
    proj, pred = byol_projector(64), byol_predictor()
    assert kinds(proj) == kinds(pred) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (proj[0].in_features, proj[0].out_features, proj[3].out_features) == (64, 4096, 256)
    assert (pred[0].in_features, pred[0].out_features, pred[3].out_features) == (256, 4096, 256)
    assert proj[1].affine
    small = byol_projector(64, hidden=32, out=8)
    assert small(torch.randn(4, 64)).shape == (4, 8)
