"""byol and rho_byol specifics (their demo training, resume and evaluation: tests/test_methods_demo.py)."""
import json
import os

import numpy as np
import pytest
import torch

from eval_davis.__main__ import main as eval_main
from vidssl.features import main as extract_main


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


def test_collapse_is_warned_with_its_step(tmp_path, sample_videos, monkeypatch, capsys):
    from vidssl.config import load_config
    from vidssl.engine import train
    from vidssl.methods.byol import BYOL

    forward = BYOL.forward
    monkeypatch.setattr(BYOL, "forward", lambda self, batch: {**forward(self, batch), "z_std": torch.tensor(1e-6)})
    train(load_config(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "byol_demo.yaml"),
                      [f"data.root={sample_videos[2]}", f"out={tmp_path}", "trainer.max_steps=2", "data.num_workers=0",
                       "trainer.batch_size=2", "data.img_size=40", "method.crop_size=32", "trainer.log_every=2",
                       "trainer.tensorboard=false"]))
    out = capsys.readouterr().out
    assert "warning: step 1:" in out and "warning: step 2:" in out and "collapsing" in out
