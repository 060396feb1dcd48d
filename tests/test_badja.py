import csv
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from vidssl.eval.runner import main as eval_main
from vidssl.eval.tasks.badja import (
    badja_pck,
    list_sequences,
    load_sequence,
    mask_area,
    parse_size,
    read_annotations,
    to_badja_json,
)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_pck_by_hand_threshold_from_mask_area():
    # 3 annotated frames, 4 joints; frame 0 gives the queries (joints 0..2 visible there)
    gt = np.zeros((3, 4, 2))
    vis = np.array([[1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 1]], bool)
    areas = np.array([100.0, 400.0, 2500.0])  # thresholds 0.2 sqrt(A) = 2, 4, 10
    pred = np.zeros((3, 4, 2))
    pred_vis = np.ones((3, 4), bool)
    pred[1, 0] = [3.0, 0.0]  # 3 <= 4: correct
    pred[1, 1] = [3.0, 4.0]  # 5 > 4: wrong
    pred[1, 2] = [50.0, 0.0]  # invisible in frame 1: not scored
    pred[1, 3] = [50.0, 0.0]  # not visible in frame 0 (no query): not scored
    pred[2, 0] = [6.0, 8.0]  # exactly 10: correct (within means <=)
    pred[2, 1] = [1.0, 0.0]  # close, but predicted invisible: wrong
    pred_vis[2, 1] = False
    pred[2, 2] = [0.0, 0.0]  # correct
    r = badja_pck(gt, vis, pred, pred_vis, areas)
    assert (r["correct"], r["scored"]) == (3, 5)
    assert r["pck"] == pytest.approx(0.6)
    assert r["correct_position"] == 4 and r["pck_position"] == pytest.approx(0.8)  # the occluded-flagged one counts
    assert r["threshold"].tolist() == [2.0, 4.0, 10.0]
    # a larger mask on frame 1 (threshold 6) makes the 5-pixel miss correct
    assert badja_pck(gt, vis, pred, pred_vis, np.array([100.0, 900.0, 2500.0]))["correct"] == 4
    # frame 0 never counts, and a sequence with nothing to score is NaN, not 0
    assert math.isnan(badja_pck(gt[:1], vis[:1], pred[:1], pred_vis[:1], areas[:1])["pck"])


def test_la_png_mask_reads_as_binary(tmp_path):
    grey = np.zeros((6, 8), np.uint8)
    grey[1:4, 2:7] = 255
    la = np.stack([grey, np.full_like(grey, 255)], -1)
    path = str(tmp_path / "00000.png")
    Image.fromarray(la, mode="LA").save(path)
    assert Image.open(path).mode == "LA"
    area, size = mask_area(path)
    assert (area, size) == (15, (8, 6))


def test_real_la_png_in_badja(shared_data):
    from vidssl.io.frames import read_davis_mask

    path = os.path.join(shared_data, "badja", "davis2016", "Annotations", "480p", "bear", "00077.png")
    img = Image.open(path)
    assert img.mode == "LA"
    expected = np.array(img)[..., 0] > 127
    mask = read_davis_mask(path)
    assert mask.shape == (480, 854) and set(np.unique(mask).tolist()) == {0, 1}
    assert np.array_equal(mask == 1, expected)
    assert mask_area(path)[0] == int(expected.sum()) > 1000


def make_layout(root, n_frames=10, annotated=(2, 5, 8), size=(48, 32), seq="toy"):
    """A tiny BADJA + DAVIS layout: frames and masks 00000..; annotations in 'original' 1920x1080 pixels."""
    rng = np.random.default_rng(0)
    W, H = size
    img_dir = os.path.join(root, "davis", "JPEGImages", "480p", seq)
    ann_dir = os.path.join(root, "davis", "Annotations", "480p", seq)
    os.makedirs(img_dir)
    os.makedirs(ann_dir)
    for t in range(n_frames):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(os.path.join(img_dir, f"{t:05d}.jpg"))
        mask = np.zeros((H, W), np.uint8)
        mask[8:24, 10:30] = 255
        Image.fromarray(mask).save(os.path.join(ann_dir, f"{t:05d}.png"))
    entries = []
    for n in annotated:
        entries.append({"segmentation_path": f"DAVIS/Annotations/Full-Resolution/{seq}/{n:05d}.png",
                        "image_path": f"DAVIS/JPEGImages/Full-Resolution/{seq}/{n:05d}.jpg",
                        "visibility": [True, True, False], "joints": [[540, 960], [270, 480], [0, 0]]})
    os.makedirs(os.path.join(root, "badja", "joint_annotations"))
    with open(os.path.join(root, "badja", "joint_annotations", f"{seq}.json"), "w") as f:
        json.dump(entries[::-1], f)  # out of order on purpose
    return os.path.join(root, "badja"), os.path.join(root, "davis")


def test_load_sequence_maps_frames_and_joints(tmp_path):
    badja, davis = make_layout(str(tmp_path))
    seq = load_sequence(badja, davis, "toy")
    assert seq.numbers.tolist() == [2, 5, 8]  # sorted by frame number
    assert [os.path.basename(p) for p in seq.frame_paths] == [f"{t:05d}.jpg" for t in range(2, 9)]
    assert seq.annotated.tolist() == [0, 3, 6]
    assert [os.path.basename(p) for p in seq.mask_paths] == ["00002.png", "00005.png", "00008.png"]
    assert seq.joints_xy[0, 0].tolist() == [960, 540]  # [row, col] -> x, y
    assert seq.visible[:, 2].tolist() == [False] * 3
    out = to_badja_json(seq, seq.joints_xy, seq.visible)
    assert out[0]["joints"][0] == [540, 960] and out[0]["joints"][2] == [0, 0]
    assert out[0]["image_path"].endswith("00002.jpg") and out[0]["visibility"] == [True, True, False]
    assert parse_size("1920x1080", "--x") == (1920, 1080) and parse_size("64", "--x") == (64, 64)
    with pytest.raises(ValueError, match="--original-size"):
        parse_size("big", "--original-size")


def test_clear_errors(tmp_path):
    badja, davis = make_layout(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"cat\.json not found.*available: toy"):
        list_sequences(badja, ["cat"])
    with pytest.raises(FileNotFoundError, match="joint_annotations"):
        list_sequences(str(tmp_path), None)
    with pytest.raises(FileNotFoundError, match=r"JPEGImages/1080p/toy not found"):
        load_sequence(badja, davis, "toy", "1080p")
    with pytest.raises(FileNotFoundError, match=r"--davis-root .* not found"):
        eval_main(["badja", "--badja-root", badja, "--davis-root", str(tmp_path / "nope"), "--out",
                   str(tmp_path / "o"), "--init", "pixels"])
    with pytest.raises(FileNotFoundError, match="dog"):
        eval_main(["badja", "--badja-root", badja, "--davis-root", davis, "--sequences", "dog", "--out",
                   str(tmp_path / "o"), "--init", "pixels"])
    assert not os.path.exists(tmp_path / "o")  # checked before anything is written
    path = os.path.join(badja, "joint_annotations", "toy.json")
    data = json.load(open(path))
    data[1]["visibility"] = [1, 0]
    json.dump(data, open(path, "w"))
    with pytest.raises(ValueError, match=r"toy\.json item 1: 'visibility'"):
        read_annotations(path)
    del data[1]["visibility"]
    json.dump(data, open(path, "w"))
    with pytest.raises(ValueError, match=r"item 1: missing key 'visibility'"):
        read_annotations(path)
    data[1]["visibility"] = [1, 1, 0]
    data[1]["image_path"] = data[1]["image_path"].replace("00005", "00042")
    json.dump(data, open(path, "w"))
    with pytest.raises(FileNotFoundError, match="has no frame 42"):
        load_sequence(badja, davis, "toy")


def test_cli_end_to_end_on_real_badja(tmp_path, shared_data):
    """dog-agility (25 frames, 5 annotated), downsized, pixel baseline: every output is checked against an
    independent recomputation from the written joints.json, the official annotations and the masks."""
    root = os.path.join(shared_data, "badja")
    davis = os.path.join(root, "davis2016")
    out = tmp_path / "badja"
    summary = eval_main(["badja", "--badja-root", root, "--davis-root", davis, "--sequences", "dog-agility",
                         "--resize", "214x120", "--out", str(out), "--init", "pixels", "--no-overlays"])
    gt = json.load(open(os.path.join(root, "joint_annotations", "dog-agility.json")))
    pred = json.load(open(out / "dog-agility" / "joints.json"))
    assert [p["image_path"] for p in pred] == [g["image_path"] for g in gt]
    assert all(len(p["joints"]) == 37 and len(p["visibility"]) == 37 for p in pred)
    q = np.array(gt[0]["visibility"], bool)
    # the first annotated frame gives the queries: returned as given (tracked at 214x120, written in 1920x1080)
    assert np.allclose(np.array(pred[0]["joints"])[q], np.array(gt[0]["joints"])[q], atol=0.01)
    assert not np.array(pred[0]["visibility"])[~q].any()
    correct = scored = 0
    for g, p in zip(gt[1:], pred[1:]):
        mask = np.array(Image.open(os.path.join(davis, "Annotations", "480p", "dog-agility",
                                                os.path.basename(g["segmentation_path"]))).convert("L")) > 127
        thr = 0.2 * math.sqrt(mask.sum() * (1920 * 1080) / (854 * 480))
        for j in np.flatnonzero(q & np.array(g["visibility"], bool)):
            scored += 1
            d = math.dist(p["joints"][j], g["joints"][j])
            correct += bool(p["visibility"][j]) and d <= thr
    rows = read_csv(out / "pck.csv")
    assert [r["sequence"] for r in rows] == ["dog-agility", "mean"]
    assert float(rows[0]["pck"]) == pytest.approx(correct / scored, abs=1e-6)
    assert float(rows[1]["pck"]) == pytest.approx(correct / scored, abs=1e-6)
    assert summary["PCK@0.2"] == pytest.approx(100 * correct / scored, abs=1e-4)
    assert summary["pck"]["dog-agility"]["scored"] == scored
    # TAP-Vid measures of the same tracks: within 16 px on the 256x256 raster, occlusion accuracy
    tap = read_csv(out / "tapvid_metrics.csv")
    assert [r["sequence"] for r in tap] == ["dog-agility", "mean"]
    within = n_vis = agree = n_all = 0
    for g, p in zip(gt[1:], pred[1:]):
        for j in np.flatnonzero(q):
            n_all += 1
            agree += bool(p["visibility"][j]) == bool(g["visibility"][j])
            if g["visibility"][j]:
                n_vis += 1
                dy = (p["joints"][j][0] - g["joints"][j][0]) * 256 / 1080
                dx = (p["joints"][j][1] - g["joints"][j][1]) * 256 / 1920
                within += dx * dx + dy * dy < 16 * 16
    assert float(tap[0]["pts_within_16"]) == pytest.approx(within / n_vis, abs=1e-4)
    assert float(tap[0]["occlusion_accuracy"]) == pytest.approx(agree / n_all, abs=1e-6)
    assert 0 <= float(tap[0]["average_jaccard"]) <= 1
