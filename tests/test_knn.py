import json
import math

import cv2
import numpy as np
import pytest
import torch

from vidssl.eval.knn import KNNMonitor, knn_predict


def test_knn_votes_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.7, 0.7]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    q = torch.tensor([[1.0, 0.2]])
    k, t = 3, 0.1
    sims = torch.nn.functional.normalize(bank, dim=1) @ torch.nn.functional.normalize(q, dim=1)[0]
    top = sims.argsort(descending=True)[:k].tolist()
    votes = [sum(math.exp(sims[i] / t) for i in top if labels[i] == c) for c in (0, 1)]
    assert knn_predict(q, bank, labels, 2, k=k, temperature=t).item() == int(np.argmax(votes))
    # one exact neighbour of class 1 outvotes two of class 0 at similarity 0.8 only through the weighting:
    # exp(1 / 0.1) > 2 exp(0.8 / 0.1), while a plain majority (a high temperature) picks class 0
    bank2 = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.8, -0.6]])
    q2, labels2 = torch.tensor([[1.0, 0.0]]), torch.tensor([1, 0, 0])
    assert knn_predict(q2, bank2, labels2, 2, k=3, temperature=0.1).item() == 1
    assert knn_predict(q2, bank2, labels2, 2, k=3, temperature=100.0).item() == 0


def colour_folder(root, per_class=4):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                img = np.clip(np.array(colour) + rng.normal(0, 10, (40, 50, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(d / f"{i}.jpg"), img[..., ::-1])


def test_monitor_separates_colours_with_a_random_encoder(tmp_path):
    from vidssl.models import build_backbone

    colour_folder(tmp_path)
    monitor = KNNMonitor(str(tmp_path), size=32, k=3)
    torch.manual_seed(0)
    encoder = build_backbone("resnet18")
    encoder.train()
    assert monitor.evaluate(encoder, torch.device("cpu")) == 1.0
    assert encoder.training  # restored
    (tmp_path / "val" / "class1").rename(tmp_path / "val" / "other")
    with pytest.raises(ValueError, match="same class folders"):
        KNNMonitor(str(tmp_path))


def test_trainer_logs_knn(tmp_path, sample_videos):
    from vidssl.config import load_config
    from vidssl.engine import train

    colour_folder(tmp_path / "knn")
    train(load_config(None, [f"data.root={sample_videos[2]}", f"out={tmp_path / 'run'}", "trainer.max_steps=2",
                             "method.backbone_kwargs={remove_layers: [layer3, layer4]}", "method.patch_size=16",
                             "method.patch_stride=16", "data.img_size=32", "data.clip_len=3", "data.num_workers=0",
                             "trainer.batch_size=2", "trainer.log_every=1", "trainer.tensorboard=false",
                             f"trainer.knn_root={tmp_path / 'knn'}", "trainer.knn_every=2", "trainer.knn_size=32",
                             "trainer.knn_k=3"]))
    logged = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert "knn_top1" not in logged[0] and 0.0 <= logged[1]["knn_top1"] <= 1.0
