"""Shared by the tests that run several gloo processes."""
import os
import socket

import torch


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(worker, args: tuple, nprocs: int) -> None:
    """torch.multiprocessing.spawn(worker, (port, *args)) with one OpenMP thread per process (2 cores)."""
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        torch.multiprocessing.spawn(worker, args=(free_port(), *args), nprocs=nprocs, join=True)
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = old


def strip_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm replaced by Identity: per-sample outputs that do not depend on the rest of the batch."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, torch.nn.Identity())
        else:
            strip_batchnorm(child)
    return module
