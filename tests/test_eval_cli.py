import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from eval_davis.__main__ import main as eval_main


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_synthetic_set_is_davis_layout_with_exact_multi_object_masks(tiny_davis):
    root, names = tiny_davis
    assert len(names) == 3
    ann = os.path.join(root, "Annotations", "480p", names[1])
    mask = Image.open(os.path.join(ann, "00000.png"))
    assert mask.mode == "P"
    ids = set(np.unique(np.array(mask)).tolist())
    assert {0, 1, 2} <= ids and len(os.listdir(ann)) == 6


def test_cli_writes_official_layout_and_scores(tmp_path, tiny_davis):
    root, names = tiny_davis
    out = tmp_path / "ev"
    summary = eval_main(["--davis-root", root, "--out", str(out), "--init", "pixels", "--radius", "4"])
    res = out / "results"
    for seq in names:
        pngs = sorted(os.listdir(res / seq))
        assert pngs == [f"{t:05d}.png" for t in range(6)]
        assert Image.open(res / seq / pngs[3]).mode == "P"
    g = read_csv(res / "global_results-val.csv")
    assert g[0] == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert float(g[1][0]) == pytest.approx(summary["J&F-Mean"], abs=5e-4)
    rows = read_csv(res / "per-sequence_results-val.csv")
    assert rows[0] == ["Sequence", "J-Mean", "F-Mean"] and len(rows) == 1 + 7  # 2 + 3 + 2 objects
    assert (res / "overlays" / "summary.png").exists() and (res / "overlays" / f"{names[0]}.mp4").exists()
    assert sorted(os.listdir(res / "overlays" / names[0])) == [f"{t:05d}.jpg" for t in range(6)]
    from vidssl.io import VideoReader
    with VideoReader(res / "overlays" / f"{names[0]}.mp4", backend="pyav") as v:  # a playable H.264 file
        assert v.num_frames == 6 and v.get_frames([5]).shape == (1, 48, 64, 3)
    # results are recomputed from the PNGs: damage one and the score drops
    before = summary["J&F-Mean"]
    from vidssl.eval.tasks.davis import evaluate_results
    seq = names[0]
    for t in range(1, 5):
        Image.fromarray(np.zeros((48, 64), np.uint8), mode="P").save(res / seq / f"{t:05d}.png")
    g2, _, _ = evaluate_results(root, str(res), names)
    assert g2["J&F-Mean"] < before


def test_ground_truth_as_result_scores_one(tmp_path, tiny_davis):
    from vidssl.eval.tasks.davis import evaluate_results

    root, names = tiny_davis
    g, rows, notes = evaluate_results(root, os.path.join(root, "Annotations", "480p"), names)
    assert notes == {}
    assert g["J&F-Mean"] == 1.0 and all(j == 1.0 and f == 1.0 for _, j, f in rows)


def test_missing_result_frame_is_an_error(tmp_path, tiny_davis):
    from vidssl.eval.tasks.davis import evaluate_results

    root, names = tiny_davis
    with pytest.raises(FileNotFoundError, match="00000.png"):
        evaluate_results(root, str(tmp_path), names[:1])


def test_real_davis2016(tmp_path, shared_data):
    out = tmp_path / "ev"
    summary = eval_main(["--davis-root", os.path.join(shared_data, "davis2016"), "--out", str(out),
                         "--sequences", "car-shadow", "--init", "pixels", "--no-overlays"])
    assert 0.15 < summary["J&F-Mean"] <= 1.0  # the Lab pixel baseline tracks this car a little
    assert read_csv(out / "results" / "per-sequence_results-val.csv")[1][0] == "car-shadow_1"


def test_real_jhmdb(tmp_path, shared_data):
    out = tmp_path / "pose"
    summary = eval_main(["--jhmdb-root", os.path.join(shared_data, "jhmdb"), "--out", str(out), "--init", "pixels"])
    video = "catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"
    kp = np.load(out / video / "keypoints.npy")
    assert kp.shape == (40, 15, 2)
    assert 0 <= summary["PCK@0.1"] <= summary["PCK@0.2"] <= 100
    header = read_csv(out / "pck.csv")[0]
    assert header[0] == "threshold" and header[-1] == "mean" and len(header) == 17
    # frame 0 is the given pose: decoded back within a cell of the ground truth
    from vidssl.eval.tasks.jhmdb import load_joints
    gt = load_joints(os.path.join(shared_data, "jhmdb"), video)
    assert np.nanmax(np.abs(kp[0] - gt[0])) < 16


def test_extract_dense_and_clip_resumes_and_reports_bad(tmp_path, sample_videos):
    import shutil

    from vidssl.features import main as extract

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sample_videos[2], src / "a.mp4")
    (src / "bad.mp4").write_bytes(b"nope" * 100)
    out = tmp_path / "feats"
    extract(["--input", str(src), "--out", str(out), "--init", "pixels", "--short-side", "72"])
    arr = np.load(out / "a.mp4.npy")
    assert arr.shape == (120, 3, 9, 11) and arr.dtype == np.float16
    assert np.allclose(np.linalg.norm(arr.astype(np.float32), axis=1), 1, atol=2e-3)
    assert "bad.mp4" in (out / "failures.tsv").read_text()
    mtime = os.path.getmtime(out / "a.mp4.npy")
    extract(["--input", str(src), "--out", str(out), "--init", "pixels", "--short-side", "72"])
    assert os.path.getmtime(out / "a.mp4.npy") == mtime  # finished work is skipped
    extract(["--input", str(src), "--out", str(out), "--init", "pixels", "--short-side", "64"])
    assert np.load(out / "a.mp4.npy").shape == (120, 3, 8, 10)  # other settings: redone, not reused
    recs = {r["file"]: r for r in map(json.loads, open(out / "manifest.jsonl"))}  # one line per video
    assert recs["a.mp4.npy"]["shape"] == [120, 3, 8, 10] and recs["bad.mp4.npy"]["status"] == "failed"
    clip_out = tmp_path / "clips"
    extract(["--input", str(src / "a.mp4"), "--out", str(clip_out), "--mode", "clip", "--clip-len", "8",
             "--short-side", "64"])
    # clip mode: the backbone's global output as trained (crw_resnet18 with layer4: 512), not the evaluation layer
    assert np.load(clip_out / "a.mp4.npy").shape == (15, 512)
