"""build_backbone(name) -> nn.Module with `out_channels` and `stride` (output stride in pixels).

2D backbones map (N, 3, H, W) -> (N, C, H/stride, W/stride); video backbones map (N, 3, T, H, W) ->
(N, C, T', H', W').

- "resnet18", "resnet50": the CRW encoder (Jabri et al. 2020; ajabri/videowalk code/resnet.py): torchvision's
  ResNet with every conv of layer3 and layer4 at stride 1 (output stride 8), reflect padding in every padded
  conv (the reference's `scratch` model), no avgpool/fc. `remove_layers=("layer4",)` gives the evaluation
  encoder (layer3, 256 channels for ResNet-18). Parameter names are torchvision's, so ImageNet state dicts load.
- "timm:<model>": a timm model; ViTs give their patch tokens as a map (stride = patch size), CNNs their
  stride-8 feature stage.
- "r3d_18", "mc3_18", "r2plus1d_18", "s3d": torchvision video models without their pooling and classifier.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

VIDEO_BACKBONES = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d")


class ResNetEncoder(nn.Module):
    def __init__(self, depth: int = 18, stride8: bool = True, padding_mode: str = "reflect",
                 remove_layers: tuple[str, ...] = ()):
        super().__init__()
        net = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34,
               50: torchvision.models.resnet50}[depth](weights=None)
        if stride8:
            for layer in (net.layer3, net.layer4):
                for m in layer.modules():
                    if isinstance(m, nn.Conv2d):
                        m.stride = (1, 1)
        if padding_mode != "zeros":
            for m in net.modules():
                if isinstance(m, nn.Conv2d) and sum(m.padding) > 0:
                    m.padding_mode = padding_mode
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2 = net.layer1, net.layer2
        self.layer3 = None if "layer3" in remove_layers else net.layer3
        self.layer4 = None if ("layer4" in remove_layers or self.layer3 is None) else net.layer4
        last = [m for m in (net.layer1, net.layer2, self.layer3, self.layer4) if m is not None][-1]
        block = last[-1]
        self.out_channels = (block.bn3 if hasattr(block, "bn3") else block.bn2).num_features
        extra = 0 if stride8 else (self.layer3 is not None) + (self.layer4 is not None)
        self.stride = 8 * 2 ** extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        if self.layer3 is not None:
            x = self.layer3(x)
        if self.layer4 is not None:
            x = self.layer4(x)
        return x


class TimmBackbone(nn.Module):
    def __init__(self, name: str, pretrained: bool = False, **kwargs):
        super().__init__()
        import timm

        probe = timm.create_model(name, pretrained=False, **kwargs)
        self.is_vit = hasattr(probe, "patch_embed") and hasattr(probe, "blocks")
        del probe
        if self.is_vit:
            self.model = timm.create_model(name, pretrained=pretrained, num_classes=0, dynamic_img_size=True, **kwargs)
            self.stride = self.model.patch_embed.patch_size[0]
            self.out_channels = self.model.num_features
            self.prefix = getattr(self.model, "num_prefix_tokens", 1)
        else:
            reductions = timm.create_model(name, features_only=True, **kwargs).feature_info.reduction()
            index = max(i for i, r in enumerate(reductions) if r <= 8)
            self.model = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=(index,), **kwargs)
            self.stride = self.model.feature_info.reduction()[0]
            self.out_channels = self.model.feature_info.channels()[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_vit:
            return self.model(x)[0]
        h, w = x.shape[-2] // self.stride, x.shape[-1] // self.stride
        tokens = self.model.forward_features(x)[:, self.prefix:]
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class VideoBackbone(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        net = getattr(torchvision.models.video, name)(weights=None)
        if name == "s3d":
            self.trunk, self.out_channels, self.stride = net.features, 1024, 32
        else:
            self.trunk = nn.Sequential(net.stem, net.layer1, net.layer2, net.layer3, net.layer4)
            self.out_channels, self.stride = 512, 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


def build_backbone(name: str, **kwargs) -> nn.Module:
    if name.startswith("timm:"):
        return TimmBackbone(name[len("timm:"):], **kwargs)
    if name in ("resnet18", "resnet34", "resnet50"):
        return ResNetEncoder(depth=int(name[len("resnet"):]), **kwargs)
    if name in VIDEO_BACKBONES:
        return VideoBackbone(name, **kwargs)
    raise ValueError(f"unknown backbone {name!r}: use resnet18, resnet34, resnet50, timm:<name>, "
                     f"or one of {', '.join(VIDEO_BACKBONES)}")


def load_backbone_weights(backbone: nn.Module, state: dict, strict_layers: bool = True) -> list[str]:
    """Load a state dict into `backbone`, stripping wrapper prefixes ("module.", "encoder.", "backbone.",
    "model."). Keys the backbone has no use for (fc, heads, removed layers) are ignored; returns the
    backbone keys that were missing. Raises when nothing matches (a wrong file)."""
    own = backbone.state_dict()
    prefixes = ("module.", "backbone.", "encoder.", "model.")
    cleaned = {}
    for k, v in state.items():
        while k.startswith(prefixes):
            k = k.split(".", 1)[1]
        cleaned[k] = v
    matched = {k: v for k, v in cleaned.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError("no parameter of the state dict matches the backbone (wrong architecture or file?)")
    backbone.load_state_dict(matched, strict=False)
    return [k for k in own if k not in matched]
