"""Entry points of the preparation steps in vidssl/prep: `python -m data_prep.<step> --help`."""
