"""The house rules: one-way layers (import-linter) and a clean `ruff check`; a new method and a new evaluation task
are each one file (here: this test file) plus a config; every command has --help; a wheel carries the demo recipe."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from vidssl.cli import main as vidssl
from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.eval.tasks import EvalTask, TaskResult, register_task
from vidssl.io.frames import list_frames, read_image
from vidssl.methods.base import Method, register
from vidssl.models.backbones import build_backbone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_layers_run_one_way():
    """`lint-imports` checks the layers contract of pyproject.toml (io -> data/models -> methods/eval -> engine -> cli)."""
    proc = subprocess.run([shutil.which("lint-imports") or "lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "0 broken" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_ruff_check_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


@register("toy_colour")
class ToyColour(Method):
    """A toy method: the encoder's pooled features of a frame predict the frame's mean colour."""

    def __init__(self, backbone: str = "resnet18", size: int = 32):
        super().__init__()
        self.backbone = build_backbone(backbone)
        self.head = nn.Linear(self.backbone.out_channels, 3)
        self.size = size

    def data_spec(self, d) -> DataSpec:
        return DataSpec([ClipRequest("frame", 1, self.size, "square", frame_skip=1)])

    def forward(self, batch: dict) -> dict:
        x = batch["frame"][:, 0].permute(0, 3, 1, 2).float() / 255
        loss = (self.head(self.backbone.forward_global(x)) - x.mean(dim=(2, 3))).pow(2).mean()
        return {"loss": loss}


@register_task("toy_norms")
class ToyNorms(EvalTask):
    """A toy task: the mean feature norm of each frame of a folder."""

    help = "mean feature norm per frame"

    @staticmethod
    def add_arguments(parser) -> None:
        parser.add_argument("--frames", required=True)

    def run(self, ctx) -> TaskResult:
        from vidssl.eval.encoder import frame_features

        frames = torch.from_numpy(np.stack([read_image(p) for p in list_frames(self.args.frames)]))
        feats = frame_features(ctx.encoder, frames, ctx.device, clip_len=ctx.protocol.clip_len)
        norms = feats.float().norm(dim=1).mean(dim=(1, 2)).tolist()
        rows = [{"frame": i, "norm": n} for i, n in enumerate(norms)]
        with open(os.path.join(ctx.out, "norms.csv"), "w") as f:
            f.writelines(f"{r['frame']},{r['norm']:.6f}\n" for r in rows)
        return TaskResult(headline={"mean_norm": float(np.mean(norms))}, rows=rows, report=f"{len(rows)} frames")


@pytest.mark.slow
def test_a_new_method_and_a_new_task_are_their_own_files(tmp_path, sample_videos, tiny_davis):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(sample_videos[2], videos / "a.mp4")
    config = tmp_path / "toy.yaml"
    config.write_text("method: {name: toy_colour, size: 32}\ntrainer: {batch_size: 2, max_steps: 2, log_every: 1, "
                      "tensorboard: false}\ndata: {num_workers: 0}\n")
    run = tmp_path / "run"
    vidssl(["train", str(config), f"data.root={videos}", f"out={run}"])  # the recipe positionally (or --config)
    assert [json.loads(ln)["step"] for ln in open(run / "metrics.jsonl")] == [1, 2]
    assert json.load(open(run / "encoder.json"))["source"]["method"] == "toy_colour"

    root, names = tiny_davis
    frames = os.path.join(root, "JPEGImages", "480p", names[0])
    out = tmp_path / "eval"
    vidssl(["eval", "toy_norms", "--frames", frames, "--out", str(out), "--checkpoint", str(run)])
    summary = json.load(open(out / "summary.json"))
    assert summary["mean_norm"] == pytest.approx(1.0, abs=1e-4)  # frame_features L2-normalises every cell
    assert "toy_colour" in summary["encoder"] and summary["propagation"]["topk"] == 10
    assert len(open(out / "norms.csv").readlines()) == 6


def test_every_command_has_help_and_documents_debug(capsys):
    with pytest.raises(SystemExit) as e:
        vidssl(["--help"])
    assert e.value.code == 0
    listed = capsys.readouterr().out
    for command in ("train", "eval", "extract", "prep", "demo"):
        assert f"    {command} " in listed
        with pytest.raises(SystemExit) as e:
            vidssl([command, "--help"])
        assert e.value.code == 0, command
        assert "--debug" in capsys.readouterr().out, command
    for argv in (["eval", "davis", "--help"], ["eval", "jhmdb", "--help"], ["prep", "frames", "--help"]):
        with pytest.raises(SystemExit) as e:
            vidssl(argv)
        assert e.value.code == 0, argv
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        vidssl(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("vidssl ")
    with pytest.raises(SystemExit) as e:
        vidssl(["frobnicate"])
    assert e.value.code == 2 and "invalid choice: 'frobnicate'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_plain_install_carries_the_demo_recipe(tmp_path):
    """`pip install .` (not editable) must find configs/crw_demo.yaml inside the installed package."""
    pytest.importorskip("hatchling")
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(wheels), ROOT], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              *map(str, wheels.glob("vidssl-*.whl"))], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    probe = ("import vidssl.demo as d, sys; p = d.recipe('crw_demo'); print(p); "
             "assert p.startswith(sys.argv[1]), p")
    proc = subprocess.run([sys.executable, "-c", probe, str(target)], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(target)})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert open(proc.stdout.strip()).read() == open(os.path.join(ROOT, "configs", "crw_demo.yaml")).read()


def test_train_takes_the_recipe_with_or_without_config(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr("vidssl.engine.train", lambda cfg: seen.append(cfg))
    recipe = os.path.join(os.path.dirname(__file__), "..", "configs", "byol_demo.yaml")
    vidssl(["train", "--config", recipe, "trainer.max_steps=7", f"out={tmp_path}"])
    vidssl(["train", recipe, "trainer.max_steps=7", f"out={tmp_path}"])
    assert [c.method["name"] for c in seen] == ["byol", "byol"] and seen[0] == seen[1]
    assert seen[1].trainer.max_steps == 7
