"""`vidssl COMMAND ...`: train | eval | extract | prep | demo (also `python train.py`, `python -m eval_davis`,
`python -m data_prep.<step>`). Every command takes `--help`, and `--debug` to show the traceback of an error
instead of one line."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from vidssl import __version__


def _train(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="vidssl train", description="Train a method from a YAML recipe; dotted "
                                "key=value overrides follow (e.g. trainer.max_steps=100 out=runs/mine).")
    p.add_argument("--config", help="YAML config (configs/*.yaml; also accepted as the first positional argument); "
                   "without it, the built-in defaults (CRW)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. trainer.max_steps=100")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    args = p.parse_args(argv)
    from vidssl.config import load_config
    from vidssl.engine import train

    if args.config is None and args.overrides and args.overrides[0].endswith((".yaml", ".yml")):
        args.config = args.overrides.pop(0)  # `vidssl train configs/x.yaml ...`: the recipe given positionally
    train(load_config(args.config, args.overrides))


def _eval(argv: list[str]) -> None:
    from vidssl.eval.runner import main as eval_main

    eval_main(argv)


def _extract(argv: list[str]) -> None:
    from vidssl.features import main as extract_main

    extract_main(argv)


def _prep(argv: list[str]) -> None:
    import importlib

    from vidssl.prep import STEPS

    p = argparse.ArgumentParser(prog="vidssl prep", description="Prepare data: `vidssl prep STEP --help` lists a "
                                "step's options.")
    sub = p.add_subparsers(dest="step", required=True, metavar="STEP")
    for name, line in STEPS.items():
        sub.add_parser(name, help=line, add_help=False)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    step = p.parse_args(argv[:1]).step
    result = importlib.import_module(f"vidssl.prep.{step}").main(argv[1:])
    sys.exit(1 if (result["failed"] if isinstance(result, dict) else result) else 0)


def _demo(argv: list[str]) -> None:
    from vidssl.demo import main as demo_main

    demo_main(argv)


COMMANDS: dict[str, tuple[str, Callable[[list[str]], object]]] = {
    "train": ("train a method from a YAML recipe (the one trainer; torchrun for several processes)", _train),
    "eval": ("evaluate an encoder by label propagation: vidssl eval davis|jhmdb|... --help", _eval),
    "extract": ("extract dense or clip features of videos to .npy files with a manifest", _extract),
    "prep": ("download / verify datasets, precompute frames, flow, re-encodes", _prep),
    "demo": ("the main job: train CRW on the sample clips, then evaluate it (minutes on a CPU)", _demo),
}


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidssl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="vidssl COMMAND --help lists the options of a command.")
    p.add_argument("--version", action="version", version=f"vidssl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (line, _) in COMMANDS.items():
        sub.add_parser(name, help=line, add_help=False)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    command = build_parser().parse_args(argv[:1]).command  # --help / --version exit here
    one_line_errors(COMMANDS[command][1], argv[1:])


if __name__ == "__main__":
    main()
