"""Dataset download / verification scripts: python -m data_prep.davis2017 ..., python -m data_prep.jhmdb ..."""
