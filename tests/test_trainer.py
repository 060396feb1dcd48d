import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from vidssl.config import load_config
from vidssl.data import ClipRequest, DataSpec
from vidssl.engine import train
from vidssl.io.checkpoint import load_checkpoint
from vidssl.methods import Method, register
from vidssl.models import build_backbone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["method.backbone_kwargs={remove_layers: [layer4]}", "method.patch_size=16", "method.patch_stride=16",
        "data.img_size=32", "data.clip_len=3", "data.num_workers=0", "trainer.batch_size=2", "trainer.log_every=1",
        "trainer.tensorboard=false", "optim.lr=0.001"]


@pytest.fixture
def video_dir(tmp_path, sample_videos):
    d = tmp_path / "videos"
    d.mkdir()
    shutil.copy(sample_videos[2], d / "a.mp4")  # the small carphone clip
    shutil.copy(sample_videos[2], d / "b.mp4")
    return d


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


def test_resume_equals_uninterrupted_run(tmp_path, video_dir):
    base = [f"data.root={video_dir}", *TINY]
    full = train(load_config(None, [*base, f"out={tmp_path / 'full'}", "trainer.max_steps=4"]))
    train(load_config(None, [*base, f"out={tmp_path / 'part'}", "trainer.max_steps=2"]))
    resumed = train(load_config(None, [*base, f"out={tmp_path / 'part'}", "trainer.max_steps=4", "trainer.resume=true"]))
    assert resumed["step"] == full["step"] == 4
    a, b = losses(tmp_path / "full"), losses(tmp_path / "part")
    assert a.keys() == b.keys() == {1, 2, 3, 4}
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-6)
    wa = load_checkpoint(str(tmp_path / "full" / "checkpoint.pt"))["model"]
    wb = load_checkpoint(str(tmp_path / "part" / "checkpoint.pt"))["model"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6) for k in wa)


def test_existing_checkpoint_is_not_silently_overwritten(tmp_path, video_dir):
    args = [f"data.root={video_dir}", *TINY, f"out={tmp_path / 'r'}", "trainer.max_steps=1"]
    train(load_config(None, args))
    with pytest.raises(FileExistsError, match="resume=true"):
        train(load_config(None, args))


def test_corrupt_video_is_skipped_and_listed(tmp_path, video_dir):
    (video_dir / "broken.mp4").write_bytes(b"\x00garbage" * 64)
    out = tmp_path / "r"
    result = train(load_config(None, [f"data.root={video_dir}", *TINY, f"out={out}", "trainer.max_steps=3",
                                      "data.clips_per_video=2"]))
    assert result["step"] == 3
    listed = (out / "bad_videos.tsv").read_text()
    assert "broken.mp4" in listed and "a.mp4" not in listed
    assert [json.loads(l)["bad_videos"] for l in open(out / "metrics.jsonl")][-1] == 1


@register("nan_test")
class NaNMethod(Method):
    def __init__(self):
        super().__init__()
        self.backbone = build_backbone("crw_resnet18", remove_layers=["layer3", "layer4"])

    def data_spec(self, d):
        return DataSpec([ClipRequest("frame", 1, d.img_size, "resize", frame_skip=1)])

    def forward(self, batch):
        return {"loss": self.backbone.conv1.weight.sum() * float("nan")}


def test_nan_guard_stops_with_message(tmp_path, video_dir):
    cfg = load_config(None, [f"data.root={video_dir}", "method={name: nan_test}", "data.num_workers=0",
                             "data.img_size=32", "trainer.batch_size=1", f"out={tmp_path}", "trainer.max_steps=2"])
    with pytest.raises(FloatingPointError, match="step 1"):
        train(cfg)


def test_config_rejects_unknown_and_mistyped_keys():
    with pytest.raises(ValueError, match="trainer.max_stepz"):
        load_config(None, ["trainer.max_stepz=3"])
    with pytest.raises(ValueError, match="must be int"):
        load_config(None, ["trainer.max_steps=many"])
    cfg = load_config(os.path.join(ROOT, "configs", "crw_kinetics.yaml"), ["data.root=/x", "trainer.resume=true"])
    assert cfg.trainer.batch_size == 20 and cfg.method["temperature"] == 0.05 and cfg.trainer.resume is True


DDP_SCRIPT = """
import sys, torch
from vidssl.config import load_config
from vidssl.engine.trainer import train
import vidssl.engine.trainer as T
import torch.distributed as dist
captured = {}
orig = T.build_method
def spy(**kw):
    m = orig(**kw); captured['m'] = m; return m
T.build_method = spy
cfg = load_config(None, sys.argv[1:])
train(cfg)
torch.save(captured['m'].state_dict(), cfg.out + f"/replica{__import__('os').environ['RANK']}.pt")
"""


def test_torchrun_gloo_ddp_keeps_replicas_identical(tmp_path, video_dir):
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", str(script),
           f"data.root={video_dir}", *TINY, f"out={out}", "trainer.max_steps=2", "trainer.device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(out / "replica0.pt")
    b = torch.load(out / "replica1.pt")
    init = load_checkpoint(str(out / "checkpoint.pt"))
    assert init["world_size"] == 2 and init["step"] == 2
    params = [k for k in a if "running_" not in k and "num_batches" not in k]
    assert len(params) > 40
    assert all(torch.equal(a[k], b[k]) for k in params)  # gradients were averaged: identical weights
    # BatchNorm statistics are per replica between steps (DDP broadcasts rank 0's at each forward), and
    # the checkpoint holds rank 0's
    ckpt = init["model"]
    assert all(torch.equal(a[k], ckpt[k]) for k in a)
