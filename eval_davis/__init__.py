"""Evaluation entry point: `python -m eval_davis ...` (also `vidssl eval ...`)."""
