"""`python -m data_prep.frames`: the entry point of vidssl/prep/frames.py (`--help` lists its options)."""
from vidssl.prep.frames import main

if __name__ == "__main__":
    raise SystemExit(main())
