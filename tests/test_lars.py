import math

import pytest
import torch
from torch import nn

from vidssl.optim.lars import LARS, exclude_bias_and_norm


def test_lars_two_steps_by_hand():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    opt = LARS([w], lr=2.0, weight_decay=0.5, momentum=0.9, eta=0.03)
    # step 1: d = g + 0.5 * w = [1.5, -2] + [1.5, 2] = [3, 0], ||d|| = 3
    #         trust ratio = 0.03 * 5 / 3 = 0.05 -> d = [0.15, 0]; mu = d
    #         w = [3, 4] - 2 * [0.15, 0] = [2.7, 4]
    w.grad = torch.tensor([1.5, -2.0])
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([2.7, 4.0]))
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], torch.tensor([0.15, 0.0]))
    # step 2: d = [-1.35, -2] + 0.5 * [2.7, 4] = [0, 0]: zero update norm -> ratio 1 (no NaN), d = 0
    #         mu = 0.9 * [0.15, 0] + 0 = [0.135, 0]; w = [2.7 - 2 * 0.135, 4] = [2.43, 4]
    w.grad = torch.tensor([-1.35, -2.0])
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([2.43, 4.0]))


def test_lars_zero_weight_norm_uses_ratio_one():
    # ||w|| = 0 -> ratio 1: d = g + 0.1 * 0 = [1, 2]; w = 0 - 0.5 * [1, 2]
    w = nn.Parameter(torch.zeros(2))
    opt = LARS([w], lr=0.5, weight_decay=0.1, eta=0.001)
    w.grad = torch.tensor([1.0, 2.0])
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([-0.5, -1.0]))


def test_lars_trust_ratio_scales_by_norms():
    # no weight decay: d = g * eta * ||w|| / ||g||, so the step size is lr * eta * ||w|| whatever ||g||
    w = nn.Parameter(torch.tensor([[1.0, 2.0], [2.0, 4.0]]))  # ||w|| = 5
    opt = LARS([w], lr=1.0, momentum=0.0, eta=0.01)
    g = torch.tensor([[0.0, 600.0], [800.0, 0.0]])  # ||g|| = 1000
    w.grad = g
    opt.step()
    expected = torch.tensor([[1.0, 2.0], [2.0, 4.0]]) - g * (0.01 * 5 / 1000)
    torch.testing.assert_close(w.detach(), expected)
    assert math.isclose(float((expected - torch.tensor([[1.0, 2.0], [2.0, 4.0]])).norm()), 0.05, rel_tol=1e-6)


def test_excluded_group_is_plain_sgd_momentum():
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(3, 4))
    b = a.detach().clone().requires_grad_(True)
    reg = nn.Parameter(torch.randn(5))
    # the excluded group's weight decay (0.3) must be ignored
    lars = LARS([{"params": [a], "lars_exclude": True, "weight_decay": 0.3, "name": "bias"},
                 {"params": [reg], "name": "w"}], lr=0.1, weight_decay=0.01, momentum=0.9)
    sgd = torch.optim.SGD([b], lr=0.1, momentum=0.9)
    for _ in range(4):
        g = torch.randn(3, 4)
        a.grad, b.grad, reg.grad = g.clone(), g.clone(), torch.randn(5)
        lars.step()
        sgd.step()
        torch.testing.assert_close(a, b)
    assert not torch.allclose(a, a.detach() * 0)  # it moved


def test_lr_scheduler_extra_keys_and_state_dict():
    w = nn.Parameter(torch.ones(4))
    opt = LARS([{"params": [w], "name": "all", "lr_scale": 1.0}], lr=1.0, eta=0.1, momentum=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    moved = []
    for _ in range(3):
        before = w.detach().clone()
        # w = c * 1, g = 1: ratio = 0.1 * 2c / 2 = 0.1c, so each entry moves by lr * 0.1c (a fraction 0.1 * lr)
        w.grad = torch.ones(4)
        opt.step()
        sched.step()
        moved.append(float((before - w.detach())[0] / before[0]))
    assert moved == pytest.approx([0.1 * 1.0, 0.1 * 0.5, 0.1 * 0.25])
    assert opt.param_groups[0]["name"] == "all" and opt.param_groups[0]["lars_exclude"] is False
    opt2 = LARS([{"params": [w], "name": "all", "lr_scale": 1.0}], lr=1.0)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.125) and opt2.param_groups[0]["eta"] == 0.1


def test_exclude_bias_and_norm():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2, bias=False))
    m[2].weight.requires_grad_(False)
    regular, excluded = exclude_bias_and_norm(m.named_parameters())
    assert [p.shape for p in regular] == [torch.Size([4, 3])]
    assert {id(p) for p in excluded} == {id(m[0].bias), id(m[1].weight), id(m[1].bias)}


def test_defaults_match_barlow_twins():
    opt = LARS([nn.Parameter(torch.ones(1))], lr=0.1)
    g = opt.param_groups[0]
    assert (g["weight_decay"], g["momentum"], g["eta"], g["lars_exclude"]) == (0.0, 0.9, 0.001, False)
