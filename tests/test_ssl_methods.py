"""byol (single frames) and rho_byol (independent clips, r3d_18): trained from their demo YAMLs on real video,
resumed exactly, evaluated and extracted from the exported encoder alone."""
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from eval_davis.__main__ import main as eval_main
from vidssl.config import load_config
from vidssl.engine import load_checkpoint, train
from vidssl.engine.schedules import cosine_ramp
from vidssl.features import main as extract_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALLER = {"byol": ["trainer.batch_size=4", "data.img_size=48", "method.crop_size=32"],
           "rho_byol": ["trainer.batch_size=2", "data.img_size=40", "method.crop_size=32"]}


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory, sample_videos):
    d = tmp_path_factory.mktemp("videos")
    shutil.copy(sample_videos[2], d / "a.mp4")  # the small carphone clip, twice
    shutil.copy(sample_videos[2], d / "b.mp4")
    return d


def run(name, video_dir, out, steps, *extra):
    cfg = load_config(os.path.join(ROOT, "configs", f"{name}_demo.yaml"),
                      [f"data.root={video_dir}", f"out={out}", f"trainer.max_steps={steps}", "data.num_workers=0",
                       "trainer.tensorboard=false", "trainer.log_every=1", *SMALLER[name], *extra])
    return train(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["byol", "rho_byol"])
def test_demo_trains_resumes_exactly_and_its_encoder_evaluates(tmp_path, video_dir, tiny_davis, name):
    full, part = tmp_path / "full", tmp_path / "part"
    run(name, video_dir, full, 4)
    run(name, video_dir, part, 4, "trainer.stop_at=2")  # an interrupted run (its schedules span 4 steps)
    assert load_checkpoint(str(part / "checkpoint.pt"))["step"] == 2
    run(name, video_dir, part, 4, "trainer.resume=true")
    a = load_checkpoint(str(full / "checkpoint.pt"))["model"]
    b = load_checkpoint(str(part / "checkpoint.pt"))["model"]
    assert any(k.startswith("target_backbone.") for k in a) and a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a), "resume is not exact"
    logged = [json.loads(line) for line in open(full / "metrics.jsonl")]
    assert all(math.isfinite(r["loss"]) for r in logged)
    momenta = [cosine_ramp(s, 4, 0.99, 1.0) for s in range(4)]
    assert [r["ema_momentum"] for r in logged] == pytest.approx(momenta)

    meta = json.load(open(full / "encoder.json"))
    assert meta["source"]["method"] == name and meta["source"]["step"] == 4
    assert meta["backbone"] == ("resnet18" if name == "byol" else "r3d_18")
    root, names = tiny_davis
    summary = eval_main(["--davis-root", root, "--sequences", names[0], "--out", str(tmp_path / "ev"),
                         "--checkpoint", str(full), "--no-overlays"])
    assert 0.0 <= summary["J&F-Mean"] <= 1.0 and name in summary["encoder"]


def test_byol_target_is_an_ema_of_the_online_network():
    from vidssl.methods import build_method

    m = build_method("byol", backbone="resnet18", proj_hidden=16, proj_dim=8, pred_hidden=16, crop_size=32)
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)
    before = m.target_backbone.conv1.weight.clone()
    m.after_optimizer_step(1, {"ema_momentum": 0.75})
    expected = 0.75 * before + 0.25 * m.backbone.conv1.weight
    assert torch.allclose(m.target_backbone.conv1.weight, expected)
    assert not any(p.requires_grad for p in m.target_backbone.parameters())
    groups = m.param_groups()
    assert groups[1]["lars_exclude"] and groups[1]["wd_scale"] == 0.0
    assert all(p.ndim == 1 for p in groups[1]["params"]) and all(p.ndim > 1 for p in groups[0]["params"])
    assert m.eval_encoder() is m.backbone


def test_rho_byol_refuses_a_2d_backbone_and_one_clip():
    from vidssl.methods import build_method

    with pytest.raises(ValueError, match="video backbone"):
        build_method("rho_byol", backbone="resnet18")
    with pytest.raises(ValueError, match="rho >= 2"):
        build_method("rho_byol", rho=1)


def test_video_backbone_evaluates_and_extracts_without_training(tmp_path, tiny_davis, sample_videos):
    root, names = tiny_davis
    summary = eval_main(["--davis-root", root, "--sequences", names[1], "--out", str(tmp_path / "ev"),
                         "--backbone", "r3d_18", "--init", "random", "--no-overlays", "--clip-len", "4"])
    assert 0.0 <= summary["J&F-Mean"] <= 1.0
    video = os.path.join(root, "JPEGImages", "480p", names[1])  # a frame folder of 6 frames
    extract_main(["--input", video, "--out", str(tmp_path / "feats"), "--backbone", "r3d_18", "--mode", "clip",
                  "--clip-len", "4"])
    (rec,) = [json.loads(line) for line in open(tmp_path / "feats" / "manifest.jsonl")]
    feats = np.load(tmp_path / "feats" / rec["file"])
    assert feats.shape == (2, 512) and np.isfinite(feats).all()  # ceil(6 / 4) clips, r3d_18's pooled layer4
    extract_main(["--input", video, "--out", str(tmp_path / "dense"), "--backbone", "r3d_18", "--mode", "dense",
                  "--clip-len", "4"])
    (rec,) = [json.loads(line) for line in open(tmp_path / "dense" / "manifest.jsonl")]
    assert np.load(tmp_path / "dense" / rec["file"]).shape == (6, 256, 6, 8)  # layer3: stride 8 of 48 x 64
