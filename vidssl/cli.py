"""`vidssl train | eval | extract | demo` (and `python train.py`, `python -m eval_davis`)."""
from __future__ import annotations

import argparse
import sys


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


COMMANDS = {"train": _train, "eval": _eval, "extract": _extract, "demo": _demo}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: vidssl {{{'|'.join(COMMANDS)}}} ...  (vidssl COMMAND --help for its options)")
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
