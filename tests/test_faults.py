"""Bad input and bad settings end with an error that names the cause, before anything is written or run."""
import hashlib
import json
import os
import shutil

import pytest

from eval_davis.__main__ import main as eval_main
from vidssl.config import load_config


def tree_digest(root):
    h = hashlib.sha1()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            h.update(path.encode())
            h.update(open(path, "rb").read())
    return h.hexdigest()


@pytest.mark.parametrize("trick", ["../Annotations/480p/SEQ", "ABS", "a/b"])
def test_sequence_names_are_names_not_paths(tmp_path, tiny_davis, trick):
    root, names = tiny_davis
    trick = trick.replace("SEQ", names[0]).replace("ABS", os.path.join(root, "JPEGImages", "480p", names[0]))
    before = tree_digest(root)
    with pytest.raises(ValueError, match="plain names, not paths"):
        eval_main(["--davis-root", root, "--sequences", f"{names[0]},{trick}", "--out", str(tmp_path / "o"),
                   "--init", "pixels"])
    assert tree_digest(root) == before
    assert not os.path.exists(tmp_path / "o" / "results")


def test_a_missing_sequence_is_found_before_any_propagation(tmp_path, tiny_davis):
    root, names = tiny_davis
    with pytest.raises(FileNotFoundError, match="no-such-seq"):
        eval_main(["--davis-root", root, "--sequences", f"{names[0]},no-such-seq", "--out", str(tmp_path / "o"),
                   "--init", "pixels"])
    assert not os.path.exists(tmp_path / "o" / "results" / names[0])  # nothing ran for the good one either


@pytest.mark.parametrize("option,value", [("--temperature", "0"), ("--topk", "0"), ("--n-context", "-1")])
def test_senseless_propagation_options_are_errors(tmp_path, tiny_davis, capsys, option, value):
    root, _ = tiny_davis
    with pytest.raises(SystemExit) as e:
        eval_main(["--davis-root", root, "--out", str(tmp_path / "o"), "--init", "pixels", option, value])
    assert e.value.code == 2 and option in capsys.readouterr().err


def test_config_reads_numbers_as_numbers_and_names_bad_values():
    assert load_config(None, ["optim.lr=3e-4"]).optim.lr == pytest.approx(3e-4)
    for key, value in [("trainer.max_steps", "0"), ("trainer.batch_size", "-2"), ("data.clip_len", "0")]:
        with pytest.raises(ValueError, match=f"config {key} must be >= 1"):
            load_config(None, [f"{key}={value}"])
    with pytest.raises(ValueError, match="optim.lr must be a number"):
        load_config(None, ["optim.lr=fast"])


def test_a_clip_too_short_for_the_method_names_the_key(tmp_path):
    from vidssl.engine import train

    with pytest.raises(ValueError, match="data.clip_len=2 is too short for crw"):
        train(load_config(None, ["data.clip_len=2", f"out={tmp_path}"]))


def test_overwrite_starts_a_clean_run(tmp_path, sample_videos):
    from vidssl.engine import train

    videos = tmp_path / "v"
    videos.mkdir()
    shutil.copy(sample_videos[2], videos / "a.mp4")
    out = tmp_path / "run"
    args = [f"data.root={videos}", "method.backbone_kwargs={remove_layers: [layer3, layer4]}", "method.patch_size=16",
            "method.patch_stride=16", "data.img_size=32", "data.clip_len=3", "data.num_workers=0",
            "trainer.batch_size=1", "trainer.log_every=1", "trainer.tensorboard=false", f"out={out}"]
    train(load_config(None, [*args, "trainer.max_steps=3"]))
    (out / "bad_videos.tsv").write_text("/old/video.mp4\tstale\n")
    (out / "notes.txt").write_text("the user's own file")
    train(load_config(None, [*args, "trainer.max_steps=1", "trainer.overwrite=true"]))
    assert [json.loads(line)["step"] for line in open(out / "metrics.jsonl")] == [1]
    assert not (out / "bad_videos.tsv").exists() and (out / "notes.txt").read_text() == "the user's own file"


def test_extraction_outputs_are_unique_per_input(tmp_path, sample_videos):
    from vidssl.features import main as extract

    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    for path in (src / "a" / "clip.mp4", src / "b" / "clip.mp4", src / "a" / "clip.mov"):
        shutil.copy(sample_videos[2], path)
    listing = tmp_path / "list.txt"
    listing.write_text("in/a/clip.mp4\nin/b/clip.mp4\n")
    out = tmp_path / "feats"
    extract(["--input", str(src), "--out", str(out), "--init", "pixels", "--short-side", "32", "--mode", "clip"])
    assert sorted(f for f in os.listdir(out) if f.endswith(".npy")) == ["a__clip.mov.npy", "a__clip.mp4.npy",
                                                                     "b__clip.mp4.npy"]
    records = [json.loads(line) for line in open(out / "manifest.jsonl")]
    assert sorted(r["file"] for r in records) == ["a__clip.mov.npy", "a__clip.mp4.npy", "b__clip.mp4.npy"]
    extract(["--input", str(listing), "--out", str(tmp_path / "from_list"), "--init", "pixels", "--short-side", "32",
             "--mode", "clip"])
    assert sorted(os.listdir(tmp_path / "from_list")) == ["in__a__clip.mp4.npy", "in__b__clip.mp4.npy", "manifest.jsonl"]
