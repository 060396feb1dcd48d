"""Backbones: `build_backbone(name, **kwargs)` -> a `Backbone`; every one follows the same protocol.

Protocol (class `Backbone`):
- `out_channels`, `stride` (spatial output stride in pixels), `temporal_stride` (1 for 2D), `is_video`;
- `spec = {"name": registry name, "kwargs": constructor kwargs}` (set by build_backbone), so that
  `build_backbone(spec["name"], **spec["kwargs"])` rebuilds it (e.g. from an exported encoder.json);
- `forward(x) = forward_dense(x)`: 2D (N, 3, H, W) -> (N, C, H/s, W/s); video (N, 3, T, H, W) -> (N, C, T', H', W');
- `forward_global(x)` -> (N, C): CNNs average-pool the dense output over space (and time); ViTs give their
  CLS token (timm's pooled output when the model has none);
- `eval_kwargs()`: kwargs that, merged over the training kwargs, build the backbone whose dense output label
  propagation (DAVIS, JHMDB) reads. Conventions:
    * ResNets: layer3 at output stride 8 (the CRW / VFS protocol; 256 channels for ResNet-18/34);
    * ViTs: the last block's (normed) patch tokens, i.e. the default output (DINO's video segmentation eval);
    * 3D CNNs: "layer3" (spatial stride 8).
  A backbone trained shallower than that is evaluated at its own last layer.

Registered names:
- "crw_resnet18/34/50": the CRW encoder (Jabri et al. 2020; ajabri/videowalk code/resnet.py): torchvision's
  ResNet with every conv of layer3 and layer4 at stride 1 (output stride 8) and reflect padding in every padded
  conv (the reference's `scratch` model). `remove_layers=("layer4",)` drops layer4 (layer3: 256 channels for
  ResNet-18), `("layer3", "layer4")` both. Eval: layer4 removed.
- "resnet18/34/50": torchvision's ResNet (zero padding, output stride 32) without avgpool/fc. `out_layer`
  ("layer1".."layer4"): the last layer built; `stride8=True` puts layer3/layer4 convs at stride 1 (output
  stride 8, same weights). Eval: {"out_layer": "layer3", "stride8": True}.
- "timm:<model>" (a model of timm's registry, built without pretrained weights; hub names are refused): ViTs
  give their patch tokens as a (ceil(H/p), ceil(W/p)) map (stride = patch size p; the input is zero-padded to
  whole patches), CNNs their last feature stage at stride <= 8.
  ViT-S/16 and ViT-S/8 ("timm:vit_small_patch16_224", "timm:vit_small_patch8_224", DINO's models) match DINO's
  video segmentation evaluation (facebookresearch/dino eval_video_segmentation.py `extract_feature`): it reads
  `get_intermediate_layers(x, n=1)`, the last block's tokens after the final LayerNorm, drops the CLS token and
  reshapes the patch tokens to (H/p, W/p); here `forward_dense` is timm's `forward_features` (also normed) without
  the prefix tokens, reshaped the same way (row-major patches), and `forward_global` the normed CLS token (DINO's
  `model(x)`). Any input size works: timm is built with `dynamic_img_size=True`, which resamples the position
  embedding to the patch grid (bicubic, antialiased when it shrinks; DINO's `interpolate_pos_encoding` is
  bicubic by a scale factor with a +0.1 offset: near-identical values when it grows, as at DAVIS's 480p), and
  `dynamic_img_pad=True`. DINO feeds frames whose sides are multiples of 64 (480 px short side), where both
  agree; on other sizes DINO's patch conv drops the last partial patch and vidssl pads it. DINO's checkpoints use
  timm's parameter names (its vision_transformer.py), so `load_backbone_weights` loads them directly (a training
  checkpoint's "teacher" dict too: its "backbone." / "module." prefixes are stripped).
- "stt_resnet18/34/50": Spa-then-Temp's test network (qianduoduolr/Spa-then-Temp configs/test/res18_d8.py:
  mmcv ResNet with pool_type='none', strides (1, 2, 2, 1), out_indices (2,)): torchvision's ResNet without the
  stem max-pool; `stride8=True` puts layer4 at stride 1, so layer3 is at output stride 8. Same tensors as
  "resnet18/34/50". Eval: {"out_layer": "layer3", "stride8": True}.
- "projected": another 2D backbone + a 1x1 conv (+ ReLU) on its map (TimeCycle's evaluation features).
- "r3d_18", "mc3_18", "r2plus1d_18", "s3d": torchvision video models (weights=None) without pooling and
  classifier; other keywords go to the torchvision constructor. `out_layer`: "layer3" or "layer4" (default)
  for the ResNets; for s3d "layer3" = features[:7] (through Mixed_3c, spatial stride 8), "layer4" =
  features[:13] (through Mixed_4f, stride 16), "layer5" = all of `features` (Mixed_5c, stride 32, default).
- "slow_r50": SlowFast's Slow-only 3D ResNet-50 (vidssl/models/slow.py, registered when vidssl.models loads).
All names are torchvision's / timm's / SlowFast's own, so their state dicts load with `load_backbone_weights`.

Specs are checked before anything is built (`check_backbone_spec`, also run on every encoder.json and --backbone):
a known name, kwargs by name and type (`register_backbone(name, kwargs={...})`), plain values only, nothing that
could make timm or torchvision reach the network or read another file (`pretrained`, `checkpoint_path`, hub names
such as "timm:hf-hub:...", URL- or path-like strings).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torchvision

VIDEO_BACKBONES = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d")
RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")
BACKBONES: dict[str, Callable[..., "Backbone"]] = {}
# registered name -> {kwarg: accepted kind} (kinds: see _KINDS); names registered without it get the generic checks
BACKBONE_KWARGS: dict[str, dict[str, str]] = {}
# timm model kwargs a spec may set (architecture and regularisation only); see TimmBackbone
TIMM_KWARGS = {"img_size": "size", "patch_size": "int", "embed_dim": "int", "depth": "int", "num_heads": "int",
               "mlp_ratio": "float", "qkv_bias": "bool", "qk_norm": "bool", "init_values": "float",
               "class_token": "bool", "no_embed_class": "bool", "reg_tokens": "int", "global_pool": "str",
               "fc_norm": "bool", "pos_embed": "str", "dynamic_img_size": "bool", "dynamic_img_pad": "bool",
               "in_chans": "int", "num_classes": "int", "output_stride": "int", "drop_rate": "float",
               "drop_path_rate": "float", "attn_drop_rate": "float", "proj_drop_rate": "float",
               "pos_drop_rate": "float", "patch_drop_rate": "float"}
# never accepted, whatever the backbone: each can make timm/torchvision download or read a file
FORBIDDEN_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "checkpoint_path",
                    "weights", "progress", "cache_dir", "hf_hub_id", "url", "file", "model_args")


def register_backbone(name: str, kwargs: dict[str, str] | None = None):
    """Register a builder under `name`; `kwargs` = {keyword: kind} (int, float, bool, str, size, str_list, dict,
    backbone) accepted in its specs (encoder.json, configs); without it any plain-valued keyword is accepted."""
    def deco(fn):
        BACKBONES[name] = fn
        if kwargs is not None:
            BACKBONE_KWARGS[name] = kwargs
        return fn
    return deco


def _kind_ok(kind: str, v) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind in ("str", "backbone"):
        return isinstance(v, str)
    if kind == "str_list":
        return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)
    if kind == "size":
        pair = isinstance(v, (list, tuple)) and len(v) == 2 and all(_kind_ok("int", x) for x in v)
        return _kind_ok("int", v) or pair
    if kind == "dict":
        return isinstance(v, dict)
    raise AssertionError(kind)


_KIND_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "backbone": "a backbone name", "str_list": "a list of strings", "size": "an integer or [h, w]",
               "dict": "an object of keyword arguments"}


def _plain(v) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return v is None or isinstance(v, (bool, int, float, str))


def _check_name(name, where: str) -> None:
    if not isinstance(name, str):
        raise ValueError(f"{where}: the backbone name must be a string, not {type(name).__name__} {name!r}")
    if name.startswith("timm:"):
        model = name[len("timm:"):]
        # hf-hub:/hf_hub:/local-dir: names make timm fetch (or read) a config: only timm's own registry
        if not model or any(c in model for c in ":/\\") or model.lower().startswith(("hf-hub", "hf_hub")):
            raise ValueError(f"{where}: backbone {name!r} is refused: hub names and paths are never built (nothing "
                             f"downloads); use timm:<model> with a model of timm's registry")
        import timm

        if not timm.is_model(model):
            raise ValueError(f"{where}: backbone {name!r}: timm has no model {model!r} (see timm.list_models())")
    elif name not in BACKBONES:
        raise ValueError(f"{where}: unknown backbone {name!r}: valid names are {', '.join(sorted(BACKBONES))} "
                         f"or timm:<model>")


def check_backbone_spec(name, kwargs, where: str = "backbone", field: str = "kwargs") -> None:
    """ValueError naming `where` (a file, a flag) and `field`.KEY unless `name`/`kwargs` is a spec that builds offline:
    a registered name or timm:<registry model>, a dict of keywords of the accepted names and kinds, plain
    values, nothing forbidden (FORBIDDEN_KWARGS) and no URL-, hub- or path-like string."""
    _check_name(name, where)
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where}: {field} (of {name!r}) must be an object of keyword arguments, not "
                         f"{type(kwargs).__name__} {kwargs!r}")
    accepted = TIMM_KWARGS if name.startswith("timm:") else BACKBONE_KWARGS.get(name)
    for key, value in kwargs.items():
        at = f"{where}: {field}.{key}"
        if not isinstance(key, str) or key in FORBIDDEN_KWARGS:
            raise ValueError(f"{at} is refused: it could make the backbone download or read weights (nothing "
                             f"downloads; load local weights with --weights)")
        if accepted is not None:
            if key not in accepted:
                raise ValueError(f"{at}: {name} takes no keyword {key!r} (accepted: {', '.join(sorted(accepted))})")
            kind = accepted[key]
            if not _kind_ok(kind, value):
                raise ValueError(f"{at} must be {_KIND_NAMES[kind]}, not {type(value).__name__} {value!r}")
            if kind == "backbone":
                _check_name(value, at)
                continue
            if kind == "dict":  # projected's base_kwargs: checked against its base
                if name == "projected" and "base" in kwargs:
                    check_backbone_spec(kwargs["base"], value, where, f"{field}.{key}")
                continue
        elif not _plain(value):
            raise ValueError(f"{at} must be a plain value (number, string, true/false or a list of them), not "
                             f"{type(value).__name__}")
        strings = value if isinstance(value, (list, tuple)) else [value]
        bad = [s for s in strings if isinstance(s, str) and any(c in s for c in ":/\\")]
        if bad:
            raise ValueError(f"{at}: {bad[0]!r} is refused (it looks like a URL, hub name or path; a backbone "
                             f"keyword never names a file)")


def build_backbone(name: str, **kwargs) -> "Backbone":
    check_backbone_spec(name, kwargs)
    if name.startswith("timm:"):
        net = TimmBackbone(name[len("timm:"):], **kwargs)
    else:
        net = BACKBONES[name](**kwargs)
    net.spec = {"name": name, "kwargs": dict(kwargs)}
    return net


def eval_kwargs_of(name: str, **kwargs) -> dict:
    """`build_backbone(name, **kwargs).eval_kwargs()`, built on the meta device (no weights allocated)."""
    with torch.device("meta"):
        return build_backbone(name, **kwargs).eval_kwargs()


class Backbone(nn.Module):
    out_channels: int
    stride: int
    temporal_stride: int = 1
    is_video: bool = False
    spec: dict = None  # set by build_backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_dense(x)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_global(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_dense(x).flatten(2).mean(-1)

    def eval_kwargs(self) -> dict:
        return {}


class ResNet(Backbone):
    """torchvision's ResNet-`depth` trunk up to `out_layer`, optionally at output stride 8 (see module doc)."""

    def __init__(self, depth: int, out_layer: str = "layer4", stride8: bool = False, padding_mode: str = "zeros",
                 max_pool: bool = True):
        super().__init__()
        if out_layer not in RESNET_LAYERS:
            raise ValueError(f"out_layer must be one of {RESNET_LAYERS}, not {out_layer!r}")
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.layers = RESNET_LAYERS[:RESNET_LAYERS.index(out_layer) + 1]
        if stride8:  # the layers past output stride 8 run at stride 1 (without the stem max-pool: layer4 only)
            for m in [*(net.layer3.modules() if max_pool else ()), *net.layer4.modules()]:
                if isinstance(m, nn.Conv2d):
                    m.stride = (1, 1)
        if padding_mode != "zeros":
            for m in net.modules():
                if isinstance(m, nn.Conv2d) and sum(m.padding) > 0:
                    m.padding_mode = padding_mode
        self.conv1, self.bn1, self.relu = net.conv1, net.bn1, net.relu
        self.maxpool = net.maxpool if max_pool else nn.Identity()
        for name in self.layers:
            setattr(self, name, getattr(net, name))
        n = len(self.layers)
        self.out_channels = (64 * 2 ** (n - 1)) * (4 if depth >= 50 else 1)
        full = 2 ** (n + 1) if max_pool else 2 ** n
        self.stride = min(full, 8) if stride8 else full
        self.out_layer = out_layer

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.layers:
            x = getattr(self, name)(x)
        return x

    def eval_kwargs(self) -> dict:
        return {"out_layer": min(self.out_layer, "layer3"), "stride8": True}


class CRWResNet(ResNet):
    """The CRW stride-8, reflect-padded ResNet; `remove_layers` names the trailing layers left out."""

    def __init__(self, depth: int, remove_layers=(), stride8: bool = True, padding_mode: str = "reflect"):
        if set(remove_layers) - {"layer3", "layer4"}:
            raise ValueError(f"remove_layers may hold layer3 and layer4, not {list(remove_layers)}")
        out_layer = "layer2" if "layer3" in remove_layers else "layer3" if "layer4" in remove_layers else "layer4"
        super().__init__(depth, out_layer, stride8, padding_mode)

    def eval_kwargs(self) -> dict:
        return {"remove_layers": ["layer3", "layer4"] if self.out_layer == "layer2" else ["layer4"]}


for _depth in (18, 34, 50):
    register_backbone(f"resnet{_depth}", {"out_layer": "str", "stride8": "bool", "padding_mode": "str"})(
        lambda d=_depth, **kw: ResNet(d, **kw))
    register_backbone(f"crw_resnet{_depth}", {"remove_layers": "str_list", "stride8": "bool", "padding_mode": "str"})(
        lambda d=_depth, **kw: CRWResNet(d, **kw))
    register_backbone(f"stt_resnet{_depth}", {"out_layer": "str", "stride8": "bool", "padding_mode": "str"})(
        lambda d=_depth, **kw: ResNet(d, max_pool=False, **kw))


class TimmBackbone(Backbone):
    def __init__(self, name: str, **kwargs):
        super().__init__()
        import timm

        try:  # a weightless probe, only for its structure
            with torch.device("meta"):
                probe = timm.create_model(name, **kwargs)
        except Exception:
            probe = timm.create_model(name, **kwargs)
        self.is_vit = hasattr(probe, "patch_embed") and hasattr(probe, "blocks")
        if self.is_vit:
            vit_kwargs = {"num_classes": 0, "dynamic_img_size": True, "dynamic_img_pad": True, **kwargs}
            self.model = timm.create_model(name, pretrained=False, **vit_kwargs)
            self.stride = self.model.patch_embed.patch_size[0]
            self.out_channels = self.model.num_features
            self.prefix = getattr(self.model, "num_prefix_tokens", 1)
            self.has_cls = getattr(self.model, "cls_token", None) is not None
        else:
            index = max(i for i, f in enumerate(probe.feature_info) if f["reduction"] <= 8)
            self.model = timm.create_model(name, pretrained=False, features_only=True, out_indices=(index,), **kwargs)
            self.stride = self.model.feature_info.reduction()[0]
            self.out_channels = self.model.feature_info.channels()[0]

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_vit:
            return self.model(x)[0]
        h, w = -(-x.shape[-2] // self.stride), -(-x.shape[-1] // self.stride)  # input padded to whole patches
        tokens = self.model.forward_features(x)[:, self.prefix:]
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)

    def forward_global(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_vit:
            return super().forward_global(x)
        tokens = self.model.forward_features(x)
        return tokens[:, 0] if self.has_cls else self.model.forward_head(tokens, pre_logits=True)


# name -> {out_layer: (out_channels, spatial stride, temporal stride)}; checked by a measured forward in tests
_VIDEO_LAYERS = {
    "r3d_18": {"layer3": (256, 8, 4), "layer4": (512, 16, 8)},
    "r2plus1d_18": {"layer3": (256, 8, 4), "layer4": (512, 16, 8)},
    "mc3_18": {"layer3": (256, 8, 1), "layer4": (512, 16, 1)},
    "s3d": {"layer3": (480, 8, 2), "layer4": (832, 16, 4), "layer5": (1024, 32, 8)},
}
_S3D_END = {"layer3": 7, "layer4": 13, "layer5": 16}  # features[:end]


class VideoBackbone(Backbone):
    is_video = True

    def __init__(self, name: str, out_layer: str | None = None, **kwargs):
        super().__init__()
        if {"weights", "progress"} & kwargs.keys():
            raise ValueError(f"{name}: `weights`/`progress` are not accepted (nothing downloads); build it with "
                             f"random init and load a local state dict with load_backbone_weights")
        layers = _VIDEO_LAYERS[name]
        out_layer = out_layer or list(layers)[-1]
        if out_layer not in layers:
            raise ValueError(f"{name}: out_layer must be one of {list(layers)}, not {out_layer!r}")
        net = getattr(torchvision.models.video, name)(weights=None, **kwargs)
        if name == "s3d":
            self.features = net.features[:_S3D_END[out_layer]]
            self.trunk = ["features"]
        else:
            self.trunk = ["stem", *RESNET_LAYERS[:RESNET_LAYERS.index(out_layer) + 1]]
            for part in self.trunk:
                setattr(self, part, getattr(net, part))
        self.out_layer = out_layer
        self.out_channels, self.stride, self.temporal_stride = layers[out_layer]

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        for part in self.trunk:
            x = getattr(self, part)(x)
        return x

    def eval_kwargs(self) -> dict:
        return {"out_layer": "layer3"}


for _name in VIDEO_BACKBONES:
    register_backbone(_name, {"out_layer": "str", "zero_init_residual": "bool", "num_classes": "int",
                              "dropout": "float"})(lambda n=_name, **kw: VideoBackbone(n, **kw))


@register_backbone("projected", {"base": "backbone", "base_kwargs": "dict", "dim": "int", "relu": "bool"})
class ProjectedBackbone(Backbone):
    """A 2D backbone followed by a 1x1 convolution to `dim` channels (+ ReLU) on its dense map: for methods whose
    features for correspondence include a learned projection (TimeCycle's `afterconv1`, which its reference
    test code propagates with: xiaolonw/TimeCycle models/videos/model_test.py). kwargs: `base` (a registered
    name), `base_kwargs`, `dim`, `relu`. Evaluation reads the projected map of the base at its own eval layer."""

    def __init__(self, base: str, base_kwargs: dict | None = None, dim: int = 512, relu: bool = True):
        super().__init__()
        self.base = build_backbone(base, **(base_kwargs or {}))
        if self.base.is_video:
            raise ValueError(f"a projected backbone needs a 2D base, not {base!r}")
        self.proj = nn.Conv2d(self.base.out_channels, dim, kernel_size=1, bias=False)
        self.relu, self.out_channels, self.stride = relu, dim, self.base.stride

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(self.base.forward_dense(x))
        return torch.relu(y) if self.relu else y

    def eval_kwargs(self) -> dict:
        return {"base_kwargs": {**self.base.spec["kwargs"], **self.base.eval_kwargs()}}


def load_backbone_weights(backbone: nn.Module, state: dict, strict_layers: bool = True) -> list[str]:
    """Load a state dict into `backbone`, matching keys with wrapper prefixes ("module.", "encoder.",
    "backbone.", "model.") stripped on both sides (so a raw timm state dict and an exported TimmBackbone,
    whose keys start with "model.", both load). Keys the backbone has no use for (fc, heads, removed layers)
    are ignored; returns the backbone keys that were missing. Raises when nothing matches (a wrong file)."""
    own = backbone.state_dict()
    prefixes = ("module.", "backbone.", "encoder.", "model.")

    def strip(k: str) -> str:
        while k.startswith(prefixes):
            k = k.split(".", 1)[1]
        return k
    own_key = {strip(k): k for k in own}
    matched = {}
    for k, v in state.items():
        k = own_key.get(strip(k))
        if k is not None and own[k].shape == v.shape:
            matched[k] = v
    if not matched:
        raise ValueError("no parameter of the state dict matches the backbone (wrong architecture or file?)")
    backbone.load_state_dict(matched, strict=False)
    return [k for k in own if k not in matched]
