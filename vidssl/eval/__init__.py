"""Evaluation: label propagation, DAVIS J&F, JHMDB PCK."""
from vidssl.eval.propagate import propagate_labels, propagate_labels_dense

__all__ = ["propagate_labels", "propagate_labels_dense"]
