"""Stable output names for inputs: the input's path relative to the folder it was found in (or to the list
file's / single video's folder), so that a/clip.mp4 and b/clip.mp4, or x.mp4 and x.mov, never collide. Used by
feature extraction and by the per-video preprocessing steps (data_prep), whose outputs training then finds."""
from __future__ import annotations

import os


def relative_source(source: str, root: str) -> str:
    """`source` relative to `root` (a folder; for a list file or a single video, its folder); a source outside
    it keeps its absolute path without the leading separator (still unique)."""
    base = os.path.abspath(root) if os.path.isdir(root) else os.path.dirname(os.path.abspath(root))
    rel = os.path.relpath(os.path.abspath(source), base)
    return os.path.abspath(source).lstrip(os.sep) if rel.startswith("..") else rel
