"""The trainer's guards (vidssl/engine/resume.py, trainer.py, config.py): settings it refuses, resumes that would
silently do the wrong thing, messages that name the key, and a monitor that fails without costing training steps."""
import json
import shutil

import pytest
import torch
import yaml
from test_knn import colour_folder
from test_trainer import TINY

from vidssl.config import load_config
from vidssl.data import ClipRequest, DataSpec
from vidssl.engine import train
from vidssl.io.checkpoint import load_checkpoint
from vidssl.methods import Method, register
from vidssl.models import build_backbone


@pytest.fixture
def video_dir(one_video):
    return one_video


def cfg(video_dir, out, *extra):
    return load_config(None, [f"data.root={video_dir}", *TINY, f"out={out}", *extra])


@pytest.mark.parametrize("override, message", [
    ("trainer.stop_at=-1", "trainer.stop_at must be >= 0"),
    ("trainer.device=foo", "trainer.device must be auto, cpu, cuda or cuda:N, got 'foo'"),
])
def test_bad_settings_are_refused_naming_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_method_values_of_the_wrong_type_name_the_key(tmp_path, video_dir):
    with pytest.raises(ValueError, match="method.temperature must be a number, got 'abc'"):
        train(cfg(video_dir, tmp_path / "r", "method.temperature=abc", "trainer.max_steps=1"))


def test_an_existing_file_as_out_is_named(tmp_path, video_dir):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out=.*file is a file"):
        train(cfg(video_dir, tmp_path / "file", "trainer.max_steps=1"))


def test_resume_guards(tmp_path, video_dir, capsys):
    out = tmp_path / "run"
    train(cfg(video_dir, out, "trainer.max_steps=3", "trainer.resume=true"))
    assert "does not exist: starting a new run" in capsys.readouterr().out
    with pytest.raises(ValueError, match="at step 3, beyond trainer.max_steps=2"):
        train(cfg(video_dir, out, "trainer.max_steps=2", "trainer.resume=true"))

    part = tmp_path / "part"
    train(cfg(video_dir, part, "trainer.max_steps=4", "trainer.stop_at=2"))
    result = train(cfg(video_dir, part, "trainer.max_steps=4", "trainer.stop_at=2", "trainer.resume=true"))
    assert result["step"] == 2 and "nothing to train" in capsys.readouterr().out
    assert load_checkpoint(str(part / "checkpoint.pt"))["step"] == 2

    moved = tmp_path / "moved"
    shutil.copytree(video_dir, moved)
    train(cfg(moved, part, "trainer.max_steps=4", "trainer.resume=true"))  # the data moved: said and recorded
    assert "data.root" in capsys.readouterr().out
    history = yaml.safe_load(open(part / "config.yaml"))["history"]
    assert history[0]["step"] == 2 and history[0]["changed"]["data.root"]["to"] == str(moved)


@register("nan_at_second_step")
class NaNAtSecondStep(Method):
    def __init__(self):
        super().__init__()
        self.backbone = build_backbone("resnet18")
        self.calls = 0

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("frame", 1, 32, "square", frame_skip=1)])

    def forward(self, batch: dict) -> dict:
        self.calls += 1
        loss = self.backbone.forward_global(batch["frame"][:, 0].permute(0, 3, 1, 2).float()).mean()
        return {"loss": loss * (float("nan") if self.calls == 2 else 1.0)}


def test_nan_guard_names_no_checkpoint_when_none_was_written(tmp_path, video_dir):
    with pytest.raises(FloatingPointError, match="at step 2 .*no checkpoint was written yet"):
        train(load_config(None, [f"data.root={video_dir}", "method={name: nan_at_second_step}", "data.num_workers=0",
                                 "trainer.batch_size=2", "trainer.max_steps=3", "trainer.tensorboard=false",
                                 f"out={tmp_path / 'r'}"]))


def test_a_failing_monitor_costs_no_training_step(tmp_path, video_dir, capsys, monkeypatch):
    import vidssl.eval.knn as knn
    from vidssl.io import VideoDecodeError

    colour_folder(tmp_path / "knn")

    def unreadable(path):  # an image that passed the start-up check but fails when decoded (e.g. replaced since)
        raise VideoDecodeError(path, "cannot read image")

    monkeypatch.setattr(knn, "read_image", unreadable)
    result = train(cfg(video_dir, tmp_path / "r", "trainer.max_steps=2", f"trainer.knn_root={tmp_path / 'knn'}",
                       "trainer.knn_every=1", "trainer.knn_size=32", "trainer.knn_k=3"))
    assert result["step"] == 2 and load_checkpoint(str(tmp_path / "r" / "checkpoint.pt"))["step"] == 2
    assert "a monitor failed and is switched off" in capsys.readouterr().out
    assert all("knn_top1" not in json.loads(ln) for ln in open(tmp_path / "r" / "metrics.jsonl"))
    assert torch.isfinite(torch.tensor(result["last"]["loss"]))
