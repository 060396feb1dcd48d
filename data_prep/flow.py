"""`python -m data_prep.flow`: the entry point of vidssl/prep/flow.py (`--help` lists its options)."""
from vidssl.prep.flow import main

if __name__ == "__main__":
    raise SystemExit(main())
