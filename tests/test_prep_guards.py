"""Preparation steps and evaluation refuse outputs that would eat their own inputs, and say so in one line."""
import os
import shutil
import subprocess
import sys

import pytest

from vidssl.eval.runner import main as eval_main
from vidssl.prep.frames import main as frames_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def videos(one_video):
    return one_video


def test_out_equal_to_or_inside_root_is_refused_before_anything_is_written(videos):
    before = sorted(os.listdir(videos))
    with pytest.raises(ValueError, match="--root itself"):
        frames_main(["--root", str(videos), "--out", str(videos)])
    with pytest.raises(ValueError, match="inside --root"):
        frames_main(["--root", str(videos), "--out", str(videos / "frames")])
    assert sorted(os.listdir(videos)) == before


def test_bad_numbers_and_roots_are_one_line_errors(tmp_path, videos):
    def run(*argv):
        return subprocess.run([sys.executable, "-m", "data_prep.frames", *argv], capture_output=True, text=True,
                              cwd=ROOT)

    bad = run("--root", str(videos), "--out", str(tmp_path / "o"), "--short-side", "-5")
    assert bad.returncode == 2 and "--short-side: must be >= 0, got -5" in bad.stderr
    missing = run("--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 1 and missing.stderr.startswith("error: --root") and "Traceback" not in missing.stderr
    shard = run("--root", str(videos), "--out", str(tmp_path / "o"), "--shard", "3", "--num-shards", "2")
    assert shard.returncode == 1 and "--shard must be in [0, --num-shards)" in shard.stderr
    assert not (tmp_path / "o").exists()


def test_eval_out_inside_the_dataset_is_refused_before_it_is_created(tiny_davis):
    root, names = tiny_davis
    out = os.path.join(root, "results_here")
    with pytest.raises(ValueError, match="lies inside the dataset"):
        eval_main(["davis", "--davis-root", root, "--sequences", names[0], "--out", out, "--init", "pixels"])
    assert not os.path.exists(out)


def test_a_missing_input_frame_is_named_as_such(tmp_path, tiny_davis):
    root, names = tiny_davis
    copy = tmp_path / "davis"
    shutil.copytree(root, copy)
    os.remove(copy / "JPEGImages" / "480p" / names[0] / "00002.jpg")
    with pytest.raises(FileNotFoundError, match=f"input frame 00002 of {names[0]} is missing"):
        eval_main(["davis", "--davis-root", str(copy), "--sequences", names[0], "--out", str(tmp_path / "o"),
                   "--init", "pixels", "--no-overlays"])
