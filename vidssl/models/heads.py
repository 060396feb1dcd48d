"""Projection / prediction heads shared by the methods (in the spirit of lightly's heads).

BatchNorm1d here normalises (N, D) features over the local batch. Under DDP a method's config may switch on
synchronised BatchNorm (torch.nn.SyncBatchNorm.convert_sync_batchnorm on the model before wrapping it), as the
official BYOL code does by computing its statistics over the whole global batch; these heads do not decide
that. In training mode BatchNorm needs more than one sample per batch.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn as nn

__all__ = ["mlp", "linear_bn_mlp", "byol_projector", "byol_predictor", "parse_sizes"]


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, batch_norm: bool = True,
        last_bn: bool = False) -> nn.Sequential:
    """`num_layers` Linear layers: (num_layers - 1) x [Linear(+BatchNorm1d)+ReLU] to `hidden_dim`, then
    Linear to `out_dim`, followed by a BatchNorm1d without affine parameters if `last_bn` (SimSiam/Barlow-style
    projector ends). Linear layers keep their bias (haiku's default in the official BYOL code)."""
    if num_layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got num_layers={num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


def byol_projector(in_dim: int, hidden: int = 4096, out: int = 256) -> nn.Sequential:
    """BYOL's projector g (Grill et al. 2020, sec. 3.3): Linear(4096)-BN-ReLU-Linear(256)."""
    return mlp(in_dim, hidden, out, num_layers=2, batch_norm=True, last_bn=False)


def byol_predictor(in_dim: int = 256, hidden: int = 4096, out: int = 256) -> nn.Sequential:
    """BYOL's predictor q: the same architecture as the projector, on the projection."""
    return mlp(in_dim, hidden, out, num_layers=2, batch_norm=True, last_bn=False)


def linear_bn_mlp(dims: Sequence[int], hidden_bias: bool = False, last_bias: bool = False,
                  last_bn: bool = False) -> nn.Sequential:
    """Linear(dims[i], dims[i+1])-BatchNorm1d-ReLU for every layer but the last, then Linear to dims[-1] (and a
    BatchNorm1d without affine if `last_bn`). The projectors of SimSiam (no biases, last BN), Barlow Twins
    (no biases) and VICReg (hidden biases), built as the official codes do."""
    if len(dims) < 2:
        raise ValueError(f"an MLP needs at least an input and an output size, got {list(dims)}")
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1], bias=hidden_bias), nn.BatchNorm1d(dims[i + 1]),
                   nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=False))
    return nn.Sequential(*layers)

def parse_sizes(sizes: str | int | list, setting: str) -> list[int]:
    """'8192-8192-8192' (the official --projector / --mlp format), a list or one int -> layer sizes."""
    try:
        out = [int(s) for s in (sizes.split("-") if isinstance(sizes, str) else
                                sizes if isinstance(sizes, (list, tuple)) else [sizes])]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise ValueError(f"{setting} must be layer sizes such as '8192-8192-8192', got {sizes!r}")
    return out
