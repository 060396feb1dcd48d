"""Every method of tests/method_cases.py, trained from its demo YAML on real video (tiny overrides): the run
logs finite losses and its schedules' values, an interrupted + resumed run reaches the same weights and state
(EMA teachers, queues, centres: all buffers) as an uninterrupted one, and the exported encoder alone evaluates
on a DAVIS-layout set and extracts features with `vidssl extract`."""
import inspect
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from method_cases import TINY

from eval_davis.__main__ import main as eval_main
from vidssl.config import load_config
from vidssl.engine import train
from vidssl.features import main as extract_main
from vidssl.io.checkpoint import load_checkpoint
from vidssl.methods import build_method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 4


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory, sample_videos):
    d = tmp_path_factory.mktemp("videos")
    shutil.copy(sample_videos[2], d / "a.mp4")  # the small carphone clip, twice
    shutil.copy(sample_videos[2], d / "b.mp4")
    return d


def config(name, video_dir, out, *extra):
    return load_config(os.path.join(ROOT, "configs", f"{name}_demo.yaml"),
                       [f"data.root={video_dir}", f"out={out}", f"trainer.max_steps={STEPS}", "data.num_workers=0",
                        "trainer.tensorboard=false", "trainer.log_every=1", *TINY[name], *extra])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_demo_trains_resumes_exactly_and_its_encoder_evaluates(tmp_path, video_dir, tiny_davis, name):
    full, part = tmp_path / "full", tmp_path / "part"
    cfg = config(name, video_dir, full)
    train(cfg)
    train(config(name, video_dir, part, "trainer.stop_at=2"))  # an interrupted run (schedules span STEPS)
    assert load_checkpoint(str(part / "checkpoint.pt"))["step"] == 2
    train(config(name, video_dir, part, "trainer.resume=true"))
    a = load_checkpoint(str(full / "checkpoint.pt"))["model"]
    b = load_checkpoint(str(part / "checkpoint.pt"))["model"]
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.allclose(a[k].float(), b[k].float(), atol=1e-6)]
    assert not diff, f"resume is not exact for {diff[:5]}"

    logged = [json.loads(line) for line in open(full / "metrics.jsonl")]
    assert [r["step"] for r in logged] == list(range(1, STEPS + 1))
    assert all(math.isfinite(r["loss"]) for r in logged)
    schedules = build_method(**cfg.method).schedules(STEPS)
    for key, fn in schedules.items():  # every per-step value is logged, evaluated at the 0-based step
        assert [r[key] for r in logged] == pytest.approx([fn(s) for s in range(STEPS)]), key

    meta = json.load(open(full / "encoder.json"))
    assert meta["source"]["method"] == name and meta["source"]["step"] == STEPS
    root, names = tiny_davis
    summary = eval_main(["--davis-root", root, "--sequences", names[0], "--out", str(tmp_path / "ev"),
                         "--checkpoint", str(full), "--no-overlays"])
    assert 0.0 <= summary["J&F-Mean"] <= 1.0 and name in summary["encoder"]
    frames = os.path.join(root, "JPEGImages", "480p", names[0])
    extract_main(["--input", frames, "--out", str(tmp_path / "feats"), "--checkpoint", str(full), "--mode", "dense"])
    (record,) = [json.loads(line) for line in open(tmp_path / "feats" / "manifest.jsonl")]
    feats = np.load(tmp_path / "feats" / record["file"])
    assert feats.shape[0] == 6 and np.isfinite(feats).all()


def test_every_method_has_its_recipes_and_they_build():
    from vidssl.methods import METHODS

    configs = {os.path.basename(p)[:-5] for p in os.listdir(os.path.join(ROOT, "configs")) if p.endswith(".yaml")}
    shipped = {name for name, cls in METHODS.items() if cls.__module__.startswith("vidssl.methods.")}  # not tests'
    for name in shipped:
        assert f"{name}_demo" in configs and (name in configs or name == "crw"), name
    assert set(TINY) == shipped - {"crw"}  # every method runs the generic demo and DDP tests
    for config in sorted(configs):  # the paper recipes too: every key of method: is a constructor argument
        kwargs = dict(load_config(os.path.join(ROOT, "configs", f"{config}.yaml"), ["data.root=/x"]).method)
        inspect.signature(METHODS[kwargs.pop("name")]).bind(**kwargs)
