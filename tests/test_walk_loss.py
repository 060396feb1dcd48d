import math

import pytest
import torch
import torch.nn.functional as F

from vidssl.losses import walk_loss
from vidssl.losses.walk import transition_matrices


def naive_walk_loss(q, temperature, skip_shortest=True, order="right"):
    """The reference's loop (videowalk model.py), written out without dropout."""
    B, C, T, N = q.shape
    A12 = [F.softmax(torch.einsum("bcn,bcm->bnm", q[:, :, t], q[:, :, t + 1]) / temperature, -1) for t in range(T - 1)]
    A21 = [F.softmax(torch.einsum("bcn,bcm->bnm", q[:, :, t], q[:, :, t + 1]).transpose(1, 2) / temperature, -1)
           for t in range(T - 1)]
    losses = []
    for i in range(0 if not skip_shortest else 1, T - 1):
        g = A12[:i + 1] + A21[:i + 1][::-1]
        right = left = g[0]
        for a in g[1:]:
            right, left = right @ a, a @ left
        P = right if order == "right" else left
        target = torch.arange(N).repeat(B)
        losses.append(F.cross_entropy(torch.log(P + 1e-20).flatten(0, 1), target))
    return sum(losses) / len(losses)


def test_two_frame_cycle_by_hand():
    # two nodes, orthogonal embeddings, identical in both frames: q_t . q_{t+1} = identity
    q = torch.zeros(1, 2, 2, 2)
    q[0, 0, :, 0] = 1
    q[0, 1, :, 1] = 1
    tau = 0.5
    loss, logs = walk_loss(q, temperature=tau, skip_shortest=False)
    p = math.exp(1 / tau) / (math.exp(1 / tau) + 1)  # stay-probability of one step
    stay = p * p + (1 - p) * (1 - p)  # 0 -> 1 -> 0 returns home
    assert loss.item() == pytest.approx(-math.log(stay), rel=1e-5)
    assert logs["walk1_acc"].item() == 1.0


@pytest.mark.parametrize("order", ["right", "left"])
@pytest.mark.parametrize("skip", [True, False])
def test_matches_naive_loop(order, skip):
    torch.manual_seed(0)
    q = F.normalize(torch.randn(3, 8, 5, 6), dim=1)
    loss, logs = walk_loss(q, temperature=0.1, skip_shortest=skip, order=order)
    assert loss.item() == pytest.approx(naive_walk_loss(q, 0.1, skip, order).item(), rel=1e-5)
    assert sorted(k for k in logs if k.endswith("acc")) == [f"walk{k}_acc" for k in range(2 if skip else 1, 5)]


def test_left_and_right_differ():
    torch.manual_seed(1)
    q = F.normalize(torch.randn(2, 8, 4, 5), dim=1)
    assert walk_loss(q, 0.1, order="left")[0].item() != pytest.approx(walk_loss(q, 0.1, order="right")[0].item())


def test_edge_dropout_backward_mask_contains_forward_mask():
    torch.manual_seed(0)
    q = F.normalize(torch.randn(2, 4, 3, 7), dim=1)
    torch.manual_seed(5)
    fwd, bwd = transition_matrices(q, 0.1, edge_dropout=0.3)
    dropped_f = fwd == 0
    # every edge dropped forward is dropped in the backward matrix too (the reference's in-place mask)
    assert dropped_f.any()
    assert bool((bwd.transpose(-1, -2)[dropped_f] == 0).all())
    assert (bwd == 0).sum() > dropped_f.sum()


def test_gradients_flow_and_short_clip_rejected():
    q = F.normalize(torch.randn(1, 4, 3, 5), dim=1).requires_grad_()
    walk_loss(q, 0.1, edge_dropout=0.1)[0].backward()
    assert q.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no walk"):
        walk_loss(q[:, :, :2], 0.1)
