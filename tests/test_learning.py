"""benchmarks/learning.py: step 0 is the method's own initialisation (also where the encoder cannot be built
from the command line), the BatchNorm-recalibrated baseline changes statistics only, and the table/plot."""
import importlib.util
import os

import numpy as np
import pytest
import torch

from vidssl.config import load_config
from vidssl.models.backbones import build_backbone
from vidssl.models.export import read_encoder

ROOT = os.path.join(os.path.dirname(__file__), "..")
spec = importlib.util.spec_from_file_location("learning", os.path.join(ROOT, "benchmarks", "learning.py"))
learning = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learning)


def test_step0_is_the_trainers_initialisation_even_for_timecycle(tmp_path):
    from vidssl.engine.trainer import Trainer
    from vidssl.eval.encoder import load_encoder

    with pytest.raises(ValueError, match="cannot be built from its name alone"):
        load_encoder(backbone="projected", init="random")  # TimeCycle's encoder: needs its base network
    cfg = load_config(os.path.join(ROOT, "configs", "timecycle_demo.yaml"), [f"out={tmp_path / 'run'}", "seed=3"])
    learning.export_initialisation(cfg, str(tmp_path / "step0"))
    enc, meta = read_encoder(str(tmp_path / "step0"), dense=False)
    assert meta["backbone"] == "projected" and meta["source"]["step"] == 0
    trainer_enc = Trainer(cfg).method.eval_encoder()
    ref = trainer_enc.state_dict()
    assert ref.keys() == enc.state_dict().keys()
    assert all(torch.equal(v.cpu(), ref[k].cpu()) for k, v in enc.state_dict().items())
    other = load_config(os.path.join(ROOT, "configs", "timecycle_demo.yaml"), [f"out={tmp_path / 'x'}", "seed=4"])
    learning.export_initialisation(other, str(tmp_path / "seed4"))
    assert not torch.equal(read_encoder(str(tmp_path / "seed4"), dense=False)[0].proj.weight, enc.proj.weight)


def test_batchnorm_recalibration_changes_statistics_only():
    torch.manual_seed(0)
    net = build_backbone("resnet18", out_layer="layer1").eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(6)]
    assert learning.recalibrate_batchnorm(net, frames, "native", batch=4) > 0
    after = net.state_dict()
    stats = {k for k in after if "running_" in k or "num_batches" in k}
    assert all(torch.equal(after[k], before[k]) for k in after if k not in stats)  # weights untouched
    # bn1's statistics are the exact mean / unbiased variance of conv1's output over all frames and positions
    from vidssl.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize
    x = normalize(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2), IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        y = net.conv1(x).transpose(0, 1).flatten(1)
    # batches of 4 and 2 frames: a cumulative average of the per-batch means (equal weight per batch)
    a, b = net.conv1(x[:4]).transpose(0, 1).flatten(1), net.conv1(x[4:]).transpose(0, 1).flatten(1)
    assert torch.allclose(net.bn1.running_mean, (a.mean(1) + b.mean(1)).detach() / 2, atol=1e-4)
    assert not torch.allclose(net.bn1.running_mean, torch.zeros(64)) and y.shape[0] == 64
    assert not net.bn1.training and net.bn1.momentum == 0.1
    vit = build_backbone("timm:vit_tiny_patch16_224")
    assert learning.recalibrate_batchnorm(vit, frames, "native") == 0  # nothing to recalibrate


def test_knn_top1_separates_distinct_videos():
    torch.manual_seed(0)
    net = build_backbone("resnet18", out_layer="layer2").eval()
    rng = np.random.default_rng(0)
    videos = []
    for c in range(3):  # three "videos": a fixed random texture each, with small per-frame noise
        base = rng.integers(0, 256, (64, 80, 3))
        videos.append((f"v{c}", [np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)
                                 for _ in range(10)]))
    assert learning.knn_top1(net, videos, size=48, k=5) == 1.0


def test_evaluation_cache_is_keyed_by_weights_architecture_and_protocol(tmp_path):
    from vidssl.models.export import export_encoder

    torch.manual_seed(0)
    net = build_backbone("resnet18", out_layer="layer3", stride8=True)
    for folder in "abc":
        os.makedirs(tmp_path / folder)
    a = export_encoder(net, str(tmp_path / "a"), {"method": "byol", "step": 0})
    b = export_encoder(net, str(tmp_path / "b"), {"method": "simclr", "step": 0})  # same weights, other method
    with torch.no_grad():
        net.conv1.weight[0, 0, 0, 0] += 1e-3
    c = export_encoder(net, str(tmp_path / "c"), {"method": "byol", "step": 0})
    key = {f: learning.encoder_key(os.path.dirname(f), "short:240", 4, ["davis_jf"]) for f in (a, b, c)}
    assert key[a] == key[b] != key[c]
    assert key[a] != learning.encoder_key(os.path.dirname(a), "native", 4, ["davis_jf"])
    calls = []

    def evaluate():
        calls.append(1)
        return {"davis_jf": 0.5}
    cache = str(tmp_path / "cache")
    assert learning.cached_evaluation(cache, key[a], evaluate) == ({"davis_jf": 0.5}, False)
    assert learning.cached_evaluation(cache, key[b], evaluate) == ({"davis_jf": 0.5}, True)
    assert learning.cached_evaluation(cache, key[c], evaluate)[1] is False and len(calls) == 2


def test_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"recipe": "crw_cpu", "method": "crw", "seed": s, "step": k, "kind": kind, "train_wall_s": 0,
             "input_size": "short:240", "davis_jf": v, "jhmdb_pck01": "", "jhmdb_pck02": "", "knn_top1": ""}
            for s, k, kind, v in [("0", 0, "init", 0.4), ("0", 10, "trained", 0.45), ("1", 0, "init", 0.41),
                                  ("0", 0, "bn", 0.3)]]
    rows.append({"recipe": "pixels", "seed": "-", "step": 0, "kind": "pixels", "davis_jf": 0.35})
    csv_path = str(tmp_path / "l.csv")
    for r in rows:
        learning.append_row(csv_path, r)
    back = learning.read_rows(csv_path)
    assert len(back) == 5 and back[1]["davis_jf"] == "0.45"
    learning.write_markdown(back, str(tmp_path / "l.md"))
    text = open(tmp_path / "l.md").read()
    assert "| crw_cpu | 0 | 10 | trained | 0 | 0.45 |  |  |  | short:240 |" in text  # each row says its input size
    learning.plot(back, str(tmp_path / "l.png"))
    assert os.path.getsize(tmp_path / "l.png") > 1000


def test_every_method_has_a_cpu_learning_recipe_on_the_shared_training_list():
    from vidssl.data import discover_sources
    from vidssl.methods import METHODS

    shipped = [name for name, cls in METHODS.items() if cls.__module__.startswith("vidssl.methods.")]  # not tests'
    assert len(shipped) >= 23
    for name in shipped:
        path = os.path.join(ROOT, "configs", f"{name}_cpu.yaml")
        assert os.path.isfile(path), f"configs/{name}_cpu.yaml is missing"
        cfg = load_config(path, [])
        assert cfg.method["name"] == name and cfg.trainer.threads == 1 and cfg.data.num_workers == 1
        assert "train_videos.txt" in open(path).read()  # the header names the training list
    # BADJA's three sequences are left out of the training list, so its scores are on unseen videos
    if os.path.isdir(os.path.join(ROOT, "..", "shared", "data", "videos", "davis2016-train")):
        listed = discover_sources(os.path.join(ROOT, "benchmarks", "learning", "train_videos.txt"))
        names = {os.path.splitext(os.path.basename(p))[0] for p in listed}
        assert len(names) == 27 and not names & {"bear", "dog-agility", "horsejump-low"}
