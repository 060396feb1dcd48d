"""An edited encoder.json (or --backbone) never makes vidssl reach the network or build something else: every
refusal names the file and the key, before anything is built or written (issue 22, "Security")."""
import json
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from eval_davis.__main__ import main as eval_davis
from vidssl.eval.runner import main as vidssl_eval
from vidssl.features import main as extract
from vidssl.models.backbones import build_backbone
from vidssl.models.export import export_encoder


@pytest.fixture
def no_network(monkeypatch):
    """Every download path of torch.hub / timm / huggingface_hub and every socket connect fails the test."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"network access attempted: {args[:2]}")
    import timm.models._builder as builder
    import timm.models._factory as factory
    import timm.models._hub as hub

    for module, names in ((torch.hub, ("load_state_dict_from_url", "download_url_to_file")),
                          (hub, ("download_cached_file", "download_from_hf", "hf_hub_download",
                                 "load_model_config_from_hf", "load_state_dict_from_hf")),
                          (factory, ("load_model_config_from_hf", "load_checkpoint")),
                          (builder, ("download_cached_file", "load_state_dict_from_hf", "load_state_dict_from_url",
                                     "load_pretrained"))):
        for name in names:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield calls
    assert calls == []


@pytest.fixture
def exported(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    export_encoder(build_backbone("resnet18", out_layer="layer1"), str(folder), {"method": "test", "step": 1})
    return folder


def edit(folder, text_or_meta) -> str:
    path = folder / "encoder.json"
    if isinstance(text_or_meta, str):
        path.write_text(text_or_meta)
    else:
        meta = json.loads(path.read_text())
        meta.update(text_or_meta)
        path.write_text(json.dumps(meta))
    return str(path)


@pytest.mark.parametrize("change,message", [
    ({"backbone": "timm:hf-hub:someone/model"}, "backbone 'timm:hf-hub:someone/model' is refused: hub names"),
    ({"backbone": "timm:hf_hub:someone/model"}, "backbone 'timm:hf_hub:someone/model' is refused"),
    ({"backbone": "timm:vit_tiny_patch16_224", "kwargs": {"pretrained": True}}, "kwargs.pretrained is refused"),
    ({"kwargs": {"out_layer": "layer1"}, "eval_kwargs": {"checkpoint_path": "/tmp/w.pth"}},
     "eval_kwargs.checkpoint_path is refused"),
    ({"kwargs": {"out_layer": "layer1", "padding_mode": "https://evil.example/x"}},
     "kwargs.padding_mode: 'https://evil.example/x' is refused"),
    ({"backbone": "projected", "kwargs": {"base": "timm:hf-hub:a/b", "base_kwargs": {}}},
     "kwargs.base: backbone 'timm:hf-hub:a/b' is refused"),
    ({"backbone": "projected", "kwargs": {"base": "timm:vit_tiny_patch16_224", "base_kwargs": {"pretrained": True}}},
     "kwargs.base_kwargs.pretrained is refused"),
    ({"backbone": "timm:vit_tiny_patch16_224", "kwargs": {"pretrained_cfg_overlay": {"file": "x"}}},
     "kwargs.pretrained_cfg_overlay is refused"),
    ({"backbone": "resnet18", "kwargs": {"out_layer": "layer1", "weights": "DEFAULT"}}, "kwargs.weights is refused"),
    ({"backbone": "projected", "kwargs": {"base": "timm:vit_tiny_patch16_224", "base_kwargs": {}},
      "eval_kwargs": {"base_kwargs": {"checkpoint_path": "/tmp/w.pth"}}},
     "eval_kwargs.base_kwargs.checkpoint_path is refused"),
])
def test_edited_encoder_json_is_refused_before_anything_is_built(tmp_path, exported, no_network, tiny_davis,
                                                                 change, message):
    path = edit(exported, change)
    out = tmp_path / "ev"
    with pytest.raises(ValueError) as e:
        eval_davis(["--davis-root", tiny_davis[0], "--out", str(out), "--checkpoint", str(exported)])
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
    assert not out.exists()


@pytest.mark.parametrize("text,message", [
    ('{"format": 1, "kwargs": {}, "eval_kwargs": null}', "key 'backbone' is missing"),
    ('{"format": 1, "backbone": "resnet18", "kwargs": {"out_layer": "layer1"},}', "not valid JSON (line 1, column"),
    ('{"backbone": "resnet18", "kwargs": 5}', "kwargs (of 'resnet18') must be an object of keyword arguments, not int"),
    ('{"backbone": "crw_resnet18", "kwargs": {"remove_layers": "layer4"}}',
     "kwargs.remove_layers must be a list of strings, not str 'layer4'"),
    ('{"backbone": "resnet18", "kwargs": {"stride8": "yes"}}', "kwargs.stride8 must be true or false, not str"),
    ('{"backbone": "resnet18", "kwargs": {"depth": 3}}', "kwargs.depth: resnet18 takes no keyword 'depth'"),
    ('{"backbone": 18, "kwargs": {}}', "the backbone name must be a string, not int"),
    ('{"backbone": "resnet18", "kwargs": {}, "source": "me"}', "key 'source' must be an object"),
    ('["resnet18"]', "expected a JSON object"),
])
def test_broken_encoder_json_names_the_file_and_key(tmp_path, exported, no_network, text, message):
    path = edit(exported, text)
    with pytest.raises(ValueError) as e:
        vidssl_eval(["davis", "--out", str(tmp_path / "ev"), "--checkpoint", path])
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def frames_folder(tmp_path) -> str:
    clip = tmp_path / "in" / "clip"
    clip.mkdir(parents=True)
    for t in range(2):
        Image.fromarray(np.full((16, 16, 3), 40 * t, np.uint8)).save(clip / f"{t:05d}.jpg")
    return str(tmp_path / "in")


def test_extract_refuses_the_same_edits(tmp_path, exported, no_network):
    path = edit(exported, {"backbone": "timm:vit_tiny_patch16_224", "kwargs": {"pretrained": True}})
    out = tmp_path / "feats"
    with pytest.raises(ValueError, match=f"^{path}: kwargs.pretrained is refused"):
        extract(["--input", frames_folder(tmp_path), "--out", str(out), "--checkpoint", str(exported)])
    assert not out.exists()


@pytest.mark.parametrize("name,message", [
    ("timm:hf-hub:someone/model", "--backbone: backbone 'timm:hf-hub:someone/model' is refused"),
    ("timm:local-dir:/tmp/model", "--backbone: backbone 'timm:local-dir:/tmp/model' is refused"),
    ("timm:no_such_model_xyz", "--backbone: backbone 'timm:no_such_model_xyz': timm has no model"),
    ("resnet_nope", "--backbone: unknown backbone 'resnet_nope'"),
])
def test_backbone_flag_is_checked_the_same_way(tmp_path, no_network, name, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        vidssl_eval(["davis", "--out", str(tmp_path / "ev"), "--backbone", name])
    with pytest.raises(ValueError, match=f"^{message}"):
        extract(["--input", frames_folder(tmp_path), "--out", str(tmp_path / "f"), "--backbone", name])
    assert not (tmp_path / "ev").exists() and not (tmp_path / "f").exists()


def test_training_checkpoint_encoder_entry_is_checked(tmp_path, no_network):
    ckpt = {"model": {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}, "config": {"method": {"name": "x"}},
            "encoder": {"format": 1, "backbone": "timm:hf-hub:a/b", "kwargs": {}, "eval_kwargs": None, "source": {}},
            "encoder_prefix": "backbone."}
    path = tmp_path / "checkpoint.pt"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"checkpoint.pt \['encoder'\]: backbone 'timm:hf-hub:a/b' is refused"):
        vidssl_eval(["davis", "--out", str(tmp_path / "ev"), "--checkpoint", str(path)])


def test_an_unedited_export_still_evaluates(tmp_path, exported, no_network, tiny_davis):
    summary = eval_davis(["--davis-root", tiny_davis[0], "--out", str(tmp_path / "ev"), "--checkpoint",
                          str(exported), "--radius", "4", "--no-overlays"])
    assert "resnet18" in summary["encoder"] and os.path.isfile(tmp_path / "ev" / "summary.json")
