"""kill -9 in the middle of training and of feature extraction: nothing half-written is ever taken for a
result, and running the same command again finishes the job."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRW_TINY = ["method.backbone_kwargs={remove_layers: [layer3, layer4]}", "method.patch_size=16",
            "method.patch_stride=16", "data.img_size=32", "data.clip_len=3", "data.num_workers=0",
            "trainer.batch_size=2", "trainer.log_every=1", "trainer.tensorboard=false"]


def kill_when(cmd, ready, timeout=120):
    """Start `cmd`, SIGKILL it as soon as ready() holds; returns whether it was killed before it ended."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None and not ready():
        time.sleep(0.01)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return killed


@pytest.mark.slow
def test_kill_9_during_training_then_resume(tmp_path, sample_videos):
    from vidssl.io.checkpoint import load_checkpoint

    out = tmp_path / "run"
    args = [f"data.root={sample_videos[2]}", f"out={out}", "trainer.max_steps=500", "trainer.ckpt_every=1", *CRW_TINY]
    ckpt, metrics = out / "checkpoint.pt", out / "metrics.jsonl"
    assert kill_when([sys.executable, os.path.join(ROOT, "train.py"), *args],
                     lambda: ckpt.exists() and metrics.exists() and metrics.stat().st_size > 300)  # a few steps in
    step = load_checkpoint(str(ckpt))["step"]  # whatever moment it died at, the checkpoint is whole
    assert step >= 1
    subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args, "trainer.resume=true",
                    f"trainer.stop_at={step + 2}"], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert load_checkpoint(str(ckpt))["step"] == step + 2
    assert not list(out.glob("*.tmp*"))
    steps = [json.loads(line)["step"] for line in open(out / "metrics.jsonl")]
    assert steps == list(range(1, step + 3))  # no line of the killed run past its checkpoint, none cut
    meta = json.load(open(out / "encoder.json"))
    assert meta["source"]["step"] == step + 2
    from safetensors.torch import load_file
    assert all(torch.isfinite(v).all() for v in load_file(str(out / "encoder.safetensors")).values())


@pytest.mark.slow
def test_kill_9_during_extraction_then_rerun(tmp_path, sample_videos):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        shutil.copy(sample_videos[2], src / f"v{i}.mp4")
    out = tmp_path / "feats"
    cmd = [sys.executable, "-m", "vidssl.cli", "extract", "--input", str(src), "--out", str(out), "--init", "pixels",
           "--short-side", "32", "--mode", "dense"]
    manifest = out / "manifest.jsonl"
    kill_when(cmd, lambda: manifest.exists() and manifest.stat().st_size > 0)
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    records = [json.loads(line) for line in open(manifest)]
    assert sorted({r["file"] for r in records}) == [f"v{i}.mp4.npy" for i in range(6)]
    assert not list(out.glob("*.tmp*"))
    arrays = [np.load(out / f"v{i}.mp4.npy") for i in range(6)]
    assert all(a.shape == arrays[0].shape for a in arrays) and all(np.isfinite(a).all() for a in arrays)


@pytest.mark.slow
def test_kill_9_while_writing_results_then_rerun(tmp_path, tiny_davis):
    root, names = tiny_davis
    out, clean = tmp_path / "ev", tmp_path / "clean"
    command = lambda o: [sys.executable, "-m", "eval_davis", "--davis-root", root, "--out", str(o), "--init", "pixels"]  # noqa: E731
    cmd = command(out)
    first = out / "results" / names[0]
    kill_when(cmd, lambda: first.is_dir() and len(os.listdir(first)) >= 2)  # mid-way through the PNGs/overlays
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    subprocess.run(command(clean), check=True, capture_output=True, env=env)
    rerun, fresh = (json.load(open(d / "summary.json")) for d in (out, clean))
    assert rerun["J&F-Mean"] == fresh["J&F-Mean"] and rerun["J-Mean"] == fresh["J-Mean"]
    assert (open(out / "results" / "per-sequence_results-val.csv").read()
            == open(clean / "results" / "per-sequence_results-val.csv").read())
