
import numpy as np
import pytest

from vidssl.eval.davis_metrics import (
    db_eval_boundary,
    db_eval_iou,
    db_statistics,
    evaluate_sequence,
    seg2bmap,
    summarize,
    write_csvs,
)


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_iou_hand_worked_and_empty():
    gt = box(10, 10, 0, 4, 0, 4)  # 16 px
    pred = box(10, 10, 2, 6, 2, 6)  # 16 px, overlap 4
    assert db_eval_iou(gt, pred) == pytest.approx(4 / 28)
    empty = np.zeros((10, 10), bool)
    assert db_eval_iou(empty, empty) == 1.0
    assert db_eval_iou(gt, empty) == 0.0
    assert list(db_eval_iou(np.stack([gt, empty]), np.stack([gt, empty]))) == [1.0, 1.0]


def test_seg2bmap_marks_the_one_pixel_boundary():
    b = seg2bmap(box(6, 6, 1, 4, 1, 4))
    # a pixel is boundary when it differs from its east, south or south-east neighbour: the square's
    # bottom/right pixels and the pixels just above/left of it (the half-pixel shift towards the origin)
    want = np.zeros((6, 6), bool)
    want[0, 0:4] = want[3, 0:4] = True
    want[1:3, 0] = want[1:3, 3] = True
    assert np.array_equal(b, want)


def test_boundary_empty_rules_and_perfect():
    full = box(20, 20, 0, 20, 0, 20)
    empty = np.zeros((20, 20), bool)
    sq = box(20, 20, 5, 15, 5, 15)
    assert db_eval_boundary(empty, empty) == 1.0  # neither has a boundary
    assert db_eval_boundary(sq, empty) == 0.0  # prediction has none
    assert db_eval_boundary(empty, sq) == 0.0  # ground truth has none
    assert db_eval_boundary(sq, sq) == 1.0
    # a full mask still has the border boundary the official seg2bmap draws on the last row/column
    assert db_eval_boundary(full, full) == 1.0


def test_boundary_tolerance_in_pixels():
    # tolerance = ceil(0.008 * diag) = ceil(0.008 * 707.1) = 6 px for 500x500
    gt = box(500, 500, 100, 400, 100, 400)
    near = box(500, 500, 106, 406, 100, 400)  # shifted 6 px: top/bottom edges still within tolerance
    far = box(500, 500, 120, 420, 100, 400)
    assert db_eval_boundary(gt, near) == pytest.approx(1.0)
    f_far = db_eval_boundary(gt, far)
    assert 0.3 < f_far < 0.7


def test_statistics_recall_and_decay_bins():
    vals = np.array([1.0, 1.0, 0.9, 0.4, 0.4, 0.2, 0.0, 0.0])
    m, r, d = db_statistics(vals)
    assert m == pytest.approx(vals.mean())
    assert r == pytest.approx(3 / 8)
    # 8 frames: linspace(1, 8, 5) = [1, 2.75, 4.5, 6.25, 8] -> round(+1e-10) - 1 = [0, 2, 4, 5, 7];
    # first bin = frames 0..2, last bin = frames 5..7
    assert d == pytest.approx(np.mean([1.0, 1.0, 0.9]) - np.mean([0.2, 0.0, 0.0]))


def test_sequence_drops_first_and_last_frame_and_rejects_extra_objects(tmp_path):
    gt = np.zeros((4, 8, 8), np.uint8)
    gt[:, 2:6, 2:6] = 1
    res = gt.copy()
    res[0] = 0  # first and last frames are not scored
    res[3] = 0
    J, F = evaluate_sequence(gt, res)
    assert J.shape == (1, 2) and (J == 1).all() and (F == 1).all()
    bad = res.copy()
    bad[1, 0, 0] = 2
    with pytest.raises(ValueError, match="object id 2"):
        evaluate_sequence(gt, bad, "seq")
    g, rows = summarize({"seq": (J, F)})
    assert g["J&F-Mean"] == 1.0 and rows == [("seq_1", 1.0, 1.0)]
    gp, sp = write_csvs(str(tmp_path), g, rows)
    assert open(gp).read().splitlines() == ["J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay",
                                            "1.000,1.000,1.000,0.000,1.000,1.000,0.000"]
    assert open(sp).read().splitlines() == ["Sequence,J-Mean,F-Mean", "seq_1,1.000,1.000"]


def test_boundary_tolerance_is_the_whole_image_diagonal():
    # 480x854 -> tolerance ceil(0.008 * 979.6) = 8 px: a square shifted by 8 px matches every boundary pixel,
    # shifted by 9 it does not (the tolerance must not shrink with the crop around a small object)
    gt = np.zeros((3, 480, 854), np.uint8)
    gt[:, 100:140, 200:240] = 1
    for shift, perfect in [(8, True), (9, False)]:
        res = np.roll(gt, shift, axis=2)
        F = evaluate_sequence(gt, res)[1][0, 0]
        assert (F == 1.0) == perfect
        assert F == db_eval_boundary(gt[1] == 1, res[1] == 1)


@pytest.mark.parametrize("radius", [1, 2, 5, 8, 12])
def test_disk_rectangles_dilate_like_the_disk(radius):
    import cv2

    from vidssl.eval.davis_metrics import dilate_disk, disk, disk_rectangles
    rng = np.random.default_rng(radius)
    b = rng.random((40, 50)) < 0.02
    want = cv2.dilate(b.view(np.uint8), disk(radius)).view(bool)
    assert np.array_equal(dilate_disk(b, disk_rectangles(radius)), want)
