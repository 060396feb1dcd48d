"""The Slow pathway of SlowFast as a backbone: "slow_r50" (Feichtenhofer et al., "SlowFast Networks for Video
Recognition", ICCV 2019; facebookresearch/SlowFast slowfast/models/video_model_builder.py `ResNet` with
MODEL.ARCH "slow", resnet_helper.py `ResBlock` / `BottleneckTransform`, stem_helper.py `ResNetBasicStem`,
configs/Kinetics/SLOW_8x8_R50.yaml). The backbone of the rho-clip study (Feichtenhofer et al. CVPR 2021).

A 3D ResNet-50 without temporal downsampling:
- stem: conv 1x7x7 stride (1, 2, 2), 64 channels, BN, ReLU, max-pool 1x3x3 stride (1, 2, 2) padding (0, 1, 1);
- res2..res5 (`layer1`..`layer4`): 3, 4, 6, 3 bottleneck blocks, outputs 256 / 512 / 1024 / 2048 channels
  (inner 64 / 128 / 256 / 512), spatial stride 2 on the 3x3 conv of the first block of res3..res5 and on its
  1x1x1 projection shortcut; the first conv of each bottleneck ("conv_a") has temporal kernel 1 in res2/res3
  and 3 in res4/res5 (padding 1, stride 1), the 3x3 conv is 1x3x3 and the last 1x1x1.
Output strides: 4, 8, 16, 32 after layer1..layer4; the temporal length is kept (temporal_stride 1).

Module names follow SlowFast's (`s1.pathway0_stem.conv`, `s2.pathway0_res0.branch2.a`, `...branch1_bn`, ...), so
the official checkpoints load with `load_backbone_weights` (a supervised Kinetics SLOW_8x8_R50 "model_state"
or the rho-clip SSL models, whose keys start with "backbone."; their "backbone_hist." key encoder is ignored).
Initialisation as SlowFast's `init_weights`: convs He-normal (fan_out, Caffe2's msra fill), BN weight 1, bias 0.

`out_layer` ("layer1".."layer4", default "layer4") is the last stage built. `stride8=True` puts the spatial
strides of layer3 and layer4 to 1 (output stride 8, same weights), as vidssl's 2D ResNets; label propagation
reads layer3 (res4, 1024 channels) at stride 8 (`eval_kwargs`), the stride-8 convention of every vidssl
backbone's dense evaluation (the 2D ResNets' layer3 at stride 8, the torchvision video ResNets' layer3).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from vidssl.models.backbones import RESNET_LAYERS, Backbone, register_backbone

# (blocks, inner channels, output channels, conv_a temporal kernel, spatial stride) of res2..res5
_SLOW_R50 = ((3, 64, 256, 1, 1), (4, 128, 512, 1, 2), (6, 256, 1024, 3, 2), (3, 512, 2048, 3, 2))


class _Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 64, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.pool_layer = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool_layer(self.relu(self.bn(self.conv(x))))


class _Bottleneck(nn.Module):
    """Tx1x1 -> 1x3x3 (strided) -> 1x1x1, each followed by BN (SlowFast `BottleneckTransform`)."""

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, stride: int):
        super().__init__()
        self.a = nn.Conv3d(dim_in, dim_inner, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.a_bn = nn.BatchNorm3d(dim_inner)
        self.b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.b_bn = nn.BatchNorm3d(dim_inner)
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(dim_out)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.a_bn(self.a(x)))
        x = self.relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class _ResBlock(nn.Module):
    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, stride: int):
        super().__init__()
        if dim_in != dim_out or stride != 1:  # projection shortcut
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = nn.BatchNorm3d(dim_out)
        self.branch2 = _Bottleneck(dim_in, dim_inner, dim_out, temporal_kernel, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.branch1_bn(self.branch1(x)) if hasattr(self, "branch1") else x
        return self.relu(shortcut + self.branch2(x))


class _Stage(nn.Module):
    """One res stage; blocks are named `pathway0_res<i>` as in SlowFast's `ResStage`."""

    def __init__(self, blocks: int, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, stride: int):
        super().__init__()
        self.names = [f"pathway0_res{i}" for i in range(blocks)]
        for i, name in enumerate(self.names):
            setattr(self, name, _ResBlock(dim_in if i == 0 else dim_out, dim_inner, dim_out, temporal_kernel,
                                          stride if i == 0 else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = getattr(self, name)(x)
        return x


class _StemStage(nn.Module):
    def __init__(self):
        super().__init__()
        self.pathway0_stem = _Stem()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pathway0_stem(x)


class SlowR50(Backbone):
    """Slow-only ResNet-50 (see module doc): (N, 3, T, H, W) -> (N, C, T, H/s, W/s)."""
    is_video = True
    temporal_stride = 1

    def __init__(self, out_layer: str = "layer4", stride8: bool = False):
        super().__init__()
        if out_layer not in RESNET_LAYERS:
            raise ValueError(f"slow_r50: out_layer must be one of {RESNET_LAYERS}, not {out_layer!r}")
        n = RESNET_LAYERS.index(out_layer) + 1
        self.s1 = _StemStage()
        self.stages = [f"s{i + 2}" for i in range(n)]
        dim_in = 64
        for i, (blocks, inner, out, tk, stride) in enumerate(_SLOW_R50[:n]):
            if stride8 and i >= 2:
                stride = 1
            setattr(self, f"s{i + 2}", _Stage(blocks, dim_in, inner, out, tk, stride))
            dim_in = out
        self.out_layer, self.out_channels = out_layer, dim_in
        self.stride = min(2 ** (n + 1), 8) if stride8 else 2 ** (n + 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"slow_r50 takes clips (N, 3, T, H, W), got {tuple(x.shape)}")
        x = self.s1(x)
        for name in self.stages:
            x = getattr(self, name)(x)
        return x

    def eval_kwargs(self) -> dict:
        return {"out_layer": min(self.out_layer, "layer3"), "stride8": True}


@register_backbone("slow_r50", {"out_layer": "str", "stride8": "bool"})
def slow_r50(**kwargs) -> SlowR50:
    return SlowR50(**kwargs)
