import pytest
import torch

from vidssl.models import build_backbone, load_backbone_weights


@pytest.mark.parametrize("name,kwargs,channels", [
    ("resnet18", {}, 512), ("resnet18", {"remove_layers": ("layer4",)}, 256), ("resnet50", {}, 2048)])
def test_resnet_output_stride_8(name, kwargs, channels):
    net = build_backbone(name, **kwargs).eval()
    with torch.no_grad():
        y = net(torch.zeros(1, 3, 64, 96))
    assert y.shape == (1, channels, 8, 12)
    assert net.out_channels == channels and net.stride == 8


def test_crw_resnet_is_reflect_padded_and_loads_torchvision_weights():
    import torchvision

    net = build_backbone("resnet18")
    assert net.conv1.padding_mode == "reflect"
    assert all(m.stride == (1, 1) for m in net.layer4.modules() if isinstance(m, torch.nn.Conv2d))
    tv = torchvision.models.resnet18(weights=None).state_dict()
    assert load_backbone_weights(net, {"module." + k: v for k, v in tv.items()}) == []
    assert torch.equal(net.layer3[0].conv1.weight, tv["layer3.0.conv1.weight"])


def test_timm_vit_gives_patch_token_map():
    pytest.importorskip("timm")
    net = build_backbone("timm:vit_tiny_patch16_224").eval()
    with torch.no_grad():
        y = net(torch.zeros(1, 3, 64, 96))
    assert y.shape == (1, 192, 4, 6) and net.stride == 16


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet7")
