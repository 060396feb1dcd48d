import math

import pytest
import torch

from vidssl.losses.contrastive import moco_loss
from vidssl.models.queue import FeatureQueue


def test_moco_loss_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    queue = torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.8, 0.6]])
    t = 0.5
    expected = 0.0
    for i in range(2):
        pos = float(q[i] @ k[i]) / t
        neg = [float(q[i] @ n) / t for n in queue]
        expected += -(pos - math.log(math.exp(pos) + sum(math.exp(v) for v in neg)))
    assert moco_loss(q, k, queue, t).item() == pytest.approx(expected / 2, rel=1e-6)
    q.requires_grad_(True)
    k.requires_grad_(True)
    moco_loss(q, k, queue, t).backward()
    assert k.grad is None and q.grad.abs().sum() > 0  # keys get no gradient
    with pytest.raises(ValueError, match="embedding size"):
        moco_loss(q, k, torch.zeros(3, 5))


def test_queue_is_a_fifo_of_the_newest_keys():
    queue = FeatureQueue(4, 3)
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(4)) and not queue.full
    a, b, c = torch.full((2, 3), 1.0), torch.full((2, 3), 2.0), torch.full((2, 3), 3.0)
    queue.push(a)
    assert int(queue.ptr) == 2 and int(queue.filled) == 2 and not queue.full
    queue.push(b)
    assert torch.equal(queue.keys, torch.cat([a, b])) and queue.full and int(queue.ptr) == 0
    queue.push(c)  # overwrites the oldest
    assert torch.equal(queue.keys, torch.cat([c, b])) and int(queue.filled) == 4
    with pytest.raises(ValueError, match="multiple of the global batch"):
        queue.push(torch.zeros(3, 3))
    assert set(queue.state_dict()) == {"keys", "ptr", "filled"}  # all of it is checkpointed
