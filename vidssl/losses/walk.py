"""The contrastive random walk loss (Jabri, Owens & Efros, "Space-Time Correspondence as a Contrastive Random
Walk", NeurIPS 2020; reference: ajabri/videowalk code/model.py, CRW.forward)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-20  # as the reference: log(P + EPS) guards log(0)


def transition_matrices(q: torch.Tensor, temperature: float, edge_dropout: float = 0.0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward and backward transition matrices between consecutive frames.

    q: (B, C, T, N) L2-normalised node embeddings. Returns (fwd, bwd), each (B, T-1, N, N): fwd[:, t] =
    softmax_rows(q_t . q_{t+1} / temperature), bwd[:, t] = the same from frame t+1 back to frame t.

    Edge dropout sets dropped affinities to -1e20 before the softmax. The reference draws one mask for the
    forward matrices and writes it into the shared affinity tensor in place, so the backward matrices drop the
    union of the transposed forward mask and a fresh mask of their own; this reproduces that.
    """
    A = torch.einsum("bctn,bctm->btnm", q[:, :, :-1], q[:, :, 1:])
    if edge_dropout > 0:
        A = A.masked_fill(torch.rand_like(A) < edge_dropout, -1e20)
    fwd = F.softmax(A / temperature, dim=-1)
    At = A.transpose(-1, -2)
    if edge_dropout > 0:
        At = At.masked_fill(torch.rand_like(At) < edge_dropout, -1e20)
    bwd = F.softmax(At / temperature, dim=-1)
    return fwd, bwd


def palindrome_walks(fwd: torch.Tensor, bwd: torch.Tensor, order: str = "right") -> list[torch.Tensor]:
    """Round-trip transition matrices 0 -> ... -> k -> ... -> 0 for k = 1 .. T-1, each (B, N, N).

    "right": fwd_0 @ ... @ fwd_{k-1} @ bwd_{k-1} @ ... @ bwd_0 (a proper walk; the reference's default).
    "left": the product of the same matrices in reverse order (the reference's `--flip`, which its authors
    call a bug but which the paper's experiments used). Prefix products make all walks cost O(T) matmuls.
    """
    if order not in ("right", "left"):
        raise ValueError(f"order must be 'right' or 'left', not {order!r}")
    walks, out_prod, back_prod = [], None, None
    for k in range(fwd.shape[1]):
        f, b = fwd[:, k], bwd[:, k]
        if order == "right":
            out_prod = f if out_prod is None else out_prod @ f
            back_prod = b if back_prod is None else b @ back_prod
            walks.append(out_prod @ back_prod)
        else:
            out_prod = f if out_prod is None else f @ out_prod
            back_prod = b if back_prod is None else back_prod @ b
            walks.append(back_prod @ out_prod)
    return walks


def walk_loss(q: torch.Tensor, temperature: float = 0.07, edge_dropout: float = 0.0, skip_shortest: bool = True,
              order: str = "right") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of palindrome random walks against the identity (each node should walk back to itself).

    q: (B, C, T, N) L2-normalised node embeddings of T frames with N nodes each.
    Walks of length k = 2 .. T-1 (k = 1 .. T-1 with skip_shortest=False: the reference skips the shortest
    cycle 0 -> 1 -> 0). The loss is the mean over walks of the mean over (batch, node) of -log P_walk[n, n].
    Logs per walk k: "walk{k}_xent" and "walk{k}_acc" (fraction of nodes whose most likely endpoint is itself).
    """
    T = q.shape[2]
    first = 2 if skip_shortest else 1
    if T <= first:
        raise ValueError(f"clip length {T} leaves no walk (skip_shortest={skip_shortest}); use at least {first + 1} frames")
    fwd, bwd = transition_matrices(q, temperature, edge_dropout)
    walks = palindrome_walks(fwd, bwd, order)[first - 1:]
    N = q.shape[-1]
    target = torch.arange(N, device=q.device).repeat(q.shape[0])
    losses, logs = [], {}
    for k, P in enumerate(walks, start=first):
        logits = torch.log(P + EPS).flatten(0, 1)
        xent = F.cross_entropy(logits, target)
        losses.append(xent)
        logs[f"walk{k}_xent"] = xent.detach()
        logs[f"walk{k}_acc"] = (logits.argmax(-1) == target).float().mean()
    return torch.stack(losses).mean(), logs
