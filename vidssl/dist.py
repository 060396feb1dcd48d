"""Collectives shared by the SSL methods; every function is the identity (or its single-process analogue)
when torch.distributed is not initialised.

- `gather`: no-grad all-gather, for queues (MoCo `concat_all_gather`, DenseCL) and shuffle-BN.
- `gather_with_grad`: all-gather that back-propagates (global-batch contrastive losses: SimCLR, MoCo v3).
- `all_reduce_sum` / `all_reduce_mean`: no-grad reductions (DINO's center, SwAV's Sinkhorn sums).
- `batch_shuffle` / `batch_unshuffle`: MoCo v2's shuffle-BN (moco/builder.py `_batch_shuffle_ddp`).

All gathers need the same dim-0 size on every rank (checked; one tiny extra collective and a host sync,
skip with `check_sizes=False`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def _check_equal_sizes(x: Tensor) -> None:
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.empty_like(n) for _ in range(get_world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    if len(set(sizes)) != 1:
        raise ValueError(f"all-gather needs the same batch size on every rank, got {sizes} (rank order); "
                         "use drop_last / equal per-rank batches")


def _all_gather(x: Tensor, check_sizes: bool) -> Tensor:
    if check_sizes:
        _check_equal_sizes(x)
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in range(get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


@torch.no_grad()
def gather(x: Tensor, check_sizes: bool = True) -> Tensor:
    """All-gather along dim 0 in rank order, detached (MoCo builder.py `concat_all_gather`).
    Single process: `x.detach()` (shares storage with `x`)."""
    if not is_distributed():
        return x.detach()
    return _all_gather(x.detach(), check_sizes)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, check_sizes: bool) -> Tensor:
        ctx.rank, ctx.n = get_rank(), x.shape[0]
        return _all_gather(x, check_sizes)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n], None


def gather_with_grad(x: Tensor, check_sizes: bool = True) -> Tensor:
    """All-gather along dim 0 in rank order that keeps the gradient to this rank's rows.

    Backward all-reduces (SUM) the incoming gradient over ranks and returns this rank's slice (the same as
    `torch.distributed.nn.all_gather`). With DistributedDataParallel, which *averages* parameter gradients
    over the W ranks, this gives exactly the single-process gradient of the global-batch loss L when either
    - every rank computes the same L on the gathered batch: rank r gets W * dL/dx_r, the average over
      ranks sums the W contributions; or
    - rank r computes its share L_r (e.g. its own anchors against all gathered keys) with L = mean_r L_r:
      rank r gets sum_s dL_s/dx_r = W * dL/dx_r, as above.
    Backward that only slices (no all-reduce) leaves the result 1/W too small after DDP's averaging (a bug
    some libraries shipped). Without DDP (no averaging), divide by W yourself.
    Single process: the identity. Batch sizes must be equal on every rank (ValueError otherwise).
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x, check_sizes)


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum over ranks, detached, as a new tensor (`x` is not modified)."""
    y = x.detach().clone(memory_format=torch.contiguous_format)
    if is_distributed():
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


@torch.no_grad()
def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean over ranks, detached, as a new tensor (DINO's center update, main_dino.py `update_center`).
    Integer tensors come back as floats (sum / world size)."""
    return all_reduce_sum(x) / get_world_size()


@torch.no_grad()
def batch_shuffle(x: Tensor, generator: Optional[torch.Generator] = None,
                  check_sizes: bool = True) -> tuple[Tensor, Tensor]:
    """Shuffle the global batch across ranks for shuffle-BN (MoCo v2 builder.py `_batch_shuffle_ddp`).

    Gathers every rank's batch, draws one permutation of the global batch (rank 0's is broadcast; every rank
    draws one so that generators stay in step), and returns this rank's slice of the permuted batch
    (detached) and the global inverse permutation for `batch_unshuffle`. Single process: a random
    permutation of the local batch. Draws come from `generator` if given (on its device)."""
    x_all = gather(x, check_sizes)
    device = generator.device if generator is not None else x.device
    perm = torch.randperm(x_all.shape[0], generator=generator, device=device).to(x.device)
    if is_distributed():
        dist.broadcast(perm, src=0)
    idx_this = perm.view(get_world_size(), -1)[get_rank()]
    return x_all[idx_this], torch.argsort(perm)


@torch.no_grad()
def batch_unshuffle(x: Tensor, idx_unshuffle: Tensor, check_sizes: bool = True) -> Tensor:
    """Undo `batch_shuffle` (MoCo v2 builder.py `_batch_unshuffle_ddp`): this rank gets back, in order,
    the rows it passed to `batch_shuffle` (e.g. their key embeddings). Detached."""
    x_all = gather(x, check_sizes)
    if idx_unshuffle.numel() != x_all.shape[0]:
        raise ValueError(f"idx_unshuffle has {idx_unshuffle.numel()} entries for a global batch of {x_all.shape[0]}")
    idx_this = idx_unshuffle.to(x.device).view(get_world_size(), -1)[get_rank()]
    return x_all[idx_this]


@torch.no_grad()
def shuffle_bn_forward(fn, x: Tensor, seed: int, enabled: bool = True):
    """`fn(x)` computed on the batch shuffled across ranks (MoCo's shuffle BN: the key encoder's BatchNorm sees
    other samples than the query's), its outputs (a tensor or a tuple of tensors) returned in `x`'s order.
    The permutation comes from `seed` (rank 0's wins). Without `enabled`, or in one process, plain `fn(x)`."""
    if not (enabled and is_distributed()):
        return fn(x)
    shuffled, undo = batch_shuffle(x, torch.Generator().manual_seed(seed))
    out = fn(shuffled)
    return tuple(batch_unshuffle(t, undo) for t in out) if isinstance(out, tuple) else batch_unshuffle(out, undo)


def shuffle_seeds(n: int, generator: torch.Generator) -> Tensor:
    """One shuffle-BN seed per sample (kept batch-first so a batch splits over ranks; the first is used)."""
    return torch.randint(0, 2**62, (n,), generator=generator)
