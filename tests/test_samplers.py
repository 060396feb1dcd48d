import numpy as np
import pytest

from vidssl.data import StepBatchSampler, clip_indices, frame_step, random_clip_indices


def test_frame_step_resamples_to_frame_rate():
    assert frame_step(24.0, frame_rate=8) == 3.0
    assert frame_step(25.0, frame_rate=8) == pytest.approx(3.125)
    assert frame_step(0.0, frame_rate=None, frame_skip=4) == 4.0
    with pytest.raises(ValueError):
        frame_step(25.0, None, None)


def test_clip_indices_floor_and_clamp():
    assert clip_indices(100, 4, 3.125, 10) == [10, 13, 16, 19]
    assert clip_indices(5, 4, 2, 0) == [0, 2, 4, 4]


def test_random_clips_stay_inside_and_cover_starts():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(500):
        idx = random_clip_indices(20, 4, 3.0, rng)
        assert idx[-1] <= 19 and idx == clip_indices(20, 4, 3.0, idx[0])
        starts.add(idx[0])
    assert starts == set(range(0, 11))


def test_step_sampler_resume_and_ranks():
    full = list(StepBatchSampler(10, 3, 8, seed=1))
    resumed = list(StepBatchSampler(10, 3, 8, seed=1, start_step=5))
    assert resumed == full[5:]
    # one epoch = a permutation; seeds unique per position
    flat = [i for b in full for i, _ in b]
    assert sorted(flat[:10]) == list(range(10))
    assert len({s for b in full for _, s in b}) == 24
    r0 = list(StepBatchSampler(10, 2, 4, seed=1, rank=0, world_size=2))
    r1 = list(StepBatchSampler(10, 2, 4, seed=1, rank=1, world_size=2))
    both = [x for a, b in zip(r0, r1) for x in a + b]
    assert [i for i, _ in both[:10]] == [i for i, _ in list(StepBatchSampler(10, 4, 3, seed=1))[0] +
                                         list(StepBatchSampler(10, 4, 3, seed=1))[1] +
                                         list(StepBatchSampler(10, 4, 3, seed=1))[2][:2]]
