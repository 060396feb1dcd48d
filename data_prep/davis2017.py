"""`python -m data_prep.davis2017`: the entry point of vidssl/prep/davis2017.py (`--help` lists its options)."""
from vidssl.prep.davis2017 import main

if __name__ == "__main__":
    raise SystemExit(main())
