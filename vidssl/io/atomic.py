"""Atomic file writes: a temporary file beside the target, flushed to disk, then renamed over it, so a crash
never leaves a half-written file under the real name."""
from __future__ import annotations

import glob
import os
from typing import Callable


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, fsync the result, then rename it to `path`."""
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_stale_temporaries(folder: str, names: list[str]) -> list[str]:
    """Remove the temporaries that a killed writer left beside `names` in `folder` (never valid results)."""
    stale = [p for n in names for p in glob.glob(os.path.join(glob.escape(folder), glob.escape(n) + ".tmp*"))]
    for p in stale:
        os.remove(p)
    return stale
