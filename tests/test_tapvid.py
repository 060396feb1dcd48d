"""TAP-Vid: the restricted unpickler, tapnet's metrics on hand-computed cases, the point tracker, the readers and
`vidssl eval tapvid` end to end on synthetic pickles of moving textured squares."""
import csv
import os
import pickle

import cv2
import numpy as np
import pytest
import torch

from vidssl.eval.tapvid_metrics import (
    METRIC_NAMES,
    compute_tapvid_metrics,
    sample_queries_first,
    sample_queries_strided,
)
from vidssl.io.pickles import UnsafePickleError, safe_load_pickle, safe_loads_pickle


# ----------------------------------------------------------------------------------------------- unpickler
class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"bear": {"video": _RunsCode(marker)}}))
    with pytest.raises(UnsafePickleError) as e:
        safe_load_pickle(str(path))
    assert str(path) in str(e.value) and f"{os.system.__module__}.system" in str(e.value)
    assert not marker.exists()
    other = pickle.dumps([{"points": __import__("collections").OrderedDict()}])
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        safe_loads_pickle(other, "x.pkl")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_admits_containers_and_numpy(protocol):
    data = {"a": {"video": np.arange(24, dtype=np.uint8).reshape(1, 2, 4, 3), "points": np.ones((2, 1, 2), np.float32),
                  "occluded": np.array([[True], [False]])},
            "list": [b"\xff\xd8", "s", 1.5, 3, None, True, (1, 2), {1, 2}, frozenset([3]), np.float32(2.5)]}
    back = safe_loads_pickle(pickle.dumps(data, protocol=protocol))
    assert np.array_equal(back["a"]["video"], data["a"]["video"]) and back["a"]["video"].dtype == np.uint8
    assert back["a"]["occluded"].dtype == bool and back["list"][:9] == data["list"][:9]
    assert back["list"][9] == np.float32(2.5)


def test_pickle_numpy1_names_and_corrupt_file(tmp_path):
    raw = pickle.dumps({"p": np.eye(2, dtype=np.float32)}, protocol=2)
    if b"numpy._core" in raw:  # written by numpy 2: rename its reconstructors the numpy 1 way
        raw = raw.replace(b"numpy._core", b"numpy.core")
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    assert np.array_equal(safe_loads_pickle(raw)["p"], np.eye(2))
    bad = tmp_path / "cut.pkl"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(pickle.UnpicklingError, match="cut.pkl"):
        safe_load_pickle(str(bad))


# ----------------------------------------------------------------------------------------------- metrics
def _two_tracks(T):
    """Track A visible throughout; track B occluded at frames 2 and 3. Raster coordinates."""
    gt = np.zeros((2, T, 2))
    gt[0] = np.stack([np.arange(T) * 4.0 + 50, np.full(T, 60.0)], 1)
    gt[1] = np.stack([np.full(T, 120.0), np.arange(T) * 3.0 + 30], 1)
    occ = np.zeros((2, T), bool)
    occ[1, 2:4] = True
    return gt, occ


def _score(gt, occ, pred, pred_occ, mode):
    q = (sample_queries_first if mode == "first" else sample_queries_strided)(occ, gt)
    pt, po = pred[q["track"]], pred_occ[q["track"]]
    m = compute_tapvid_metrics(q["query_points"][None], q["occluded"][None], q["target_points"][None], po[None],
                               pt[None], mode)
    return {k: float(v[0]) for k, v in m.items()}


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_metrics_oracle(mode):
    gt, occ = _two_tracks(6)
    m = _score(gt, occ, gt, occ, mode)
    assert set(m) == set(METRIC_NAMES)
    assert all(v == 1.0 for v in m.values())


def test_metrics_hand_computed_first():
    # T=5, queries at frame 0 for both tracks, frames 1..4 scored (8 points). A predicted 2 px to the right
    # (exactly 2: not within 2, tapnet's test is strict), B exact but predicted visible while occluded at 2, 3.
    gt, occ = _two_tracks(5)
    pred = gt.copy()
    pred[0, :, 0] += 2.0
    m = _score(gt, occ, pred, np.zeros_like(occ), "first")
    assert m["occlusion_accuracy"] == pytest.approx(6 / 8)  # B wrong at 2, 3
    # 6 visible scored points: A 4 (2 px off), B 2 (exact)
    for d, frac in [(1, 2 / 6), (2, 2 / 6), (4, 1), (8, 1), (16, 1)]:
        assert m[f"pts_within_{d}"] == pytest.approx(frac)
    # Jaccard = TP / (visible + FP): d<=2: TP 2, FP 4 (A too far) + 2 (B occluded) -> 2/12; d>=4: 6/(6+2)
    for d, jac in [(1, 1 / 6), (2, 1 / 6), (4, 0.75), (8, 0.75), (16, 0.75)]:
        assert m[f"jaccard_{d}"] == pytest.approx(jac)
    assert m["average_jaccard"] == pytest.approx((2 / 6 + 3 * 0.75) / 5)
    assert m["average_pts_within_thresh"] == pytest.approx((2 * 2 / 6 + 3) / 5)


def test_metrics_hand_computed_strided():
    # T=6, stride 5: queries (A,0) (B,0) (A,5) (B,5); every frame but the query's is scored (5 each, 20 in all):
    # A 10 visible; B: from 0 -> frames 1..5, from 5 -> frames 0..4, occluded 2, 3 in both: 6 visible, 4 occluded.
    gt, occ = _two_tracks(6)
    q = sample_queries_strided(occ, gt)
    assert q["query_points"][:, 0].tolist() == [0, 0, 5, 5] and q["track"].tolist() == [0, 1, 0, 1]
    pred = gt.copy()
    pred[0, :, 0] += 2.0
    m = _score(gt, occ, pred, np.zeros_like(occ), "strided")
    assert m["occlusion_accuracy"] == pytest.approx(16 / 20)
    assert m["pts_within_2"] == pytest.approx(6 / 16) and m["pts_within_4"] == 1.0
    assert m["jaccard_1"] == pytest.approx(6 / (16 + 14)) and m["jaccard_16"] == pytest.approx(16 / 20)
    assert m["average_jaccard"] == pytest.approx((2 * 0.2 + 3 * 0.8) / 5)
    assert m["average_pts_within_thresh"] == pytest.approx((2 * 6 / 16 + 3) / 5)


def test_first_mode_ignores_frames_up_to_the_query():
    gt, occ = _two_tracks(6)
    occ[0, :2] = True  # A first visible at frame 2: query there, frames 3.. scored
    q = sample_queries_first(occ, gt)
    assert q["query_points"][0].tolist() == [2, gt[0, 2, 1], gt[0, 2, 0]]
    pred, pred_occ = gt.copy(), occ.copy()
    pred[0, :3] += 50  # wrong before and at the query frame: not scored
    pred_occ[0, :3] = ~occ[0, :3]
    m = _score(gt, occ, pred, pred_occ, "first")
    assert m["average_jaccard"] == 1.0 and m["occlusion_accuracy"] == 1.0
    never = np.ones((1, 6), bool)  # a track never visible gives no query
    assert len(sample_queries_first(never, np.zeros((1, 6, 2)))["query_points"]) == 0


# ----------------------------------------------------------------------------------------------- tracker
def _texture(rng, size):
    return cv2.resize(rng.integers(0, 256, (size // 5, size // 5, 3)).astype(np.uint8), (size, size),
                      interpolation=cv2.INTER_NEAREST)


class _PatchEncoder(torch.nn.Module):
    """8 x 8 patches times fixed random weights (numpy seed): distinct features for every textured cell, stride 8,
    independent of torch's random streams."""

    is_video = False

    def __init__(self):
        super().__init__()
        w = np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)
        self.register_buffer("w", torch.from_numpy(w))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.w, stride=8)


def test_tracker_follows_translating_texture_and_flags_its_disappearance():
    from vidssl.eval.encoder import frame_features
    from vidssl.eval.point_track import track_points
    from vidssl.eval.protocol import Protocol

    rng = np.random.default_rng(0)
    T, H, W, v = 8, 64, 160, 8  # one feature cell (stride 8) per frame
    tex, frames = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8), []
    for t in range(T):
        f = np.full((H, W, 3), 90, np.uint8)
        if t < 5:  # frames 5..7: the square is gone (every query occluded there)
            f[16:48, 24 + v * t:56 + v * t] = tex
        frames.append(f)
    feats = frame_features(_PatchEncoder(), torch.from_numpy(np.stack(frames)), torch.device("cpu"))
    # sub-cell queries on the square; one in the middle of the visible part (tracked backward too)
    queries = np.array([[0, 32.0, 40.0], [0, 22.3, 31.6], [4, 44.0, 24 + 32 + 5.0], [2, 30.0, 24 + 16 + 20.3]])
    protocol = Protocol(n_context=4)  # a short context keeps the test quick; the tiled radius path still runs
    tracks, occluded = track_points(feats, queries, (H, W), protocol)
    expected_x = queries[:, 2:3] + v * (np.arange(T)[None] - queries[:, 0:1])
    assert np.abs(tracks[:, :5, 0] - expected_x[:, :5]).max() <= 1.0
    assert np.abs(tracks[:, :5, 1] - queries[:, 1:2]).max() <= 1.0
    assert not occluded[:, :5].any() and occluded[:, 5:].all()  # cycle error: back on background, >= 20 px off
    one_by_one = [track_points(feats, q[None], (H, W), protocol, chunk=1) for q in queries[:2]]
    assert np.allclose(np.stack([t[0] for t, _ in one_by_one]), tracks[:2], atol=1e-4)  # queries are independent
    assert np.array_equal(np.stack([o[0] for _, o in one_by_one]), occluded[:2])
    _, never = track_points(feats, queries, (H, W), protocol, occlusion="none")
    assert not never.any()
    # backward tracking is forward tracking of the reversed video
    mid = queries[2:3]  # frame 4: 4 frames back, 3 forward
    rev = mid * [-1, 1, 1] + [T - 1, 0, 0]
    fwd, fwd_occ = track_points(feats, mid, (H, W), protocol)
    back, back_occ = track_points(feats.flip(0), rev, (H, W), protocol)
    assert np.allclose(back[:, ::-1], fwd, atol=1e-4) and np.array_equal(back_occ[:, ::-1], fwd_occ)


# ----------------------------------------------------------------------------------------------- readers + CLI
def _synthetic_video(rng, T=8, H=48, W=64):
    """A textured square moving right 3 px/frame under a grey bar (x 40..48) that occludes it; 5 tracks."""
    tex = _texture(rng, 20)
    frames, x0, y0 = [], 6, 14
    offsets = np.array([[4.5, 4.5], [10.5, 10.5], [15.5, 6.5], [2.5, 16.5], [18.5, 18.5]])  # x, y in the square
    points = np.zeros((len(offsets), T, 2), np.float32)
    for t in range(T):
        f = np.full((H, W, 3), 60, np.uint8)
        f[y0:y0 + 20, x0 + 3 * t:x0 + 3 * t + 20] = tex
        f[:, 40:48] = 200
        frames.append(f)
        points[:, t] = (offsets + [x0 + 3 * t, y0]) / [W, H]
    px = points[..., 0] * W
    occluded = (px >= 40) & (px < 48)
    occluded[4, :] = True  # a track never visible: no query in either mode
    return {"video": np.stack(frames), "points": points, "occluded": occluded}


def _jpeg(video):
    return [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            for f in video]


def test_readers_dict_list_jpeg_npz(tmp_path):
    from vidssl.data.tapvid import convert_to_npz, read_tapvid

    rng = np.random.default_rng(1)
    a, b = _synthetic_video(rng), _synthetic_video(rng, T=6)
    (tmp_path / "davis.pkl").write_bytes(pickle.dumps({"bear/1": a, "cat": b}))
    (tmp_path / "kin.pkl").write_bytes(pickle.dumps([{**a, "video": _jpeg(a["video"])}]))
    d = list(read_tapvid(str(tmp_path / "davis.pkl")))
    assert [v.name for v in d] == ["bear_1", "cat"] and d[1].video.shape == (6, 48, 64, 3)
    k = list(read_tapvid(str(tmp_path / "kin.pkl")))
    assert k[0].name == "video_0" and k[0].video.dtype == np.uint8
    assert np.abs(k[0].video.astype(int) - a["video"]).mean() < 8  # JPEG decoded as RGB
    os.makedirs(tmp_path / "shards")
    for i in range(2):
        (tmp_path / "shards" / f"{i}_of_0010.pkl").write_bytes(pickle.dumps([{**b, "video": _jpeg(b["video"])}]))
    assert [v.name for v in read_tapvid(str(tmp_path / "shards"))] == ["0_of_0010_video_0", "1_of_0010_video_0"]
    paths = convert_to_npz(str(tmp_path / "davis.pkl"), str(tmp_path / "npz"))
    assert sorted(os.path.basename(p) for p in paths) == ["bear_1.npz", "cat.npz"]
    again = {v.name: v for v in read_tapvid(str(tmp_path / "npz"))}
    assert np.array_equal(again["cat"].video, b["video"]) and np.array_equal(again["cat"].occluded, b["occluded"])
    # frames folder + tracks-only npz
    os.makedirs(tmp_path / "plain" / "sq")
    for i, f in enumerate(a["video"]):
        cv2.imwrite(str(tmp_path / "plain" / "sq" / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    np.savez(tmp_path / "plain" / "sq.npz", points=a["points"], occluded=a["occluded"])
    (v,) = read_tapvid(str(tmp_path / "plain"))
    assert np.array_equal(v.video, a["video"]) and v.name == "sq"
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps([{"video": a["video"], "points": a["points"][:, :3],
                                                      "occluded": a["occluded"]}]))
    with pytest.raises(ValueError, match=r"bad.pkl\[video_0\].*points"):
        list(read_tapvid(str(tmp_path / "bad.pkl")))


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_cli_end_to_end(tmp_path, mode):
    from vidssl.eval.runner import main

    rng = np.random.default_rng(2)
    a, b = _synthetic_video(rng), _synthetic_video(rng, T=7)
    if mode == "first":  # dict form, arrays
        data = tmp_path / "tapvid_davis.pkl"
        data.write_bytes(pickle.dumps({"sq": a, "sq2": b}))
        names, gts = ["sq", "sq2"], [a, b]
    else:  # list form, JPEG-bytes frames (a Kinetics shard)
        data = tmp_path / "kinetics_0_of_0010.pkl"
        data.write_bytes(pickle.dumps([{**a, "video": _jpeg(a["video"])}, {**b, "video": _jpeg(b["video"])}]))
        names, gts = ["video_0", "video_1"], [a, b]
    out = tmp_path / "out"
    argv = ["tapvid", "--data", str(data), "--out", str(out), "--query-mode", mode, "--init", "pixels",
            "--device", "cpu", "--n-context", "4"]
    # strided: the encoder reads the frames at 96x128 (tracks still in pixels of the 48x64 frames as read)
    argv += ["--no-overlays", "--input-size", "96x128"] if mode == "strided" else ["--to-npz", str(tmp_path / "npz")]
    summary = main(argv)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["video"] for r in rows] == names + ["mean"]
    assert list(rows[0]) == ["video", *METRIC_NAMES]
    for name, gt, row in zip(names, gts, rows):
        z = np.load(out / "tracks" / f"{name}.npz")
        H, W = gt["video"].shape[1:3]
        q = (sample_queries_first if mode == "first" else sample_queries_strided)(gt["occluded"], gt["points"] * [W, H])
        n = len(q["query_points"])
        assert z["tracks"].shape == (n, len(gt["video"]), 2) and z["occluded"].shape == (n, len(gt["video"]))
        assert np.allclose(z["query_points"], q["query_points"], atol=1e-4)
        # each query sits at its own point, visible, on its frame
        t = q["query_points"][:, 0].astype(int)
        assert np.allclose(z["tracks"][np.arange(n), t], q["query_points"][:, [2, 1]], atol=1e-4)
        assert not z["occluded"][np.arange(n), t].any()
        # the CSV row is tapnet's metric of the written tracks on the 256 x 256 raster
        r = np.array([256 / W, 256 / H])
        qp = q["query_points"] * [1, 256 / H, 256 / W]
        m = compute_tapvid_metrics(qp[None], q["occluded"][None], (q["target_points"] * r)[None],
                                   z["occluded"][None], (z["tracks"] * r)[None], mode)
        for k in METRIC_NAMES:
            assert float(row[k]) == pytest.approx(float(m[k][0]), abs=1e-5)
            assert 0.0 <= float(row[k]) <= 1.0
    for k in METRIC_NAMES:
        assert float(rows[-1][k]) == pytest.approx(np.mean([float(r[k]) for r in rows[:-1]]), abs=2e-6)
    assert summary["AJ"] == pytest.approx(100 * float(rows[-1]["average_jaccard"]), abs=1e-3)
    if mode == "first":
        assert (out / "sq.mp4").exists() or (out / "sq.gif").exists()
        assert sorted(os.listdir(tmp_path / "npz")) == ["sq.npz", "sq2.npz"]
    else:
        assert not list(out.glob("*.mp4"))


def test_cli_refuses_malicious_pickle(tmp_path):
    from vidssl.eval.runner import main

    marker = tmp_path / "ran"
    data = tmp_path / "evil.pkl"
    data.write_bytes(pickle.dumps([{"video": _RunsCode(marker), "points": np.zeros((1, 1, 2)),
                                    "occluded": np.zeros((1, 1), bool)}]))
    with pytest.raises(UnsafePickleError, match="evil.pkl"):
        main(["tapvid", "--data", str(data), "--out", str(tmp_path / "out"), "--init", "pixels", "--device", "cpu"])
    assert not marker.exists()
