"""The trainer side of the method contract: parameter groups, per-step values, hook order, logging, resume."""
import json
import math

import pytest
import torch

from vidssl.config import load_config
from vidssl.data import ClipRequest, DataSpec
from vidssl.engine.trainer import Trainer
from vidssl.io.checkpoint import load_checkpoint
from vidssl.methods import METHODS, Method, register
from vidssl.models import build_backbone


@register("contract_probe")
class Probe(Method):
    """Records what the trainer hands it."""

    def __init__(self):
        super().__init__()
        self.backbone = build_backbone("crw_resnet18", remove_layers=["layer3", "layer4"])
        self.head = torch.nn.Linear(self.backbone.out_channels, 4)
        self.calls = []

    def data_spec(self, d):
        return DataSpec([ClipRequest("frame", 1, d.img_size, "resize", frame_skip=1)])

    def device_augment(self, batch, generator):
        x = batch["frame"][:, 0].permute(0, 3, 1, 2).float() / 255
        return {**batch, "x": x + 0.01 * torch.randn(x.shape, generator=generator)}

    def forward(self, batch):
        self.calls.append(("forward", batch["schedule"]["temp"], batch["x"].device.type))
        feats = self.backbone(batch["x"]).mean(dim=(2, 3))
        return {"loss": self.head(feats).pow(2).mean(), "feat_mean": feats.mean().detach()}

    def param_groups(self):
        return [{"name": "backbone", "params": self.backbone.parameters()},
                {"name": "head", "params": self.head.parameters(), "lr_scale": 0.5, "static_lr": True,
                 "wd_scale": 0.0}]

    def schedules(self, max_steps):
        return {"temp": lambda s: 10.0 + s}

    def before_optimizer_step(self, step, values):
        assert self.head.weight.grad is not None
        self.calls.append(("before", step, values["temp"]))

    def after_optimizer_step(self, step, values):
        self.calls.append(("after", step, values["lr"], values["wd"]))


def probe_config(tmp_path, video_dir, *extra):
    return load_config(None, [f"data.root={video_dir}", "method={name: contract_probe}", "data.img_size=16",
                              "data.num_workers=0", "trainer.batch_size=2", "trainer.log_every=1",
                              "trainer.tensorboard=false", f"out={tmp_path / 'run'}", "trainer.max_steps=4",
                              "optim.name=sgd", "optim.lr=0.1", "optim.weight_decay=0.01",
                              "optim.weight_decay_end=0.05", "schedule.name=cosine", *extra])


@pytest.fixture
def video_dir(one_video):
    return one_video


def test_groups_schedules_and_hooks(tmp_path, video_dir):
    trainer = Trainer(probe_config(tmp_path, video_dir))
    lrs = []
    real_step = trainer.optimizer.step

    def spy_step(*a, **k):
        lrs.append([(g["name"], g["lr"], g["weight_decay"]) for g in trainer.optimizer.param_groups])
        return real_step(*a, **k)

    trainer.optimizer.step = spy_step
    trainer.fit()
    cos = [0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]  # 0-based steps of a 4-step cosine
    for s, groups in enumerate(lrs):
        wd = 0.05 + (0.01 - 0.05) * cos[s]
        assert groups[0] == pytest.approx(("backbone", 0.1 * cos[s], wd))
        assert groups[1] == pytest.approx(("head", 0.05, 0.0))  # static lr x scale, no decay
    calls = trainer.method.calls
    assert [c[0] for c in calls] == ["forward", "before", "after"] * 4
    assert [c[1] for c in calls if c[0] == "forward"] == [10.0, 11.0, 12.0, 13.0]
    # one step convention: the hooks see the same 0-based step the schedules are evaluated at
    assert [c[1:] for c in calls if c[0] == "before"] == [(0, 10.0), (1, 11.0), (2, 12.0), (3, 13.0)]
    assert [c[1] for c in calls if c[0] == "after"] == [0, 1, 2, 3]
    logged = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["temp"] for r in logged] == [10.0, 11.0, 12.0, 13.0]
    assert logged[1]["lr"] == pytest.approx(0.1 * cos[1]) and "samples_per_s" in logged[0]
    assert "feat_mean" in logged[0]


def test_resume_with_another_world_size_is_refused(tmp_path, video_dir):
    cfg = probe_config(tmp_path, video_dir, "trainer.max_steps=1")
    Trainer(cfg).fit()
    path = tmp_path / "run" / "checkpoint.pt"
    ckpt = load_checkpoint(str(path))
    torch.save({**ckpt, "world_size": 2}, path)
    with pytest.raises(RuntimeError, match="nproc_per_node 2"):
        Trainer(probe_config(tmp_path, video_dir, "trainer.max_steps=2", "trainer.resume=true"))


def test_unknown_group_key_and_method_kwarg_are_named():
    from vidssl.optim.optimizer import build_optimizer

    cfg = load_config(None, [])
    with pytest.raises(ValueError, match="lr_scal"):
        build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scal": 2}], cfg.optim)
    from vidssl.methods import build_method

    with pytest.raises(ValueError, match="method 'crw'.*tempreature"):
        build_method("crw", tempreature=0.1)


def test_methods_register_by_importing_the_package():
    assert {"crw", "byol", "rho_byol"} <= set(METHODS)
