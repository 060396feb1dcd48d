"""`python -m eval_davis ...`: `vidssl eval` under its historical name. The task is the first argument
(davis, jhmdb, ...); without one it is jhmdb when --jhmdb-root is given, else davis."""
from __future__ import annotations

import sys

from vidssl.cli import one_line_errors
from vidssl.eval.runner import main as run
from vidssl.eval.tasks import TASKS


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0] not in TASKS and argv[0] not in ("-h", "--help")):
        argv = ["jhmdb" if "--jhmdb-root" in argv else "davis", *argv]
    return run(argv, prog="python -m eval_davis")


if __name__ == "__main__":
    one_line_errors(main, sys.argv[1:])
