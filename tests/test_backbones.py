import math

import pytest
import torch
import torchvision

from vidssl.models import BACKBONES, build_backbone, load_backbone_weights
from vidssl.models.dense import dense_frame_maps, global_clip_features

VIT = "timm:vit_tiny_patch16_224"


@pytest.fixture(autouse=True)
def _no_grad():
    torch.manual_seed(0)
    with torch.no_grad():
        yield


@pytest.mark.parametrize("name,kwargs,channels", [
    ("crw_resnet18", {}, 512), ("crw_resnet18", {"remove_layers": ("layer4",)}, 256), ("crw_resnet50", {}, 2048)])
def test_crw_resnet_output_stride_8(name, kwargs, channels):
    net = build_backbone(name, **kwargs).eval()
    y = net(torch.zeros(1, 3, 64, 96))
    assert y.shape == (1, channels, 8, 12)
    assert net.out_channels == channels and net.stride == 8


def test_crw_resnet_is_reflect_padded_and_loads_torchvision_weights():
    net = build_backbone("crw_resnet18")
    assert net.conv1.padding_mode == "reflect"
    assert all(m.stride == (1, 1) for m in net.layer4.modules() if isinstance(m, torch.nn.Conv2d))
    tv = torchvision.models.resnet18(weights=None).state_dict()
    assert load_backbone_weights(net, {"module." + k: v for k, v in tv.items()}) == []
    assert torch.equal(net.layer3[0].conv1.weight, tv["layer3.0.conv1.weight"])
    assert net.eval_kwargs() == {"remove_layers": ["layer4"]}


def test_plain_resnet_is_torchvision_and_evaluates_layer3_at_stride_8():
    tv = torchvision.models.resnet18(weights=None).eval()
    net = build_backbone("resnet18").eval()
    assert net.conv1.padding_mode == "zeros" and net.stride == 32 and net.out_channels == 512
    assert load_backbone_weights(net, tv.state_dict()) == []
    x = torch.randn(2, 3, 64, 64)
    tv.fc = torch.nn.Identity()
    assert torch.allclose(net.forward_global(x), tv(x), atol=1e-5)  # = torchvision's pooled features
    ev = build_backbone("resnet18", **net.eval_kwargs()).eval()
    assert not hasattr(ev, "layer4") and load_backbone_weights(ev, tv.state_dict()) == []
    assert ev(torch.zeros(1, 3, 64, 96)).shape == (1, 256, 8, 12) and (ev.stride, ev.out_channels) == (8, 256)
    short = build_backbone("resnet50", out_layer="layer2")
    assert short(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 8, 8) and short.eval_kwargs()["out_layer"] == "layer2"


@pytest.mark.parametrize("name,kwargs,shape", [
    ("resnet18", {}, (2, 3, 64, 64)),
    ("resnet18", {"out_layer": "layer3", "stride8": True}, (2, 3, 32, 32)),
    ("crw_resnet18", {"remove_layers": ["layer3", "layer4"]}, (2, 3, 32, 32)),
    (VIT, {}, (2, 3, 32, 48)),
    ("timm:resnet18", {}, (2, 3, 32, 32)),
    ("r3d_18", {"out_layer": "layer3"}, (2, 3, 8, 32, 32)),
    ("r3d_18", {}, (1, 3, 8, 32, 32)),
    ("mc3_18", {"out_layer": "layer3"}, (1, 3, 4, 32, 32)),
    ("r2plus1d_18", {"out_layer": "layer3"}, (1, 3, 8, 32, 32)),
    ("s3d", {"out_layer": "layer3"}, (1, 3, 8, 32, 32)),
    ("s3d", {}, (1, 3, 8, 32, 32)),
])
def test_protocol_attributes_match_a_measured_forward(name, kwargs, shape):
    net = build_backbone(name, **kwargs).eval()
    y = net(torch.randn(shape))
    video = len(shape) == 5
    assert net.is_video == video and y.ndim == len(shape) and y.shape[:2] == (shape[0], net.out_channels)
    assert (shape[-2] // y.shape[-2], shape[-1] // y.shape[-1]) == (net.stride, net.stride)
    assert net.temporal_stride == (shape[2] // y.shape[2] if video else 1)
    assert net.forward_global(torch.randn(shape)).shape == (shape[0], net.out_channels)
    assert net.spec == {"name": name, "kwargs": kwargs}
    ev = build_backbone(name, **{**kwargs, **net.eval_kwargs()})  # what label propagation reads
    if video:
        assert net.eval_kwargs() == {"out_layer": "layer3"} and ev.stride == 8
    elif not name.startswith("timm:"):
        assert ev.stride == 8


def test_video_kwargs_pass_through_and_weights_are_refused():
    net = build_backbone("r3d_18", out_layer="layer3", zero_init_residual=True)
    assert not hasattr(net, "layer4") and "stem.0.weight" in net.state_dict()  # torchvision's names
    with pytest.raises(ValueError, match="r3d_18 takes no keyword 'not_a_torchvision_kwarg'"):  # checked first
        build_backbone("r3d_18", not_a_torchvision_kwarg=1)
    for bad in ({"weights": "DEFAULT"}, {"progress": False}):
        with pytest.raises(ValueError, match="nothing downloads"):
            build_backbone("r3d_18", **bad)
    with pytest.raises(ValueError, match="out_layer"):
        build_backbone("r3d_18", out_layer="layer5")


def test_vit_global_is_cls_token_and_dense_is_patch_tokens():
    net = build_backbone(VIT).eval()
    x = torch.randn(1, 3, 64, 96)
    tokens = net.model.forward_features(x)
    assert torch.equal(net.forward_global(x), tokens[:, 0])
    y = net(x)
    assert y.shape == (1, 192, 4, 6) and net.stride == 16
    assert torch.equal(y[0, :, 1, 2], tokens[0, 1 + 1 * 6 + 2])
    assert net.eval_kwargs() == {}
    assert net(torch.zeros(1, 3, 40, 50)).shape == (1, 192, 3, 4)  # padded to whole patches


def test_timm_weights_round_trip_and_raw_timm_state_dicts_load():
    import timm

    net = build_backbone(VIT)
    assert load_backbone_weights(build_backbone(VIT), net.state_dict()) == []
    raw = timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict()
    fresh = build_backbone(VIT)
    assert load_backbone_weights(fresh, raw) == []
    assert torch.equal(fresh.model.blocks[0].attn.qkv.weight, raw["blocks.0.attn.qkv.weight"])


def test_dense_frame_maps_2d_equals_direct_forward():
    net = build_backbone("crw_resnet18", remove_layers=["layer4"]).eval()
    frames = torch.randn(5, 3, 32, 32)
    assert torch.allclose(dense_frame_maps(net, frames, batch=2), net(frames), atol=1e-4)
    g = global_clip_features(net, frames, clip_len=2)
    assert g.shape == (3, 256) and torch.allclose(g[2], net.forward_global(frames[4:5])[0], atol=1e-5)
    assert torch.allclose(g[0], net.forward_global(frames[:2]).mean(0), atol=1e-5)


def test_dense_frame_maps_video_centred_clips():
    net = build_backbone("r3d_18", out_layer="layer3").eval()
    T, L = 11, 8
    frames = torch.randn(T, 3, 32, 40)
    maps = dense_frame_maps(net, frames, batch=3, clip_len=L)
    assert maps.shape == (T, 256, math.ceil(32 / 8), math.ceil(40 / 8))
    for t in (0, 5, 10):  # frame t's map = output 1 (T' = 2, centred on position 4) of the clip t-4..t+3, clamped
        clip = frames[[min(max(t + o, 0), T - 1) for o in range(-4, 4)]]
        y = net(clip.transpose(0, 1)[None])[0]
        assert y.shape[1] == math.ceil(L / net.temporal_stride)
        assert torch.allclose(maps[t], y[:, 1], atol=1e-4)
    last = torch.cat([frames[8:], frames[-1:].expand(5, -1, -1, -1)])  # clip features: edge-padded windows
    g = global_clip_features(net, frames, clip_len=L)
    assert g.shape == (2, 256) and torch.allclose(g[1], net(last.transpose(0, 1)[None])[0].mean((1, 2, 3)), atol=1e-4)


def _temporally_local(net: torch.nn.Module) -> torch.nn.Module:
    """Zero every temporal tap of every 3D conv but the centre one: each output frame then sees one input frame
    (output j of a layer at temporal stride s sees input frame s * j)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv3d) and m.kernel_size[0] > 1:
                centre = m.kernel_size[0] // 2
                keep = m.weight[:, :, centre].clone()
                m.weight.zero_()
                m.weight[:, :, centre] = keep
    return net


@pytest.mark.parametrize("clip_len", [8, 5])
def test_video_maps_change_where_the_video_changes(clip_len):
    """A 3D encoder's map of frame t must describe frame t. A square jumps at frame k; with a temporally local
    r3d_18 (each output sees one frame) every frame's map must equal its own frame's map (the network on a
    static clip of it), so consecutive maps differ at k and nowhere else. The former non-overlapping-window
    scheme gave frames 8..11 the map of frame 8 (the jump showed at 8, not 10) and changed maps at every window
    boundary (4, 12) where nothing moved."""
    torch.manual_seed(0)
    net = _temporally_local(build_backbone("r3d_18", out_layer="layer3")).eval()
    T, k = 16, 10
    frames = torch.zeros(T, 3, 48, 48)
    for t in range(T):
        x = 4 if t < k else 28
        frames[t, :, 16:32, x:x + 16] = 2.0
    maps = dense_frame_maps(net, frames, batch=4, clip_len=clip_len)
    diffs = torch.stack([(maps[t] - maps[t - 1]).norm() for t in range(1, T)])
    assert int(diffs.argmax()) + 1 == k
    assert torch.all(diffs[torch.arange(T - 1) != k - 1] < 1e-4 * diffs.max())
    static = net(frames[k].unsqueeze(1).expand(-1, 4, -1, -1)[None])[0, :, 0]  # frame k alone, as a still clip
    assert torch.allclose(maps[k], static, atol=1e-4)


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone 'resnet7'.*crw_resnet18"):
        build_backbone("resnet7")
    assert {"resnet18", "crw_resnet18", "r3d_18", "s3d"} <= set(BACKBONES)


@torch.no_grad()
def test_vit_token_map_is_aligned_with_the_image():
    """Changing the pixels of patch (r, c) changes token (r, c) of the dense map most, also in the last, partly
    padded row and column (40x90 px: 3x6 tokens of 16 px): the map is row-major, not transposed or shifted."""
    torch.manual_seed(0)
    net = build_backbone(VIT).eval()
    for H, W, r, c in [(48, 96, 1, 2), (40, 90, 2, 5), (64, 64, 3, 0)]:
        x = torch.randn(1, 3, H, W)
        moved = x.clone()
        moved[:, :, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] += 3
        d = (net(moved) - net(x)).norm(dim=1)[0]
        assert d.shape == (-(-H // 16), -(-W // 16)) and divmod(int(d.argmax()), d.shape[1]) == (r, c)
