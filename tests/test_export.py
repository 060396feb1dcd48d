"""Exported encoders: every way of naming one gives the same weights; nothing loaded can run code."""
import json
import os

import pytest
import torch

from vidssl.eval.encoder import load_encoder
from vidssl.io.checkpoint import load_checkpoint
from vidssl.models import build_backbone
from vidssl.models.export import export_encoder, read_encoder


class RunsCode:
    """Unpickling this creates a file: the proof that a loader executed code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def exported(tmp_path):
    torch.manual_seed(1)
    net = build_backbone("resnet18")
    export_encoder(net, str(tmp_path), {"method": "test", "step": 7})
    return net, tmp_path


def test_json_describes_backbone_and_evaluation_layer(exported):
    net, folder = exported
    meta = json.load(open(folder / "encoder.json"))
    assert meta["backbone"] == "resnet18" and meta["source"] == {"method": "test", "step": 7}
    assert meta["eval_kwargs"] == net.eval_kwargs() and meta["format"] == 1


def test_folder_json_and_safetensors_load_the_same_encoder(exported):
    net, folder = exported
    dense, _ = read_encoder(str(folder))
    assert dense.stride == 8  # evaluation reads the stride-8 layer3 of the exported ResNet
    ref = build_backbone("resnet18", **net.eval_kwargs())
    ref.load_state_dict({k: v for k, v in net.state_dict().items() if k in ref.state_dict()})
    for path in (folder, folder / "encoder.json", folder / "encoder.safetensors"):
        assert same_weights(read_encoder(str(path))[0], ref)
    whole, _ = read_encoder(str(folder), dense=False)
    assert same_weights(whole, net)


def test_checkpoint_written_before_the_export_loads_as_the_crw_encoder(tmp_path):
    torch.manual_seed(2)
    crw = build_backbone("crw_resnet18", remove_layers=["layer4"])
    old = {"step": 3, "world_size": 1, "model": {f"backbone.{k}": v for k, v in crw.state_dict().items()},
           "config": {"method": {"name": "crw", "backbone": "resnet18", "backbone_kwargs": {"remove_layers": ["layer4"]}}}}
    torch.save(old, tmp_path / "checkpoint.pt")
    enc, meta = read_encoder(str(tmp_path))
    assert meta["backbone"] == "crw_resnet18" and enc.conv1.padding_mode == "reflect"
    assert same_weights(enc, crw)


def test_crafted_pickles_are_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"x": RunsCode(str(marker))}, "config": {}}, evil)
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(str(evil))
    with pytest.raises(ValueError, match="refused"):
        load_encoder(checkpoint=str(evil))
    with pytest.raises(ValueError, match="refused"):
        load_encoder(backbone="resnet18", init=f"weights:{evil}")
    assert not marker.exists()


def test_non_finite_weights_and_partial_weights_are_errors(tmp_path, exported):
    net, folder = exported
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    from safetensors.torch import save_file

    save_file(state, str(folder / "encoder.safetensors"))
    with pytest.raises(ValueError, match="non-finite"):
        read_encoder(str(folder))
    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in net.state_dict().items() if k.startswith("layer1")}, partial)
    with pytest.raises(ValueError, match="--allow-partial"):
        load_encoder(backbone="resnet18", init=f"weights:{partial}")
    enc, _ = load_encoder(backbone="resnet18", init=f"weights:{partial}", allow_partial=True)
    assert torch.equal(enc.layer1[0].conv1.weight, net.layer1[0].conv1.weight)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither encoder.json nor checkpoint.pt"):
        read_encoder(str(tmp_path))
    (tmp_path / "w.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="encoder.json is not beside it"):
        read_encoder(str(tmp_path / "w.safetensors"))
    assert not os.path.exists(tmp_path / "encoder.json")
