"""`vidssl train | eval | extract | demo | prep` (and `python train.py`, `python -m eval_davis`)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable


def _train(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="vidssl train", description="Train a method; key=value overrides follow.")
    p.add_argument("--config", help="YAML config (configs/*.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. trainer.max_steps=100")
    args = p.parse_args(argv)
    from vidssl.config import load_config
    from vidssl.engine import train

    train(load_config(args.config, args.overrides))


def _demo(argv: list[str]) -> None:
    from vidssl.demo import main as demo_main

    demo_main(argv)


def _eval(argv: list[str]) -> None:
    from eval_davis.__main__ import main as eval_main

    eval_main(argv)


def _extract(argv: list[str]) -> None:
    from vidssl.features import main as extract_main

    extract_main(argv)


def _prep(argv: list[str]) -> None:
    datasets = ("davis2017", "jhmdb")
    if not argv or argv[0] not in datasets:
        print(f"usage: vidssl prep {{{'|'.join(datasets)}}} {{download|verify}} --root DIR")
        sys.exit(2)
    import importlib

    sys.exit(importlib.import_module(f"data_prep.{argv[0]}").main(argv[1:]))


COMMANDS = {"train": _train, "eval": _eval, "extract": _extract, "demo": _demo, "prep": _prep}


def one_line_errors(fn: Callable[[list[str]], object], argv: list[str]) -> None:
    """Run a command so that an error ends with one line naming the cause (the messages of vidssl name the
    file, key or sequence and what to do) instead of a traceback; `--debug` (or VIDSSL_DEBUG=1) shows it."""
    debug = "--debug" in argv or os.environ.get("VIDSSL_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if debug:
        fn(argv)
        return
    try:
        fn(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the whole point: one readable line, the traceback on demand
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        message = lines[-1] if lines and lines[0].startswith("Caught ") else " ".join(lines)  # DataLoader workers
        print(f"error: {message or type(e).__name__} ({type(e).__name__}; --debug shows the traceback)",
              file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: vidssl {{{'|'.join(COMMANDS)}}} ...  (vidssl COMMAND --help for its options)")
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    one_line_errors(COMMANDS[argv[0]], argv[1:])


if __name__ == "__main__":
    main()
