"""Checkpoints written atomically (a crash mid-write never leaves a broken file behind)."""
from __future__ import annotations

import os

import torch


def save_checkpoint(obj: dict, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise RuntimeError(f"checkpoint {path} cannot be read ({e}); is it a vidssl/torch checkpoint?") from e
