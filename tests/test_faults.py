"""Bad input and bad settings end with an error that names the cause, before anything is written or run."""
import hashlib
import json
import os
import shutil

import numpy as np
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


# ---------------------------------------------------------------- what can and cannot be scored

def _copy_davis(tiny_davis, tmp_path):
    root, names = tiny_davis
    copy = tmp_path / "davis"
    shutil.copytree(root, copy)
    return copy, names


def test_unscorable_sequences_are_noted_not_nan(tmp_path, tiny_davis):
    from PIL import Image

    root, names = _copy_davis(tiny_davis, tmp_path)
    ann, img = root / "Annotations" / "480p", root / "JPEGImages" / "480p"
    first = ann / names[0] / "00000.png"
    palette = Image.open(first).getpalette()
    empty = Image.new("P", Image.open(first).size, 0)
    empty.putpalette(palette)
    empty.save(first)  # names[0]: no object in the first frame
    for png in sorted((ann / names[1]).iterdir())[1:]:
        png.unlink()  # names[1]: only the first frame annotated (as DAVIS test-dev)
    (img / "single").mkdir()
    (ann / "single").mkdir()
    shutil.copy(img / names[2] / "00000.jpg", img / "single")
    shutil.copy(ann / names[2] / "00000.png", ann / "single")
    before = tree_digest(root)
    out = tmp_path / "o"
    summary = eval_main(["--davis-root", str(root), "--sequences", f"{names[0]},{names[1]},single,{names[2]}",
                         "--out", str(out), "--init", "pixels", "--no-overlays"])
    assert tree_digest(root) == before  # the dataset is never written to
    notes = summary["not_scored"]
    assert set(notes) == {names[0], names[1], "single"}
    assert "no object" in notes[names[0]] and "only the first frame" in notes[names[1]] and "3" in notes["single"]
    rows = [ln.split(",")[0] for ln in open(out / "results" / "per-sequence_results-val.csv")][1:]
    assert rows and all(r.startswith(names[2] + "_") for r in rows)  # only the scorable sequence
    g = open(out / "results" / "global_results-val.csv").read().splitlines()[1].split(",")
    assert all(v and v != "nan" for v in g) and 0 <= summary["J&F-Mean"] <= 1
    noted = open(out / "results" / "not_scored-val.csv").read()
    assert all(n in noted for n in (names[0], names[1], "single"))
    assert len(os.listdir(out / "results" / names[1])) == 6  # still propagated and written


@pytest.mark.parametrize("what", ["mask", "frame"])
def test_a_mask_or_frame_of_another_size_names_the_file(tmp_path, tiny_davis, what):
    from PIL import Image

    root, names = _copy_davis(tiny_davis, tmp_path)
    folder = root / ("Annotations" if what == "mask" else "JPEGImages") / "480p" / names[0]
    bad = folder / ("00000.png" if what == "mask" else "00003.jpg")
    Image.open(bad).resize((40, 30)).save(bad)
    with pytest.raises(ValueError, match=f"{bad.name} is 30x40"):
        eval_main(["--davis-root", str(root), "--sequences", names[0], "--out", str(tmp_path / "o"),
                   "--init", "pixels", "--no-overlays"])


# ---------------------------------------------------------------- training inputs

CRW_TINY = ["method.backbone_kwargs={remove_layers: [layer3, layer4]}", "method.patch_size=16",
            "method.patch_stride=16", "data.img_size=32", "data.clip_len=3", "data.num_workers=0",
            "trainer.batch_size=2", "trainer.log_every=1", "trainer.tensorboard=false"]


def _train(tmp_path, root, *extra):
    from vidssl.engine import train

    return train(load_config(None, [f"data.root={root}", f"out={tmp_path / 'run'}", "trainer.max_steps=2",
                                    *CRW_TINY, *extra]))


def test_damaged_videos_are_skipped_and_listed(tmp_path, sample_videos):
    videos = tmp_path / "v"
    videos.mkdir()
    shutil.copy(sample_videos[2], videos / "good.mp4")
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "text.mp4").write_text("not a video at all\n" * 50)
    data = open(sample_videos[2], "rb").read()
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 20])
    result = _train(tmp_path, videos, "trainer.batch_size=4")
    assert result["step"] == 2
    listed = dict(line.rstrip("\n").split("\t", 1) for line in open(tmp_path / "run" / "bad_videos.tsv"))
    assert {os.path.basename(p) for p in listed} >= {"empty.mp4", "text.mp4"}
    assert "good.mp4" not in {os.path.basename(p) for p in listed}


def test_the_only_video_unreadable_is_said_once(tmp_path):
    videos = tmp_path / "v"
    videos.mkdir()
    (videos / "broken.mp4").write_text("garbage")
    with pytest.raises(RuntimeError, match="the only video failed") as e:
        _train(tmp_path, videos)
    assert str(e.value).count("broken.mp4") == 1
    lines = open(tmp_path / "run" / "bad_videos.tsv").read().splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(videos / "broken.mp4"))


def test_a_video_shorter_than_the_clip_is_skipped_not_padded(tmp_path):
    import torch

    from vidssl.data import ClipRequest, DataSpec, VideoDataset
    from vidssl.data.datasets import discover_sources

    root = tmp_path / "v"
    for name, n in (("short", 3), ("long", 12)):
        (root / name).mkdir(parents=True)
        for t in range(n):
            import cv2
            cv2.imwrite(str(root / name / f"{t:05d}.jpg"), np.full((16, 16, 3), t * 10, np.uint8))
    spec = DataSpec([ClipRequest("clip", 4, 8, "resize", frame_skip=2)])  # spans 7 frames
    ds = VideoDataset(discover_sources(str(root)), spec)
    item = ds[(ds.sources.index(str(root / "short")), 0)]
    assert item["path"].endswith("long") and torch.all(torch.diff(item["clip_index"]) == 2)
    assert len(item["skipped"]) == 1 and "too short" in item["skipped"][0]


def test_davis_root_single_file_and_list_with_spaces_as_data_root(tmp_path, tiny_davis, sample_videos):
    from vidssl.data.datasets import discover_sources

    root, names = tiny_davis
    found = discover_sources(root)
    assert sorted(os.path.basename(p) for p in found) == sorted(names)
    assert all("JPEGImages" in p for p in found)  # never the Annotations folders
    spaced = tmp_path / "my videos"
    spaced.mkdir()
    shutil.copy(sample_videos[2], spaced / "clip one.mp4")
    assert discover_sources(str(spaced / "clip one.mp4")) == [str(spaced / "clip one.mp4")]
    listing = tmp_path / "list.txt"
    listing.write_text(f"my videos/clip one.mp4\n{spaced / 'clip one.mp4'} 7  # with a label\n")
    assert discover_sources(str(listing)) == [str(spaced / "clip one.mp4")] * 2
    listing.write_text("my videos/nothing here.mp4\n")
    with pytest.raises(FileNotFoundError, match="line 1: .*nothing here.mp4"):
        discover_sources(str(listing))
    _train(tmp_path, spaced / "clip one.mp4", "trainer.max_steps=1")  # a single video is a valid data.root


def test_resume_with_changed_settings_is_refused_or_recorded(tmp_path, sample_videos):
    import yaml

    video = sample_videos[2]
    _train(tmp_path, video)
    with pytest.raises(ValueError, match=r"optim.lr: 0.0001 -> 0.001.*allow_changes"):
        _train(tmp_path, video, "trainer.resume=true", "optim.lr=1e-3", "trainer.max_steps=3")
    _train(tmp_path, video, "trainer.resume=true", "optim.lr=1e-3", "trainer.max_steps=3", "trainer.allow_changes=true")
    described = yaml.safe_load(open(tmp_path / "run" / "config.yaml"))
    assert described["optim"]["lr"] == pytest.approx(1e-3)
    (change,) = described["history"]
    assert change["step"] == 2 and change["changed"]["optim.lr"] == {"from": 1e-4, "to": 1e-3}
    assert change["changed"]["trainer.max_steps"] == {"from": 2, "to": 3}
    _train(tmp_path, video, "trainer.resume=true", "optim.lr=1e-3", "trainer.max_steps=4")  # longer: accepted
    assert len(yaml.safe_load(open(tmp_path / "run" / "config.yaml"))["history"]) == 2


def test_non_finite_buffers_never_make_a_good_checkpoint(tmp_path, sample_videos):
    import torch

    from vidssl.engine.trainer import Trainer
    from vidssl.io.checkpoint import load_checkpoint

    _train(tmp_path, sample_videos[2])
    good = load_checkpoint(str(tmp_path / "run" / "checkpoint.pt"))
    trainer = Trainer(load_config(None, [f"data.root={sample_videos[2]}", f"out={tmp_path / 'run'}", *CRW_TINY,
                                         "trainer.max_steps=2", "trainer.resume=true"]))
    bn = next(m for m in trainer.method.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var[0] = float("inf")  # statistics overflowed while the loss stayed finite
    with pytest.raises(FloatingPointError, match="running_var"):
        trainer.save()
    kept = load_checkpoint(str(tmp_path / "run" / "checkpoint.pt"))
    assert all(torch.equal(kept["model"][k], v) for k, v in good["model"].items())


def test_a_cut_manifest_and_partial_arrays_are_recovered(tmp_path, sample_videos):
    from vidssl.features import main as extract

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(sample_videos[2], src / name)
    out = tmp_path / "feats"
    args = ["--input", str(src), "--out", str(out), "--init", "pixels", "--short-side", "32", "--mode", "clip"]
    extract(args)
    manifest = out / "manifest.jsonl"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) - 20])  # killed mid-line
    (out / "b.mp4.npy.tmp.npy").write_bytes(b"\x93NUMPY partial")
    (out / "b.mp4.npy").unlink()
    extract(args)
    records = [json.loads(line) for line in open(manifest)]  # every line parses
    assert sorted(r["file"] for r in records) == ["a.mp4.npy", "b.mp4.npy"]
    assert not list(out.glob("*.tmp*")) and np.load(out / "b.mp4.npy").ndim == 2


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.dirname(__file__)), "train.py"),
           "trainer.max_steps=0", f"out={tmp_path}"]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [
        "error: config trainer.max_steps must be >= 1, got 0 (ValueError; --debug shows the traceback)"]
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


@pytest.mark.parametrize("what", ["00002.jpg", "00000.png"])
def test_a_corrupt_frame_or_mask_names_the_file(tmp_path, tiny_davis, what):
    root, names = _copy_davis(tiny_davis, tmp_path)
    folder = "JPEGImages" if what.endswith(".jpg") else "Annotations"
    bad = root / folder / "480p" / names[0] / what
    bad.write_bytes(bad.read_bytes()[:40])  # cut short
    with pytest.raises(Exception, match=what):
        eval_main(["--davis-root", str(root), "--sequences", names[0], "--out", str(tmp_path / "o"),
                   "--init", "pixels", "--no-overlays"])


def test_a_queue_longer_than_the_data_names_the_setting(tmp_path, sample_videos):
    from vidssl.engine import train

    cfg = load_config(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "mocov2_demo.yaml"),
                      [f"data.root={sample_videos[2]}", f"out={tmp_path}", "data.clips_per_video=8",
                       "method.queue_size=64", "trainer.batch_size=4", "data.num_workers=0"])
    with pytest.raises(ValueError, match=r"method.queue_size=64 is larger than an epoch of the data \(8 items"):
        train(cfg)


def test_a_truncated_jpeg_in_a_frame_folder_is_listed_once_for_its_folder(tmp_path):
    """A frame folder with a cut JPEG is no source of grey frames: training skips the folder, and bad_videos.tsv
    names it once with the frame, however many clips touch it."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    root = tmp_path / "frames"
    for name in ("a", "b", "cut"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            cv2.imwrite(str(root / name / f"{i:05d}.jpg"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    damaged = root / "cut" / "00002.jpg"
    damaged.write_bytes(damaged.read_bytes()[:300])
    before = sorted(p.name for p in (root / "cut").iterdir())
    result = _train(tmp_path, root, "data.clips_per_video=4", "data.clip_len=6")
    assert result["step"] == 2
    lines = (tmp_path / "run" / "bad_videos.tsv").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(root / "cut") + "\t") and "00002.jpg" in lines[0]
    assert sorted(p.name for p in (root / "cut").iterdir()) == before  # the data is left as it was
