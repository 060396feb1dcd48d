import math

import numpy as np
import pytest
import torch

from vidssl.eval.tasks.jhmdb import decode_keypoints, joint_heatmaps, pck


def test_heatmap_peak_and_background():
    maps = joint_heatmaps(np.array([[5.2, 3.7]]), (10, 12), sigma=0.5)
    assert maps.shape == (2, 10, 12)
    # patch starts at int(p - 1.5) = (3, 2), centre = start + 2 = (5, 4)
    assert maps[1, 4, 5] == 1.0
    assert maps[1, 4, 6] == pytest.approx(math.exp(-2.0))
    assert maps[1, 2:6, 3:7].min() > 0 and maps[1].sum() == pytest.approx(maps[1, 2:6, 3:7].sum())
    assert maps[0, 4, 5] == 0 and maps[0, 0, 0] == 1


def test_decode_top3_weighted_and_invisible():
    pred = torch.zeros(3, 5, 5)
    pred[1, 2, 1], pred[1, 2, 3] = 1.0, 1.0  # two equal peaks at x=1 and x=3 -> x=2
    xy = decode_keypoints(pred)
    assert xy[0].tolist() == [2.0, 2.0]
    assert np.isnan(xy[1]).all()


def test_pck_by_hand():
    gt = np.zeros((2, 2, 2))
    gt[:, 1] = [3.0, 4.0]  # box diagonal 5 -> scale 0.6 * 5 = 3
    pred = gt.copy()
    pred[1, 0] = [0.0, 0.5]  # distance 0.5 -> 0.5 / 3 = 0.167
    pred[1, 1] = [3.0, 4.0 + 0.75]  # 0.75 / 3 = 0.25
    table = pck([pred], [gt], thresholds=(0.1, 0.2, 0.3))
    assert table[:, 0].tolist() == [0.0, 100.0, 100.0]
    assert table[:, 1].tolist() == [0.0, 0.0, 100.0]
    assert table[:, 2].tolist() == [0.0, 50.0, 100.0]
    pred[1, 1] = np.nan  # invisible joints are skipped and the box uses visible ones only
    table = pck([pred], [gt], thresholds=(0.1,))
    assert math.isnan(table[0, 1])
