"""`python -m data_prep.reencode`: the entry point of vidssl/prep/reencode.py (`--help` lists its options; an error is one
line, `--debug` shows the traceback).
Exits 1 when a video failed (listed in failed_<I>of<N>.tsv)."""
import sys

from vidssl.cli import one_line_errors
from vidssl.prep.reencode import main


def run(argv: list[str]) -> None:
    sys.exit(1 if main(argv)["failed"] else 0)


if __name__ == "__main__":
    one_line_errors(run, sys.argv[1:])
