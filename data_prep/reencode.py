"""`python -m data_prep.reencode`: the entry point of vidssl/prep/reencode.py (`--help` lists its options).
Exits 1 when a video failed (listed in failed_<I>of<N>.tsv)."""
from vidssl.prep.reencode import main

if __name__ == "__main__":
    raise SystemExit(1 if main()["failed"] else 0)
