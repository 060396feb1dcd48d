"""Checkpoints written atomically (a crash mid-write never leaves a broken file behind) and read without
running code (`weights_only=True`: tensors, numbers, strings, lists and dicts only)."""
from __future__ import annotations

import os
import pickle

import torch

from vidssl.io.atomic import atomic_write


def save_checkpoint(obj: dict, path: str) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str) -> dict:
    """A torch file of plain data. A file that would need code to unpickle is refused, never executed."""
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder, not a checkpoint or weights file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # no class or function was asked for: damaged or not a checkpoint at all
            raise ValueError(f"{path} is not a readable torch checkpoint (damaged, or another kind of file)") from e
        raise ValueError(f"{path}: refused: it holds objects that would run code when loaded (only tensors and "
                         f"plain data are accepted; re-save it as a state dict or safetensors)") from e
    except Exception as e:
        raise ValueError(f"{path} cannot be read as a torch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of tensors/plain data, found {type(obj).__name__}")
    return obj
