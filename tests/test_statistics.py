"""Motion / appearance statistics labels (vidssl.data.statistics): hand-derived cases, and a straightforward
loop transcription of the reference's formulas (laura-wang/video_repres_sts, sts/compute_*_statistics*.py,
112 px, its literal slices) on random inputs."""
from collections import Counter

import cv2
import numpy as np
import pytest
from scipy import ndimage

from vidssl.data.statistics import appearance_labels, decode_flow, encode_flow, motion_labels, partitions, read_flow

S = 112


# ------------------------------------------------------------------------------------------- hand-derived cases
def test_moving_rectangles_give_their_regions_and_directions():
    T = 5
    u = np.zeros((T, S, S), np.float32)
    v = np.zeros((T, S, S), np.float32)
    # u: a wide bar moving right, touching the top border (no boundary there): rows 0-5, cols 30-53, in grid
    # block (row 0, col 1) = label 2; its long bottom edge dominates: d/dy = top - bottom > 0 -> 90 deg -> bin 3.
    # Outermost ring (rows < 14) = 4; top-left quadrant, above the diagonal (col > row) = triangle 2.
    u[:, 0:6, 30:54] = 1.0
    u[2, 0:6, 30:54] = 3.0  # the third flow frame moves most -> u frame label 3
    # v: a tall bar moving down, touching the right border: rows 86-109, cols 106-111 -> grid block (3, 3) = 16;
    # long left edge: d/dx = left - right < 0 -> 180 deg -> bin 5; outermost ring 4; bottom-right quadrant,
    # mostly above its diagonal = triangle 8. Constant over frames -> frame label 1 (first of equals).
    v[:, 86:110, 106:112] = 2.0
    assert motion_labels(u, v).tolist() == [2, 3, 16, 5, 4, 3, 4, 5, 2, 3, 8, 5, 3, 1]


def test_no_motion_gives_the_reference_zero_grid_labels():
    z = np.zeros((3, S, S), np.float32)
    assert motion_labels(z, z).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]


def test_one_changing_block_gives_its_appearance_labels():
    T = 16
    rgb = np.zeros((T, S, S, 3), np.uint8)
    rgb[..., 2] = 200  # blue background: colour label 1
    block = rgb[:, 0:28, 56:84]  # grid block (0, 2) = label 3
    block[..., 2] = 0
    block[:9, ..., 0] = 200  # red in 9 frames (label 7), green in 7: red dominates the block
    block[9:, ..., 1] = 200
    # grid: diverse = that block (3, red 7), stable = the first block (1, blue 1);
    # rings: the block lies in ring 3 (rows 14-27: 10% of it) and ring 4 (rows 0-13: 7%): diverse ring 3, mostly
    # blue; stable = the centre (1, 1). Triangles: top-right quadrant, above its anti-diagonal = triangle 3.
    assert appearance_labels(rgb).tolist() == [3, 7, 1, 1, 3, 1, 1, 1, 3, 1, 1, 1, 1]


def test_colour_table_and_bad_inputs():
    from vidssl.data.statistics import dominant_colour
    table = {(0, 0, 200): 1, (0, 200, 200): 2, (200, 0, 200): 3, (200, 200, 200): 4,
             (0, 0, 0): 5, (0, 200, 0): 6, (200, 0, 0): 7, (200, 200, 0): 8}  # (r, g, b) -> label
    for rgb, label in table.items():
        assert dominant_colour(np.array([rgb], np.uint8)) == label
    with pytest.raises(ValueError, match="multiple of 8"):
        partitions(100)
    with pytest.raises(ValueError, match="uint8"):
        appearance_labels(np.zeros((4, S, S, 3), np.float32))


# ------------------------------------------------------------------------ the reference's formulas, as loops
def _ref_cell_gradient(mag, ang):
    bins = [0.0] * 8
    for m, a in zip(np.ravel(mag), np.ravel(ang)):
        lo = int(a / 45) % 8
        mod = a % 45
        bins[lo] += m * (1 - mod / 45)
        bins[(lo + 1) % 8] += m * (mod / 45)
    return int(np.argmax(bins)) + 1


def _ref_triangles(x):
    """The 8 triangles of a (112, 112, ...) array as 1-D pixel lists, by the reference's slicing and flips."""
    q1, q4 = x[0:56, 0:56], x[56:112, 56:112]
    q2, q3 = np.flip(x[0:56, 56:112], 1), np.flip(x[56:112, 0:56], 1)
    tl, tu = np.tril_indices(56), np.triu_indices(56)
    return [q1[tl], q1[tu], q2[tu], q2[tl], q3[tu], q3[tl], q4[tl], q4[tu]]


def _ref_rings(x):
    """The 4 rings as pixel lists: the reference's nested squares, each minus the one inside."""
    out = [x[42:70, 42:70].reshape(-1, *x.shape[2:])]
    for a, b in ((28, 42), (14, 28), (0, 14)):
        sq = x[a:112 - a, a:112 - a]
        keep = np.ones(sq.shape[:2], bool)
        keep[b - a:112 - b - a, b - a:112 - b - a] = False
        out.append(sq[keep])
    return out


def _ref_motion_component(flow):
    mx = np.array([[-1, 0, 1]] * 3)
    dxs = [ndimage.convolve(f, mx) for f in flow]
    dys = [ndimage.convolve(f, mx.T) for f in flow]
    mag, ang = cv2.cartToPolar(sum(dxs), sum(dys), angleInDegrees=True)
    labels = []
    sums = [mag[28 * i:28 * i + 28, 28 * j:28 * j + 28].sum() for i in range(4) for j in range(4)]
    k = int(np.argmax(sums))
    i, j = divmod(k, 4)
    labels += [k + 1, _ref_cell_gradient(mag[28 * i:28 * i + 28, 28 * j:28 * j + 28],
                                         ang[28 * i:28 * i + 28, 28 * j:28 * j + 28])]
    rm, ra = _ref_rings(mag), _ref_rings(ang)
    k = int(np.argmax([r.mean() for r in rm]))
    labels += [k + 1, _ref_cell_gradient(rm[k], ra[k])]
    tm, ta = _ref_triangles(mag), _ref_triangles(ang)
    k = int(np.argmax([t.sum() for t in tm]))
    labels += [k + 1, _ref_cell_gradient(tm[k], ta[k])]
    frame = int(np.argmax([cv2.cartToPolar(a, b)[0].sum() for a, b in zip(dxs, dys)])) + 1
    return labels, frame


def _ref_iou(pixels):  # pixels (T, n, 3)
    ious = []
    for c in range(3):
        hists = np.array([np.histogram(p[:, c], bins=256, range=(0, 256))[0] for p in pixels])
        ious.append(hists.min(0).sum() / hists.max(0).sum())
    return sum(ious) / 3


def _ref_colour(pixels):
    counts = Counter((int(b) << 16) | (int(g) << 8) | int(r) for r, g, b in pixels.reshape(-1, 3))
    best = max(counts.values())
    code = min(c for c, n in counts.items() if n == best)
    b, g, r = code >> 16, (code >> 8) & 255, code & 255
    table = {(0, 0, 1): 1, (0, 1, 1): 2, (1, 0, 1): 3, (1, 1, 1): 4, (0, 0, 0): 5, (0, 1, 0): 6, (1, 0, 0): 7,
             (1, 1, 0): 8}
    return table[(int(r >= 128), int(g >= 128), int(b >= 128))]


def _ref_appearance(rgb, reference):
    frames = np.moveaxis(rgb, 0, 2)  # (112, 112, T, 3): spatial slicing first, as the reference slices
    partitions_ = [[frames[28 * i:28 * i + 28, 28 * j:28 * j + 28].reshape(-1, *frames.shape[2:])
                    for i in range(4) for j in range(4)], _ref_rings(frames), _ref_triangles(frames)]
    labels = []
    for k, regions in enumerate(partitions_):
        regions = [np.moveaxis(r, 0, 1) for r in regions]  # (T, n, 3)
        ious = [_ref_iou(r) for r in regions]
        for best in (int(np.argmin(ious)), int(np.argmax(ious))):
            pix = regions[best]
            if reference and k == 1 and best == 1:  # compute_pattern_2_color's `block[: -14:, :, :]`
                block = rgb[:, 28:84, 28:84].copy()
                block[:, 14:42, 14:42] = 0
                pix = np.concatenate([block[:, 0:14].reshape(-1, 3), block[:, 14:42, 0:14].reshape(-1, 3),
                                      block[:, 14:42, -14:].reshape(-1, 3), block[:-14].reshape(-1, 3)])
            labels += [best + 1, _ref_colour(pix)]
    return labels + [_ref_colour(rgb)]


def test_motion_labels_match_the_reference_formulas_on_random_flow():
    rng = np.random.default_rng(0)
    for trial in range(2):
        u = cv2.GaussianBlur(rng.normal(size=(112, 112, 15)).astype(np.float32), (9, 9), 3).transpose(2, 0, 1)
        v = rng.normal(size=(15, 112, 112)).astype(np.float32) * 3
        ru, fu = _ref_motion_component(np.ascontiguousarray(u))
        rv, fv = _ref_motion_component(v)
        expected = [ru[0], ru[1], rv[0], rv[1], ru[2], ru[3], rv[2], rv[3], ru[4], ru[5], rv[4], rv[5], fu, fv]
        assert motion_labels(u, v).tolist() == expected


@pytest.mark.parametrize("reference", [False, True])
def test_appearance_labels_match_the_reference_formulas_on_random_clips(reference):
    rng = np.random.default_rng(1)
    # coarse random colours (few distinct values, so dominant colours are not decided by a single pixel)
    # on a random base image that changes in some places over time
    rgb = (rng.integers(0, 6, (16, 112, 112, 3)) * 51).astype(np.uint8)
    rgb[:, :, :60] = rgb[0, :, :60]  # the left part static
    assert appearance_labels(rgb, reference=reference).tolist() == _ref_appearance(rgb, reference)


def test_reference_ring_colour_defect_reads_black():
    """The 56 px ring is the only changing region, bright noise: its dominant colour is bright (label 4); the
    reference's misread of that ring (two whole frames of the block with its zeroed centre) gives black (5)."""
    rng = np.random.default_rng(2)
    rgb = np.repeat(rng.integers(0, 256, (1, S, S, 3)).astype(np.uint8), 16, axis=0)
    ring = np.zeros((S, S), bool)
    ring[28:84, 28:84] = True
    ring[42:70, 42:70] = False
    rgb[:, ring] = rng.integers(128, 256, (16, int(ring.sum()), 3))
    assert appearance_labels(rgb)[4:6].tolist() == [2, 4]
    assert appearance_labels(rgb, reference=True)[4:6].tolist() == [2, 5]


def test_flow_quantisation_round_trip():
    f = np.linspace(-25, 25, 1001, dtype=np.float32)
    back = decode_flow(encode_flow(f))
    inside = np.abs(f) <= 20
    assert np.abs(back - f)[inside].max() <= 20 / 255 + 1e-5  # half a step of 40 / 255
    assert np.allclose(back[f < -20], -20) and np.allclose(back[f > 20], 20)


def test_read_flow_of_missing_dir_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_flow(str(tmp_path), [0])
