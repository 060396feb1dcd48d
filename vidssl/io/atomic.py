"""Atomic file writes: a temporary file beside the target, flushed to disk, then renamed over it, so a crash
never leaves a half-written file under the real name."""
from __future__ import annotations

import os
from typing import Callable


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, fsync the result, then rename it to `path`."""
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
