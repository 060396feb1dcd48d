"""Losses as plain functions, each testable alone."""
from vidssl.losses.walk import palindrome_walks, transition_matrices, walk_loss

__all__ = ["walk_loss", "transition_matrices", "palindrome_walks"]
