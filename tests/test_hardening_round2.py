"""Issue 22 ("Hardening, round two"): the cases the earlier guard tests (test_prep_guards, test_io_guards,
test_resume_policy, test_encoder_safety) left out, and the newer surfaces (TAP-Vid, BADJA, VIP, --weights, the
masked recipes) given the same treatment. Each test runs what a user would type on tiny generated or damaged data
and checks the exit status or exception, the message and the files on disk before and after."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_badja import make_layout
from test_knn import colour_folder
from test_tapvid import _synthetic_video
from test_trainer import TINY
from test_vip import make_vip

from vidssl.config import load_config
from vidssl.engine import train
from vidssl.eval.runner import main as eval_main
from vidssl.features import main as extract
from vidssl.io import read_motion_vectors
from vidssl.models import build_backbone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")


def listing(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


# ------------------------------------------------------------------------------------------------- data_prep
@pytest.fixture
def broken_and_good(tmp_path, sample_videos):
    d = tmp_path / "videos"
    d.mkdir()
    shutil.copy(sample_videos[2], d / "a.mp4")
    (d / "broken.mp4").write_bytes(b"not a video" * 100)
    return d


def test_reencode_exits_1_and_lists_the_failed_video(tmp_path, broken_and_good):
    from data_prep.reencode import run

    out = tmp_path / "re"
    with pytest.raises(SystemExit) as e:
        run(["--root", str(broken_and_good), "--out", str(out)])
    assert e.value.code == 1
    assert listing(out) == ["a.mp4", "failed_0of1.tsv"] and "broken.mp4" in (out / "failed_0of1.tsv").read_text()


@pytest.mark.parametrize("step", ["reencode", "flow", "frames"])
def test_every_step_refuses_out_in_root_or_a_file_before_writing(tmp_path, broken_and_good, step):
    import importlib

    main = importlib.import_module(f"vidssl.prep.{step}").main
    before = listing(broken_and_good)
    (tmp_path / "afile").write_text("x")
    for out, message in ((broken_and_good, "is --root itself"), (broken_and_good / "out", "inside --root"),
                         (tmp_path / "afile", "is a file; it must be a folder")):
        with pytest.raises(ValueError, match=message):
            main(["--root", str(broken_and_good), "--out", str(out)])
    assert listing(broken_and_good) == before and (tmp_path / "afile").read_text() == "x"


def test_tvl1_without_opencv_contrib_is_one_line(tmp_path, broken_and_good):
    import cv2

    if hasattr(cv2, "optflow"):
        pytest.skip("opencv-contrib is installed: TV-L1 is available")
    r = subprocess.run([sys.executable, "-m", "data_prep.flow", "--root", str(broken_and_good), "--out",
                        str(tmp_path / "fl"), "--algorithm", "tvl1"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: flow algorithm 'tvl1' needs opencv-contrib-python")


# ----------------------------------------------------------------------------------------- numbers, devices
@pytest.mark.parametrize("indices, message", [("12", "got the string '12'"), ([1.7], "must be integers")])
def test_motion_vector_indices_are_integers(sample_videos, indices, message):
    with pytest.raises(TypeError, match=message):
        read_motion_vectors(sample_videos[2], indices)


def test_extract_names_bad_numbers_an_out_file_and_a_bad_device(tmp_path, one_video):
    (tmp_path / "afile").write_text("x")
    args = ["--input", str(one_video), "--init", "pixels"]
    with pytest.raises(ValueError, match="--short-side must be >= 0, got -5"):
        extract([*args, "--out", str(tmp_path / "o"), "--short-side", "-5"])
    with pytest.raises(ValueError, match=r"--out .*afile is a file; it must be a folder"):
        extract([*args, "--out", str(tmp_path / "afile")])
    with pytest.raises(ValueError, match="--device must be auto, cpu, cuda or cuda:N, got 'foo'"):
        extract([*args, "--out", str(tmp_path / "o"), "--device", "foo"])
    assert sorted(os.listdir(tmp_path)) == ["afile", "videos"] and (tmp_path / "afile").read_text() == "x"


def test_eval_names_a_bad_device(tmp_path, tiny_davis):
    with pytest.raises(ValueError, match="--device must be auto, cpu, cuda or cuda:N, got 'foo'"):
        eval_main(["davis", "--davis-root", tiny_davis[0], "--out", str(tmp_path / "o"), "--init", "pixels",
                   "--device", "foo"])
    assert not (tmp_path / "o").exists()


def test_a_set_without_imagesets_is_noted(tmp_path, tiny_davis, capsys):
    root, names = tiny_davis
    assert not os.path.exists(os.path.join(root, "ImageSets"))
    eval_main(["davis", "--davis-root", root, "--set", "train", "--out", str(tmp_path / "o"), "--init", "pixels",
               "--no-overlays", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "note:" in out and "does not exist: evaluating every sequence folder" in out and "'train' set" in out


# ------------------------------------------------------------------------------------------ trainer guards
def test_a_damaged_knn_image_is_found_at_start_up(tmp_path, one_video):
    colour_folder(tmp_path / "knn")
    bad = next((tmp_path / "knn" / "train").rglob("*.jpg"))
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # a truncated JPEG: libjpeg would fill it grey
    cfg = load_config(None, [f"data.root={one_video}", *TINY, f"out={tmp_path / 'r'}", "trainer.max_steps=2",
                             f"trainer.knn_root={tmp_path / 'knn'}", "trainer.knn_every=1", "trainer.knn_size=32"])
    with pytest.raises(ValueError, match=f"trainer.knn_root .*{bad.name} is not a readable image .*truncated"):
        train(cfg)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()  # refused before the first step


def test_the_queue_check_leaves_unreadable_videos_out(tmp_path, sample_videos):
    videos = tmp_path / "v"
    videos.mkdir()
    shutil.copy(sample_videos[2], videos / "good.mp4")
    for i in range(3):
        (videos / f"broken{i}.mp4").write_bytes(b"garbage" * 100)
    cfg = load_config(os.path.join(CONFIGS, "mocov2_demo.yaml"),
                      [f"data.root={videos}", f"out={tmp_path / 'r'}", "data.clips_per_video=8",
                       "method.queue_size=24", "trainer.batch_size=4", "data.num_workers=0"])
    with pytest.raises(ValueError, match=r"method.queue_size=24 is larger than an epoch of the data \(at most 16 "
                                         r"items: 2 of the 4 videos cannot be opened, e.g. .*broken0.mp4\)"):
        train(cfg)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.parametrize("override, message", [
    ("method.mask_ratio=1.5", "mae: method.mask_ratio must lie in [0, 1), got 1.5"),
    ("method.decoder_heads=3", "mae: method.decoder_dim=128 must be a positive multiple of method.decoder_heads=3"),
    ("method.decoder_depth=-1", "mae: method.decoder_depth must be >= 0"),
    ("method.min_scale=2", "mae: method.min_scale must lie in (0, 1], got 2"),
    ("method.backbone=timm:hf-hub:someone/vit", "method.backbone: backbone 'timm:hf-hub:someone/vit' is refused"),
    ("method.backbone_kwargs={pretrained: true}", "method.backbone_kwargs.pretrained is refused"),
])
def test_masked_recipes_name_the_key(tmp_path, one_video, override, message):
    cfg = load_config(os.path.join(CONFIGS, "mae_demo.yaml"), [f"data.root={one_video}", f"out={tmp_path / 'r'}",
                                                               "trainer.max_steps=1", override])
    with pytest.raises(ValueError) as e:
        train(cfg)
    assert message in str(e.value)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


# ------------------------------------------------------------------------------------------ --weights files
def test_weights_that_are_not_finite_or_a_folder_are_refused(tmp_path, tiny_davis):
    state = {k: v.float() * float("nan") if v.is_floating_point() else v
             for k, v in build_backbone("resnet18").state_dict().items()}
    torch.save(state, tmp_path / "nan.pth")
    base = ["davis", "--davis-root", tiny_davis[0], "--out", str(tmp_path / "o"), "--backbone", "resnet18",
            "--device", "cpu"]
    with pytest.raises(ValueError, match=r"nan.pth: non-finite values in \d+ resnet18 tensor"):
        eval_main([*base, "--weights", str(tmp_path / "nan.pth")])
    with pytest.raises(ValueError, match="is a folder, not a checkpoint or weights file"):
        eval_main([*base, "--weights", str(tmp_path)])
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------- TAP-Vid, BADJA, VIP
@pytest.fixture
def npz_folder(tmp_path):
    d = tmp_path / "tapvid"
    d.mkdir()
    np.savez(d / "sq.npz", **_synthetic_video(np.random.default_rng(0), T=4))
    return d


def test_tapvid_out_or_to_npz_inside_the_data_is_refused(tmp_path, npz_folder):
    before = listing(npz_folder)
    base = ["tapvid", "--data", str(npz_folder), "--init", "pixels", "--device", "cpu"]
    for out in (npz_folder, npz_folder / "results"):
        with pytest.raises(ValueError, match="lies inside the dataset"):
            eval_main([*base, "--out", str(out)])
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"sq": _synthetic_video(np.random.default_rng(0), T=4)}))
    with pytest.raises(ValueError, match="--to-npz .* is a file"):
        eval_main(["tapvid", "--data", str(tmp_path / "p.pkl"), "--to-npz", str(npz_folder / "sq.npz"),
                   "--out", str(tmp_path / "o"), "--init", "pixels"])
    assert listing(npz_folder) == before and not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage, message", [
    ("object", r"sq.npz: not a readable .npz of plain arrays"),
    ("bytes", r"sq.npz: not a readable .npz of plain arrays"),
    ("nan", r"sq.npz: points must be finite where visible; point 0 at frame 0"),
    ("one_frame", r"sq.npz: 1 frame\(s\): a point track needs at least 2"),
])
def test_tapvid_damaged_npz_names_the_file(tmp_path, npz_folder, damage, message):
    v = _synthetic_video(np.random.default_rng(0), T=4)
    path = npz_folder / "sq.npz"
    if damage == "object":
        np.savez(path, video=v["video"], points=np.array([{"x": 1}], dtype=object), occluded=v["occluded"])
    elif damage == "bytes":
        path.write_bytes(os.urandom(600))
    elif damage == "nan":
        v["points"][0, 0] = np.nan
        v["occluded"][0, 0] = False
        np.savez(path, **v)
    else:
        np.savez(path, video=v["video"][:1], points=v["points"][:, :1], occluded=v["occluded"][:, :1])
    with pytest.raises(ValueError, match=message):
        eval_main(["tapvid", "--data", str(npz_folder), "--out", str(tmp_path / "o"), "--init", "pixels",
                   "--device", "cpu", "--no-overlays"])


def test_badja_checks_every_json_and_refuses_out_in_the_data_before_writing(tmp_path):
    badja, davis = make_layout(str(tmp_path))
    base = ["badja", "--badja-root", badja, "--davis-root", davis, "--init", "pixels", "--device", "cpu"]
    for out in (os.path.join(davis, "res"), os.path.join(badja, "res")):
        with pytest.raises(ValueError, match="lies inside the dataset"):
            eval_main([*base, "--out", out])
        assert not os.path.exists(out)
    path = os.path.join(badja, "joint_annotations", "toy.json")
    with open(path, "w") as f:
        f.write('[{"image_path": "x/00002.jpg", "joints": [[1, 2]], "visibility": [1]},')
    with pytest.raises(ValueError, match="toy.json is not valid JSON"):
        eval_main([*base, "--out", str(tmp_path / "o")])
    with open(path, "w") as f:
        json.dump([{"image_path": "x/00002.jpg", "joints": [[1, 2]], "visibility": "1"}], f)
    with pytest.raises(ValueError, match=r"toy.json item 0: 'visibility' must be a list"):
        eval_main([*base, "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_vip_out_inside_the_data_is_refused(tmp_path):
    root = tmp_path / "VIP_Fine"
    make_vip(str(root), videos=("v1",), n_frames=3, annotated=(0, 2), gt_scale=(1,))
    before = listing(root)
    with pytest.raises(ValueError, match="lies inside the dataset"):
        eval_main(["vip", "--vip-root", str(root), "--out", str(root / "res"), "--init", "pixels"])
    assert listing(root) == before
