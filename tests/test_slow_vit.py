"""The Slow-only R50 backbone (vidssl/models/slow.py) and DINO's ViT-S/16, ViT-S/8 through TimmBackbone."""
import pytest
import torch

from vidssl.models import build_backbone, load_backbone_weights
from vidssl.models.backbones import eval_kwargs_of


@pytest.fixture(autouse=True)
def _no_grad():
    torch.manual_seed(0)
    with torch.no_grad():
        yield


@pytest.mark.parametrize("kwargs,channels,stride", [
    ({}, 2048, 32), ({"out_layer": "layer1"}, 256, 4), ({"out_layer": "layer2"}, 512, 8),
    ({"out_layer": "layer3", "stride8": True}, 1024, 8)])
def test_slow_r50_strides_and_channels_match_a_measured_forward(kwargs, channels, stride):
    net = build_backbone("slow_r50", **kwargs).eval()
    x = torch.randn(1, 3, 3, 64, 96)
    y = net(x)
    assert y.shape[:3] == (1, channels, 3)  # no temporal downsampling
    assert (64 // y.shape[-2], 96 // y.shape[-1]) == (net.stride, net.stride) == (stride, stride)
    assert net.out_channels == channels and net.is_video and net.temporal_stride == 1
    assert net.forward_global(x).shape == (1, channels)
    assert net.spec == {"name": "slow_r50", "kwargs": kwargs}


def test_slow_r50_architecture_is_slowfast_slow_8x8_r50():
    net = build_backbone("slow_r50")
    stem = net.s1.pathway0_stem
    assert (stem.conv.kernel_size, stem.conv.stride) == ((1, 7, 7), (1, 2, 2))
    assert (stem.pool_layer.kernel_size, stem.pool_layer.stride) == ((1, 3, 3), (1, 2, 2))
    blocks = {f"s{i}": len(getattr(net, f"s{i}").names) for i in range(2, 6)}
    assert blocks == {"s2": 3, "s3": 4, "s4": 6, "s5": 3}
    for stage, tk in (("s2", 1), ("s3", 1), ("s4", 3), ("s5", 3)):  # conv_a temporal kernel of every block
        assert all(getattr(getattr(net, stage), b).branch2.a.kernel_size == (tk, 1, 1)
                   for b in getattr(net, stage).names)
    assert all(m.stride[0] == 1 for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    assert "s4.pathway0_res0.branch1_bn.running_mean" in net.state_dict()  # SlowFast's key names
    assert net.eval_kwargs() == {"out_layer": "layer3", "stride8": True}
    assert eval_kwargs_of("slow_r50", out_layer="layer2") == {"out_layer": "layer2", "stride8": True}
    with pytest.raises(ValueError, match="out_layer"):
        build_backbone("slow_r50", out_layer="layer5")


def test_slow_r50_state_dict_round_trip_and_slowfast_checkpoint_keys_load():
    net = build_backbone("slow_r50").eval()
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = net.state_dict()
    other = build_backbone("slow_r50").eval()
    other.load_state_dict(state)
    x = torch.randn(1, 3, 2, 32, 32)
    assert torch.equal(net(x), other(x))
    # a SlowFast rho-clip SSL checkpoint: "backbone." = the query encoder, "backbone_hist." the key encoder
    ckpt = {**{"backbone." + k: v for k, v in state.items()},
            **{"backbone_hist." + k: torch.zeros_like(v) for k, v in state.items()},
            "backbone.head.projection.projection.0.weight": torch.zeros(2048, 2048)}
    ev = build_backbone("slow_r50", **net.eval_kwargs())
    assert load_backbone_weights(ev, ckpt) == []
    assert torch.equal(ev.s4.pathway0_res5.branch2.a.weight, state["s4.pathway0_res5.branch2.a.weight"])


@pytest.mark.parametrize("name,patch", [("timm:vit_small_patch16_224", 16), ("timm:vit_small_patch8_224", 8)])
def test_vit_small_dense_map_is_the_patch_tokens_and_global_the_cls_token(name, patch):
    net = build_backbone(name).eval()
    assert (net.stride, net.out_channels, net.is_video) == (patch, 384, False)
    x = torch.randn(2, 3, 32, 48)
    dense, tokens = net(x), net.model.forward_features(x)  # (N, 1 + hw, C), after the final LayerNorm
    h, w = 32 // patch, 48 // patch
    assert dense.shape == (2, 384, h, w)
    assert torch.allclose(dense[:, :, 1, 2], tokens[:, 1 + 1 * w + 2])  # row-major patches, CLS dropped
    assert torch.allclose(net.forward_global(x), tokens[:, 0])
    assert net(torch.randn(1, 3, 30, 50)).shape[-2:] == (-(-30 // patch), -(-50 // patch))  # padded to patches
    assert build_backbone(name, **net.eval_kwargs()).stride == patch  # propagation reads the same map


def test_vit_dense_position_is_its_patch():
    """With the blocks removed and no position embedding, dense[:, :, i, j] depends on patch (i, j) only."""
    net = build_backbone("timm:vit_small_patch16_224").eval()
    net.model.blocks = torch.nn.Sequential()
    net.model.pos_embed.zero_()
    x = torch.randn(1, 3, 32, 48)
    x2 = x.clone()
    x2[:, :, 16:32, 32:48] += 1.0  # patch (1, 2)
    changed = (net(x2) - net(x)).abs().amax(dim=1)[0] > 1e-5
    assert changed.nonzero().tolist() == [[1, 2]]
