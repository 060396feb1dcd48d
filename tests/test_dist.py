import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from dist_helpers import spawn
from torch import nn

from vidssl import dist as D

WORLD = 2
N_LOCAL = 4  # per-rank batch
TAU = 0.5


# ---------------------------------------------------------------- single process

def test_single_process_is_identity_like():
    assert not D.is_distributed() and D.get_rank() == 0 and D.get_world_size() == 1
    x = torch.randn(5, 3, requires_grad=True)
    g = D.gather(x)
    assert torch.equal(g, x) and not g.requires_grad
    y = D.gather_with_grad(x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(5, 3))
    for fn in (D.all_reduce_mean, D.all_reduce_sum):
        r = fn(x)
        assert torch.equal(r, x) and not r.requires_grad
        r.add_(1)  # a new tensor: x is untouched
        assert not torch.equal(r, x)
    assert D.all_reduce_mean(torch.tensor([3])).dtype == torch.float32


def test_single_process_shuffle_roundtrip_and_reproducible():
    x = torch.arange(16.0)[:, None].repeat(1, 2)
    s1, idx1 = D.batch_shuffle(x, generator=torch.Generator().manual_seed(0))
    s2, idx2 = D.batch_shuffle(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2) and torch.equal(idx1, idx2)
    assert not torch.equal(s1, x)  # really permuted
    assert torch.equal(s1[:, 0].sort().values, x[:, 0])
    assert torch.equal(D.batch_unshuffle(s1, idx1), x)
    assert torch.equal(D.batch_unshuffle(s1 * 10, idx1), x * 10)  # e.g. key embeddings of the shuffled batch
    with pytest.raises(ValueError):
        D.batch_unshuffle(s1, idx1[:8])


# ---------------------------------------------------------------- two gloo processes

def _global_data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(WORLD * N_LOCAL, 5, generator=g), torch.randn(WORLD * N_LOCAL, 5, generator=g)


def _model():
    torch.manual_seed(0)
    return nn.Linear(5, 4)


def _embed(model, x1, x2):
    z = F.normalize(model(torch.cat([x1, x2])), dim=1)
    return z[:len(x1)], z[len(x1):]


def _global_loss(z1, z2):
    """InfoNCE of every view-1 sample against all view-2 samples of the (global) batch."""
    return F.cross_entropy(z1 @ z2.T / TAU, torch.arange(len(z1)))


def _naive_gather(x):
    """The buggy variant: gradient only through the local slot, no all-reduce in backward."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


def _ddp_averaged_grads(model):
    """What DistributedDataParallel leaves in .grad: the mean over ranks (done by hand: constructing DDP
    imports torch._dynamo, seconds per process)."""
    grads = _grads(model)
    for g in grads:
        dist.all_reduce(g)
        g /= dist.get_world_size()
    return grads


def _worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        res = {"rank": D.get_rank(), "world": D.get_world_size(), "is_dist": D.is_distributed()}
        # gather / reductions
        x = (torch.arange(6.0).view(3, 2) + 100 * rank).requires_grad_(True)
        res["gather"] = D.gather(x)
        res["gather_requires_grad"] = res["gather"].requires_grad
        res["gwg_forward"] = D.gather_with_grad(x).detach()
        v = torch.tensor([rank + 1.0, 10.0 * (rank + 1)])
        res["mean"], res["sum"], res["v_after"] = D.all_reduce_mean(v), D.all_reduce_sum(v), v.clone()

        # gradients through gather_with_grad, averaged over ranks as DDP does
        X1, X2 = _global_data()
        sl = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
        x1, x2 = X1[sl], X2[sl]
        model = _model()
        # (a) each rank computes the same global loss on the gathered batch
        z1, z2 = _embed(model, x1, x2)
        _global_loss(D.gather_with_grad(z1), D.gather_with_grad(z2)).backward()
        res["grad_global"] = _ddp_averaged_grads(model)
        # (b) each rank computes its own anchors against all gathered keys; global loss = mean over ranks
        model.zero_grad()
        z1, z2 = _embed(model, x1, x2)
        F.cross_entropy(z1 @ D.gather_with_grad(z2).T / TAU, torch.arange(N_LOCAL) + rank * N_LOCAL).backward()
        res["grad_local"] = _ddp_averaged_grads(model)
        # (c) negative control: naive gather
        model.zero_grad()
        z1, z2 = _embed(model, x1, x2)
        _global_loss(_naive_gather(z1), _naive_gather(z2)).backward()
        res["grad_naive"] = _ddp_averaged_grads(model)

        # shuffle-BN across ranks; different generator seeds: rank 0's permutation must win
        xs = torch.arange(float(N_LOCAL))[:, None] + N_LOCAL * rank
        shuffled, idx = D.batch_shuffle(xs, generator=torch.Generator().manual_seed(7 + rank))
        res["shuffled"], res["idx_unshuffle"] = shuffled, idx
        res["unshuffled"] = D.batch_unshuffle(shuffled * 10, idx)
        res["xs"] = xs
        seen = []
        res["sbf"] = D.shuffle_bn_forward(lambda v: seen.append(v.clone()) or (v * 10, v + 1), xs, seed=7 + rank)
        res["sbf_seen"] = seen[0]

        # unequal batch sizes -> clear error on every rank (no hang)
        try:
            D.gather_with_grad(torch.zeros(3 - rank, 2, requires_grad=True))
            res["unequal_error"] = None
        except ValueError as e:
            res["unequal_error"] = str(e)
        torch.save(res, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()



@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dist"))
    spawn(_worker, (out,), WORLD)
    return [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(WORLD)]


def test_two_ranks_basics(two_ranks):
    r0, r1 = two_ranks
    assert [(r["rank"], r["world"], r["is_dist"]) for r in two_ranks] == [(0, 2, True), (1, 2, True)]
    expected = torch.cat([torch.arange(6.0).view(3, 2), torch.arange(6.0).view(3, 2) + 100])
    for r in two_ranks:
        assert torch.equal(r["gather"], expected) and not r["gather_requires_grad"]
        assert torch.equal(r["gwg_forward"], expected)
        assert torch.equal(r["mean"], torch.tensor([1.5, 15.0])) and torch.equal(r["sum"], torch.tensor([3.0, 30.0]))
    assert torch.equal(r0["v_after"], torch.tensor([1.0, 10.0]))  # input not reduced in place
    assert "same batch size" in r0["unequal_error"] and "[3, 2]" in r1["unequal_error"]


def test_two_ranks_gather_with_grad_matches_single_process(two_ranks):
    model = _model()
    X1, X2 = _global_data()
    z1, z2 = _embed(model, X1, X2)
    _global_loss(z1, z2).backward()
    single = _grads(model)
    for r in two_ranks:
        for key in ("grad_global", "grad_local"):
            for got, ref in zip(r[key], single):
                torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
        # without the all-reduce in backward DDP's average is 1/world_size of the right gradient
        for got, ref in zip(r["grad_naive"], single):
            torch.testing.assert_close(got, ref / WORLD, rtol=1e-5, atol=1e-6)
            assert not torch.allclose(got, ref, rtol=1e-3)


def test_two_ranks_shuffle_bn(two_ranks):
    r0, r1 = two_ranks
    assert torch.equal(r0["idx_unshuffle"], r1["idx_unshuffle"])  # one permutation (rank 0's) for all
    shuffled = torch.cat([r0["shuffled"], r1["shuffled"]])[:, 0]
    assert torch.equal(shuffled.sort().values, torch.arange(float(WORLD * N_LOCAL)))  # a permutation
    assert (r0["shuffled"] >= N_LOCAL).any() and (r1["shuffled"] < N_LOCAL).any()  # crossed ranks
    assert torch.equal(shuffled[r0["idx_unshuffle"]], torch.arange(float(WORLD * N_LOCAL)))
    for r in two_ranks:
        assert torch.equal(r["unshuffled"], r["xs"] * 10)
        assert torch.equal(r["sbf"][0], r["xs"] * 10) and torch.equal(r["sbf"][1], r["xs"] + 1)  # back in order
    assert torch.equal(torch.cat([r0["sbf_seen"], r1["sbf_seen"]]), torch.cat([r0["shuffled"], r1["shuffled"]]))


def test_shuffle_bn_forward_in_one_process_is_the_plain_call():
    x = torch.randn(6, 3)
    out = D.shuffle_bn_forward(lambda v: (v * 2, v + 1), x, seed=0)
    assert torch.equal(out[0], x * 2) and torch.equal(out[1], x + 1)
    assert D.shuffle_seeds(5, torch.Generator().manual_seed(0)).shape == (5,)
