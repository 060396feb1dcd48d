"""Shared bits of the benchmark scripts: timing, peak memory, machine description, importing a reference
clone without its optional visualisation dependencies."""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
import types

import torch


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int = 3, warmup: int = 1, sync: bool = False) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if sync and torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


class _Anything(types.ModuleType):
    """Stand-in for a visualisation module the reference imports but the timed code never calls."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name)

    def __call__(self, *a, **k):
        return _Anything("call")


def import_reference(code_dir: str, stub=("visdom", "wandb", "sklearn", "sklearn.decomposition", "imageio",
                                          "matplotlib", "matplotlib.pyplot", "matplotlib.cm", "skimage")):
    """Put a local clone's code/ folder on sys.path, stubbing optional modules that are not installed."""
    import importlib.util

    import torch._dynamo  # noqa: F401  (imported before the stubs: it scans installed modules)
    import torchvision.ops  # noqa: F401

    for name in stub:
        try:
            missing = importlib.util.find_spec(name.split(".")[0]) is None
        except ValueError:
            missing = True
        if missing or name in ("visdom", "wandb"):
            sys.modules[name] = _Anything(name)
    sys.path.insert(0, code_dir)
    saved_hook = sys.excepthook
    try:
        import model as ref_model
        import utils.test_utils as ref_test_utils
        return ref_model, ref_test_utils
    finally:
        sys.excepthook = saved_hook  # videowalk's utils installs a pdb excepthook at import


def print_row(row: list) -> None:
    """One measured row as soon as it exists (a run stopped at a time limit still shows what it measured)."""
    print("row: " + " | ".join(str(c) for c in row), flush=True)


def print_table(title: str, header: list[str], rows: list[list]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    lines = [f"## {title}", "", "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    text = "\n".join(lines)
    print(text + "\n")
    return text
