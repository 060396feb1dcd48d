"""`python -m data_prep.jhmdb`: the entry point of vidssl/prep/jhmdb.py (`--help` lists its options)."""
from vidssl.prep.jhmdb import main

if __name__ == "__main__":
    raise SystemExit(main())
