"""--weights PATH with the key layouts of published checkpoints (vidssl/models/published.py).

Each file is built from the vidssl backbone's own tensors, renamed to the published names (read from each
reference repository), with the published wrappers and extra keys (heads, decoders, optimiser, `args`), filled
with random values; loading must set every backbone tensor to the file's value (none left at its seed-0 init)."""
import argparse
import re

import pytest
import torch
import torchvision

from vidssl.eval.encoder import load_encoder
from vidssl.models.backbones import build_backbone, eval_kwargs_of
from vidssl.models.published import guess_backbone

VIT = "timm:vit_tiny_patch16_224"


def randomised(state: dict, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) if v.is_floating_point()
            else torch.randint(1, 1000, v.shape, generator=g, dtype=v.dtype) for k, v in state.items()}


def torchvision_resnet18() -> dict:
    """A torchvision ResNet-18 file (ImageNet layout: fc included), random values."""
    return randomised(torchvision.models.resnet18(weights=None).state_dict(), 1)


def timm_vit_tiny() -> dict:
    """timm's vit_tiny_patch16_224 state dict (timm names, ImageNet head included), random values."""
    import timm

    with torch.device("meta"):
        shapes = timm.create_model("vit_tiny_patch16_224").state_dict()
    return randomised({k: torch.empty(v.shape, dtype=v.dtype) for k, v in shapes.items()}, 2)


def to_mmcv(tv: dict) -> dict:
    """torchvision ResNet names -> mmaction/mmcv ConvModule names (the inverse of VFS's
    tools/convert_weights/convert_to_pretrained.py)."""
    out = {}
    for k, v in tv.items():
        if k.startswith("fc."):
            continue
        k = re.sub(r"^conv1\.", "conv1.conv.", k)
        k = re.sub(r"^bn1\.", "conv1.bn.", k)
        k = re.sub(r"^(layer\d\.\d+)\.conv(\d)\.", r"\1.conv\2.conv.", k)
        k = re.sub(r"^(layer\d\.\d+)\.bn(\d)\.", r"\1.conv\2.bn.", k)
        k = re.sub(r"^(layer\d\.\d+)\.downsample\.0\.", r"\1.downsample.conv.", k)
        k = re.sub(r"^(layer\d\.\d+)\.downsample\.1\.", r"\1.downsample.bn.", k)
        out["backbone." + k] = v
    return out


def native(key: str) -> str:
    return key[len("model."):] if key.startswith("model.") else key


def assert_every_tensor_loaded(enc, name: str, expected: dict) -> None:
    """Every tensor of `enc` equals `expected` (torchvision/timm names) and differs from the seed-0 init."""
    torch.manual_seed(0)
    fresh = build_backbone(name, **eval_kwargs_of(name)).state_dict()
    own = enc.state_dict()
    assert own.keys() == fresh.keys()
    for k, v in own.items():
        assert torch.equal(v, expected[native(k)].to(v.dtype)), k
        assert not torch.equal(v, fresh[k]), f"{k} left at its initial value"


def save(obj, path, safetensors=False) -> str:
    if safetensors:
        from safetensors.torch import save_file

        save_file(obj, str(path))
    else:
        torch.save(obj, path)
    return str(path)


NAMESPACE = argparse.Namespace(lr=0.1, arch="resnet18", remove_layers=["layer4"], output_dir="/runs/x")


@pytest.mark.parametrize("padded_convs", [False, True])
def test_crw_released_model(tmp_path, padded_convs):
    tv = torchvision_resnet18()
    enc_keys = {}
    for k, v in tv.items():
        if k.startswith("fc."):
            continue  # code/resnet.py modify() removes fc and avgpool
        if padded_convs:  # the reflect pad inside nn.Sequential: code/test.py renames conv1.1 / conv2.1
            k = re.sub(r"(conv[12])\.weight$", r"\1.1.weight", k)
        enc_keys["encoder.model." + k] = v
    ckpt = {"model": {**enc_keys, "selfsim_fc.0.weight": torch.randn(128, 512), "selfsim_fc.0.bias": torch.randn(128)},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 3, "args": NAMESPACE}
    path = save(ckpt, tmp_path / "pretrained.pth")
    enc, desc = load_encoder(backbone="crw_resnet18", init=f"weights:{path}")
    assert "CRW" in desc and enc.conv1.padding_mode == "reflect" and not hasattr(enc, "layer4")
    assert_every_tensor_loaded(enc, "crw_resnet18", tv)


@pytest.mark.parametrize("repo", ["vfs", "spa_then_temp"])
def test_mmcv_resnet_checkpoints(tmp_path, repo):
    tv = torchvision_resnet18()
    state = to_mmcv(tv)
    assert "backbone.layer2.0.downsample.conv.weight" in state and "backbone.layer1.0.conv2.bn.running_var" in state
    if repo == "vfs":  # SimSiamBaseTracker: backbone + img_head
        state["img_head.projection_convs.0.conv.weight"] = torch.randn(512, 512, 1, 1)
    else:  # Spa-then-Temp's training Framework: a teacher backbone_t and BaseTracker's iteration buffer
        state.update({"backbone_t." + k[len("backbone."):]: torch.zeros_like(v) for k, v in state.items()})
        state["iteration"] = torch.tensor(5.0)
    ckpt = {"meta": {"epoch": 100, "mmcv_version": "1.3.18"}, "state_dict": state, "optimizer": {"state": {}}}
    path = save(ckpt, tmp_path / f"{repo}.pth")
    name = "resnet18" if repo == "vfs" else "stt_resnet18"
    enc, desc = load_encoder(backbone=name, init=f"weights:{path}")
    seen = "VFS" if repo == "vfs" else "Spa-then-Temp"
    assert desc.split(" with weights ")[1].startswith(f"{path} ({seen} checkpoint")
    assert "published for" not in desc and enc.stride == 8 and enc.out_layer == "layer3"
    assert_every_tensor_loaded(enc, name, tv)
    other = "stt_resnet18" if repo == "vfs" else "resnet18"  # same tensors, another test network: said so
    _, desc = load_encoder(backbone=other, init=f"weights:{path}")
    assert f"it was published for --backbone {name}" in desc


def test_spa_then_temp_network_has_no_stem_pool_and_layer3_at_stride_8():
    net = build_backbone("stt_resnet18", **eval_kwargs_of("stt_resnet18")).eval()
    assert isinstance(net.maxpool, torch.nn.Identity) and net.layer3[0].conv1.stride == (2, 2)
    assert net.stride == 8 and net(torch.randn(1, 3, 64, 96)).shape == (1, 256, 8, 12)
    full = build_backbone("stt_resnet18")  # as trained: strides (1, 2, 2, 2) without the pool: 16
    assert full.stride == 16 and full(torch.randn(1, 3, 64, 96)).shape == (1, 512, 4, 6)


def test_dino_training_checkpoint_vit_reads_the_teacher(tmp_path):
    teacher = timm_vit_tiny()
    student = randomised(teacher, 3)
    head = {"head.mlp.0.weight": torch.randn(16, 192), "head.last_layer.weight_g": torch.randn(16, 1)}
    ckpt = {"student": {**{"module.backbone." + k: v for k, v in student.items() if not k.startswith("head.")},
                        **{"module." + k: v for k, v in head.items()}},
            # a ViT teacher is not wrapped in DDP (main_dino.py: only when it has batch norms)
            "teacher": {**{"backbone." + k: v for k, v in teacher.items() if not k.startswith("head.")}, **head},
            "optimizer": {"state": {}}, "epoch": 100, "args": NAMESPACE, "dino_loss": {"center": torch.zeros(1, 16)}}
    path = save(ckpt, tmp_path / "checkpoint.pth")
    enc, desc = load_encoder(backbone=VIT, init=f"weights:{path}")
    assert "DINO training checkpoint" in desc
    assert_every_tensor_loaded(enc, VIT, teacher)


def test_dino_training_checkpoint_resnet_teacher_in_ddp(tmp_path):
    tv = torchvision_resnet18()  # ResNet-50's layout at ResNet-18 size (DINO: fc replaced by Identity)
    body = {k: v for k, v in tv.items() if not k.startswith("fc.")}
    ckpt = {"student": {"module.backbone." + k: v + 1 for k, v in body.items()},
            "teacher": {**{"module.backbone." + k: v for k, v in body.items()},
                        "module.head.mlp.0.weight": torch.randn(8, 512)}, "epoch": 1, "args": NAMESPACE}
    path = save(ckpt, tmp_path / "checkpoint.pth")
    enc, _ = load_encoder(backbone="resnet18", init=f"weights:{path}")
    assert_every_tensor_loaded(enc, "resnet18", tv)


@pytest.mark.parametrize("kind", ["dino_backbone_pth", "timm_safetensors"])
def test_plain_vit_files(tmp_path, kind):
    state = timm_vit_tiny()
    if kind == "dino_backbone_pth":  # dino_deitsmall16_pretrain.pth: backbone only, no head
        path = save({k: v for k, v in state.items() if not k.startswith("head.")}, tmp_path / "dino.pth")
    else:  # a timm ImageNet model.safetensors: classifier head included
        path = save(state, tmp_path / "model.safetensors", safetensors=True)
    enc, desc = load_encoder(backbone=VIT, init=f"weights:{path}")
    assert "timm-named ViT" in desc
    assert_every_tensor_loaded(enc, VIT, state)


def test_mae_and_cropmae_pretraining_checkpoint_drops_the_decoder(tmp_path):
    enc_state = {k: v for k, v in timm_vit_tiny().items() if not k.startswith("head.")}
    decoder = {"mask_token": torch.randn(1, 1, 64), "decoder_embed.weight": torch.randn(64, 192),
               "decoder_pos_embed": torch.randn(1, 197, 64), "decoder_blocks.0.norm1.weight": torch.randn(64),
               "decoder_norm.weight": torch.randn(64), "decoder_pred.weight": torch.randn(768, 64)}
    ckpt = {"model": {**enc_state, **decoder}, "optimizer": {"state": {}}, "epoch": 399,
            "scaler": {"scale": 65536.0}, "args": NAMESPACE}
    path = save(ckpt, tmp_path / "checkpoint-399.pth")
    enc, desc = load_encoder(backbone=VIT, init=f"weights:{path}")
    assert "MAE / CropMAE" in desc
    assert_every_tensor_loaded(enc, VIT, enc_state)


@pytest.mark.parametrize("old_file", [False, True])
def test_torchvision_imagenet_file(tmp_path, old_file):
    tv = torchvision_resnet18()
    if old_file:  # resnet18-5c106cde.pth predates num_batches_tracked: those counters stay at 0, nothing else
        tv = {k: v for k, v in tv.items() if not k.endswith("num_batches_tracked")}
    path = save(tv, tmp_path / "resnet18-f37072fd.pth")
    enc, desc = load_encoder(backbone="resnet18", init=f"weights:{path}")
    assert "torchvision-named ResNet" in desc
    if old_file:
        assert all(int(v) == 0 for k, v in enc.state_dict().items() if k.endswith("num_batches_tracked"))
        tv = {**tv, **{k: v for k, v in enc.state_dict().items() if k.endswith("num_batches_tracked")}}
        with pytest.raises(AssertionError, match="initial value"):
            assert_every_tensor_loaded(enc, "resnet18", tv)
    else:
        assert_every_tensor_loaded(enc, "resnet18", tv)


def test_wrong_family_and_unknown_layout_say_what_was_seen_and_expected(tmp_path):
    vit = save({"model": timm_vit_tiny()}, tmp_path / "vit.pth")
    with pytest.raises(ValueError) as e:
        load_encoder(backbone="resnet18", init=f"weights:{vit}")
    msg = str(e.value)
    assert "vit.pth" in msg and "timm-named ViT" in msg and "does not fit --backbone resnet18" in msg
    assert "published for --backbone timm:vit_tiny_patch16_224" in msg
    odd = save({"net": {"stem.w": torch.zeros(2)}, "epoch": 1}, tmp_path / "odd.pth")
    with pytest.raises(ValueError) as e:
        load_encoder(backbone="resnet18", init=f"weights:{odd}")
    msg = str(e.value)
    assert "odd.pth: unrecognised key layout" in msg and "'net'" in msg
    assert "crw: 'encoder.model.conv1.weight'" in msg and "vfs: 'backbone.conv1.conv.weight' and 'img_head.*'" in msg
    ours = save({"model": {"backbone.conv1.weight": torch.zeros(1)}, "config": {}}, tmp_path / "ours.pt")
    with pytest.raises(ValueError, match="training checkpoint: evaluate it with --checkpoint"):
        load_encoder(backbone="resnet18", init=f"weights:{ours}")


def test_other_architecture_is_named_with_the_backbone_it_fits(tmp_path):
    small8 = {"patch_embed.proj.weight": torch.zeros(384, 3, 8, 8), "blocks.0.norm1.weight": torch.zeros(384)}
    base8 = {"patch_embed.proj.weight": torch.zeros(768, 3, 8, 8), "blocks.0.norm1.weight": torch.zeros(768)}
    assert guess_backbone(small8) == "timm:vit_small_patch8_224"
    assert guess_backbone(base8) == "timm:vit_base_patch8_224"
    with torch.device("meta"):
        r50 = torchvision.models.resnet50().state_dict()
    assert guess_backbone(r50) == "resnet50"
    assert guess_backbone(torchvision_resnet18()) == "resnet18"
    no_layer4 = {k: v for k, v in r50.items() if not k.startswith("layer4")}
    assert guess_backbone(no_layer4) == "resnet50" and guess_backbone({"conv1.weight": torch.zeros(1)}) is None
    # a ViT-S/8 DINO backbone file given to the ViT-Ti/16 backbone: shapes differ, the fitting one is named
    path = save(small8, tmp_path / "dino_deitsmall8_pretrain.pth")
    with pytest.raises(ValueError, match=r"of another shape \(e.g. patch_embed.proj.weight \(384, 3, 8, 8\) vs "
                                         r"\(192, 3, 16, 16\).*published for --backbone timm:vit_small_patch8_224"):
        load_encoder(backbone=VIT, init=f"weights:{path}")


class RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_only_plain_data_and_namespaces_are_unpickled(tmp_path):
    marker = tmp_path / "ran"
    path = save({"model": {"encoder.model.conv1.weight": torch.zeros(64, 3, 7, 7)}, "args": RunsCode(str(marker))},
                tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="refused"):
        load_encoder(backbone="crw_resnet18", init=f"weights:{path}")
    assert not marker.exists()


def test_eval_command_with_published_weights(tmp_path, tiny_davis):
    from vidssl.eval.runner import main as vidssl_eval

    tv = torchvision_resnet18()
    ckpt = {"meta": {}, "state_dict": to_mmcv(tv)}
    path = save(ckpt, tmp_path / "res18_d8_temp.pth")
    summary = vidssl_eval(["davis", "--davis-root", tiny_davis[0], "--out", str(tmp_path / "ev"), "--backbone",
                           "stt_resnet18", "--weights", path, "--radius", "4", "--no-overlays"])
    assert "Spa-then-Temp checkpoint" in summary["encoder"] and path in summary["encoder"]
