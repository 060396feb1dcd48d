"""`python -m data_prep.frames`: the entry point of vidssl/prep/frames.py (`--help` lists its options; an error is one
line, `--debug` shows the traceback)."""
import sys

from vidssl.cli import one_line_errors
from vidssl.prep.frames import main


def run(argv: list[str]) -> None:
    sys.exit(main(argv))


if __name__ == "__main__":
    one_line_errors(run, sys.argv[1:])
