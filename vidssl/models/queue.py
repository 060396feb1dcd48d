"""A FIFO queue of past keys, the negatives of MoCo (He et al. CVPR 2020; facebookresearch/moco
moco/builder.py `_dequeue_and_enqueue`) and of DenseCL / rhoMoCo, and SwAV's queue of past embeddings.

The keys live in a buffer, so checkpoints and exact resume carry them. Under torchrun every rank pushes the keys
of the whole global batch (gathered, no gradient), so all ranks hold the same queue."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.dist import gather


class FeatureQueue(nn.Module):
    """`keys` (size, dim): random L2-normalised rows at first (as the official MoCo code), then the newest pushed
    keys; `ptr` the next row to overwrite; `filled` how many rows hold real keys (SwAV uses the queue once full)."""

    def __init__(self, size: int, dim: int, normalize: bool = True):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be >= 1, got {size} x {dim}")
        init = torch.randn(size, dim)
        self.register_buffer("keys", F.normalize(init, dim=1) if normalize else torch.zeros(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @property
    def full(self) -> bool:
        return int(self.filled) >= self.size

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue this step's keys ((n, dim) on this rank; all ranks' keys are gathered first)."""
        keys = gather(keys.detach()).to(self.keys.dtype)
        n = keys.shape[0]
        if self.size % n:
            raise ValueError(f"queue size {self.size} must be a multiple of the global batch of keys ({n}), as "
                             f"the official MoCo code asserts: change the queue size or the batch size")
        p = int(self.ptr)
        self.keys[p:p + n] = keys
        self.ptr.fill_((p + n) % self.size)
        self.filled.fill_(min(int(self.filled) + n, self.size))
