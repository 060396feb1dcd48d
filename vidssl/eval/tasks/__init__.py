"""The evaluation task seam. A benchmark is one file in vidssl/eval/tasks/ that subclasses `EvalTask` and
registers itself with `@register_task("name")`; `vidssl eval NAME` (and `python -m eval_davis`) then offers it,
with the shared model and protocol options (vidssl/eval/runner.py) beside the task's own data options.

The runner does, for every task alike:

    task    = TASKS[name](args)                  # the task's data options, checked before anything is written
    encoder = load_encoder(...)                  # a run's exported encoder, a backbone at random init, pixels
    result  = task.run(EvalContext(encoder, description, device, protocol, out, overlays))
    summary.json <- {"encoder", "propagation", **result.summary}; result.report is printed

A task writes its own files under `ctx.out` (masks, CSVs, overlays) and returns a `TaskResult`: the headline
numbers, one row per evaluated item, the text to print and anything else for summary.json. Every module of this
package is imported here, so a new task is a new file and nothing else.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from vidssl.eval.protocol import Protocol

TASKS: dict[str, type["EvalTask"]] = {}


def register_task(name: str):
    """Class decorator: offer the task as `vidssl eval <name>`."""

    def deco(cls):
        TASKS[name] = cls
        cls.name = name
        return cls

    return deco


@dataclass
class EvalContext:
    """What every task receives: the encoder (eval mode) and how to describe it, where to run, how to propagate,
    and where to write (`out` exists)."""

    encoder: nn.Module
    description: str
    device: torch.device
    protocol: Protocol
    out: str
    overlays: bool = True


@dataclass
class TaskResult:
    headline: dict[str, float]  # the numbers a paper's table reports, e.g. {"J&F-Mean": ...}, {"PCK@0.1": ...}
    rows: list[dict] = field(default_factory=list)  # one per evaluated item (sequence, video)
    report: str = ""  # printed after the run
    details: dict = field(default_factory=dict)  # more for summary.json (dataset, timing, notes)

    @property
    def summary(self) -> dict:
        """What summary.json holds beside the encoder and the protocol."""
        return {**self.details, **self.headline}


class EvalTask:
    """Base class: subclasses set `help`, add their data options and implement `run`."""

    name: str
    help: str = ""

    @staticmethod
    def add_arguments(parser: argparse._ArgumentGroup) -> None:
        """The task's data options (roots, subsets, item names); `--out` and the model/protocol options are
        added by the runner."""

    def __init__(self, args: argparse.Namespace):
        self.args = args

    def data_roots(self) -> list[str]:
        """The dataset folders the task reads: `--out` may not lie inside them (results are never written into data)."""
        return []

    def run(self, ctx: EvalContext) -> TaskResult:
        raise NotImplementedError


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["TASKS", "EvalTask", "EvalContext", "TaskResult", "register_task"]
