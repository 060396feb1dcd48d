"""The evaluation input-size knob (Protocol.input_size / --input-size): parsing, the shapes it gives, and that
DAVIS and JHMDB read resized frames but score at the ground truth's own size."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from vidssl.eval.protocol import Protocol, input_shape, parse_input_size


def test_parse_and_shapes():
    assert parse_input_size("native") == ("native",)
    assert parse_input_size("short:240") == ("short", 240)
    assert parse_input_size("240x427") == ("fixed", 240, 427)
    assert input_shape("short:240", 480, 854) == (240, 427)  # 854 * 240 / 480 = 427
    assert input_shape("short:100", 300, 200) == (150, 100)  # portrait: the width is the short side
    assert input_shape("64x48", 480, 854) == (64, 48)
    assert input_shape("native", 480, 854) == (480, 854)
    assert input_shape("native", 240, 320, native=(320, 320)) == (320, 320)  # JHMDB's reference size
    for bad in ("short:0", "short:", "240", "0x10", "half", "240x"):
        with pytest.raises(ValueError, match="input-size"):
            parse_input_size(bad)
    with pytest.raises(ValueError, match="'half'"):
        Protocol(input_size="half")
    assert Protocol().input_size == "native" and Protocol().as_dict()["input_size"] == "native"


def test_cli_rejects_a_bad_input_size(tmp_path, capsys):
    from vidssl.eval.runner import main

    with pytest.raises(SystemExit):
        main(["davis", "--out", str(tmp_path), "--init", "pixels", "--input-size", "short:x"])
    assert "--input-size" in capsys.readouterr().err


def test_davis_at_reduced_input_size_scores_at_native_size(tmp_path):
    from vidssl.eval.runner import main

    out = tmp_path / "small"
    summary = main(["davis", "--out", str(out), "--init", "pixels", "--no-overlays", "--input-size", "short:48"])
    assert summary["protocol"]["input_size"] == "short:48" and summary["input_size"] == "short:48"
    with open(out / "summary.json") as f:
        assert json.load(f)["protocol"]["input_size"] == "short:48"
    root = summary["davis_root"]
    seq = sorted(os.listdir(os.path.join(root, "Annotations", "480p")))[0]
    gt = Image.open(os.path.join(root, "Annotations", "480p", seq, "00001.png"))
    pred = Image.open(out / "results" / seq / "00001.png")
    assert pred.size == gt.size and min(gt.size) > 48  # predicted at the annotation's size, read smaller
    assert 0 < summary["J&F-Mean"] <= 1


def test_jhmdb_input_size_keeps_keypoints_in_original_pixels(tmp_path, shared_data):
    from vidssl.eval.runner import main
    from vidssl.eval.tasks.jhmdb import load_joints

    root = os.path.join(shared_data, "jhmdb")
    b = main(["jhmdb", "--jhmdb-root", root, "--out", str(tmp_path), "--init", "pixels", "--no-overlays",
              "--input-size", "short:120", "--n-context", "4"])
    assert b["input_size"] == "short:120"
    cls = os.listdir(os.path.join(root, "Rename_Images"))[0]
    video = os.listdir(os.path.join(root, "Rename_Images", cls))[0]
    kb = np.load(tmp_path / cls / video / "keypoints.npy")
    gt = load_joints(root, f"{cls}/{video}")
    # frame 0 is the ground truth drawn on 160x120 frames' 20x15 cells and decoded back to 320x240 pixels:
    # within a cell (16 px), which a decoding in resized-frame pixels would not be
    assert kb.shape == gt.shape and np.nanmax(np.abs(kb[0] - gt[0])) < 16
    assert 0 <= b["PCK@0.1"] <= 100
