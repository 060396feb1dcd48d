"""Published checkpoints: recognise the key layout of a weights file and map it onto a vidssl backbone.

`--weights PATH` (vidssl/eval/encoder.py `load_encoder`) reads the file without running code
(`read_weights_file`: safetensors, or torch's weights_only unpickler with argparse.Namespace allowed, which many
training checkpoints store as their `args`), finds its layout (`detect_layout`: one small converter per layout,
each giving the backbone's tensors under torchvision / timm names) and loads it (`load_published`): every
backbone tensor must be set, with the same shape, or the error names the layout seen and what was expected.

Layouts (each read from the reference code named):
- crw: CRW's released model (ajabri/videowalk code/train.py saves {"model": CRW.state_dict(), ...};
  code/model.py: `self.encoder = utils.make_encoder(args)`, code/utils/__init__.py wraps the ResNet as
  `From3D.model`): keys "encoder.model.<torchvision name>", head "selfsim_fc.*" dropped; older files keep the
  reflect pad in an nn.Sequential ("conv1.1.weight"/"conv2.1.weight": code/test.py renames them). -> crw_resnet18.
- vfs: VFS (xvjiarui/VFS, mmcv checkpoint {"state_dict": ...}: "backbone.*" of mmaction's ResNet
  (mmaction/models/backbones/resnet.py: ConvModule "conv"/"bn" children; tools/convert_weights/
  convert_to_pretrained.py gives the torchvision names) and the SimSiam "img_head.*", dropped). Its test
  network (configs/*: strides (1, 2, 1, 1), out_indices (2,)) is layer3 at stride 8 with the max-pool
  -> resnet18 / resnet50.
- spa_then_temp: Spa-then-Temp (qianduoduolr/Spa-then-Temp vcl/models/backbones/resnet.py: the same ConvModule
  names under "backbone."; its training Framework's teacher "backbone_t.*" dropped; no "img_head.*"). Its test
  network (configs/test/res18_d8.py) has no stem max-pool -> stt_resnet18 / stt_resnet50 (the stride-4
  res*_d4 variants are not reproduced).
- dino_train: DINO training checkpoints (facebookresearch/dino main_dino.py: {"student", "teacher", ...};
  utils.MultiCropWrapper adds "backbone."/"head.", DDP "module." (the student always, the teacher of a ResNet);
  utils.load_pretrained_weights strips both): the teacher (eval_video_segmentation.py's default
  --checkpoint_key) is read, "head.*" dropped. -> timm:vit_small_patch16_224 / _patch8_224 / vit_base_patch8_224
  or resnet50.
- mae: MAE / CropMAE pretraining checkpoints (facebookresearch/mae util/misc.py save_model {"model": ...};
  models_mae.py: timm-named encoder + "decoder_*", "mask_token"; alexandre-eymael/CropMAE the same
  models/components/mae/models_mae.py, read by downstreams/propagation/src/models_mae.py): decoder dropped.
- timm_vit: a plain timm-named ViT state dict (timm ImageNet files, DINO's released backbone files such as
  dino_deitsmall16_pretrain.pth, MAE's encoder-only files); the classifier "head.*" is unused.
- torchvision_resnet: a plain torchvision-named ResNet (torchvision and timm ImageNet files,
  dino_resnet50_pretrain.pth); "fc.*" unused.
- native: the backbone's own names, maybe under wrapper prefixes "module." / "backbone." / "encoder." / "model."
  (an exported encoder.safetensors, torchvision video models, SlowFast "model_state"): load_backbone_weights.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from vidssl.models.backbones import load_backbone_weights


@dataclass(frozen=True)
class Layout:
    name: str
    description: str          # what the file looks like (for messages and the README)
    expected: str             # the key pattern that identifies it
    detect: Callable[[dict], bool]
    convert: Callable[[dict], dict]   # the (unwrapped) file -> backbone tensors under torchvision/timm names


def read_weights_file(path: str) -> dict:
    """A weights file's content without running code: safetensors, or a torch file of plain data where an
    argparse.Namespace (a training run's `args`) is rebuilt as a bare attribute holder, never executed."""
    from vidssl.models.export import load_state_file

    with torch.serialization.safe_globals([argparse.Namespace]):
        return load_state_file(path)


def _tensors(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


# ---- crw: ajabri/videowalk
def _is_crw(d: dict) -> bool:
    return any(k.startswith("encoder.model.") for k in d)


def _from_crw(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if k.startswith("encoder.model."):
            # code/test.py: the reflect-padded "scratch" convs were nn.Sequential(pad, conv) in the released model
            out[re.sub(r"(conv[12])\.1\.weight$", r"\1.weight", k[len("encoder.model."):])] = v
    return out


# ---- mmcv_resnet: xvjiarui/VFS, qianduoduolr/Spa-then-Temp
_MMCV_CONV = re.compile(r"^(layer\d+\.\d+\.)(conv\d|downsample)\.(conv|bn)\.(.+)$")


def _is_mmcv_resnet(d: dict) -> bool:
    return "backbone.conv1.conv.weight" in d


def _is_vfs(d: dict) -> bool:
    return _is_mmcv_resnet(d) and any(k.startswith("img_head.") for k in d)


def _from_mmcv_resnet(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if not k.startswith("backbone."):
            continue  # img_head (VFS), backbone_t (Spa-then-Temp's teacher), iteration
        k = k[len("backbone."):]
        if k.startswith("conv1."):  # stem ConvModule: conv1.conv -> conv1, conv1.bn -> bn1
            part, tail = k.split(".", 2)[1:]
            out[("conv1." if part == "conv" else "bn1.") + tail] = v
            continue
        m = _MMCV_CONV.match(k)
        if m is None:
            out[k] = v  # fc or unknown: left for the shape/coverage checks
            continue
        head, module, part, tail = m.groups()
        if module == "downsample":  # VFS convert_to_pretrained.py: downsample.conv -> .0, downsample.bn -> .1
            out[f"{head}downsample.{0 if part == 'conv' else 1}.{tail}"] = v
        else:
            idx = module[-1]
            out[f"{head}{'conv' if part == 'conv' else 'bn'}{idx}.{tail}"] = v
    return out


# ---- dino_train: facebookresearch/dino
def _is_dino_train(d: dict) -> bool:
    return isinstance(d.get("teacher"), dict) or isinstance(d.get("student"), dict)


def _from_dino_train(d: dict) -> dict:
    state = d["teacher"] if isinstance(d.get("teacher"), dict) else d["student"]
    state = _strip(_strip(_tensors(state), "module."), "backbone.")
    return {k: v for k, v in state.items() if not k.startswith("head.")}


# ---- mae: facebookresearch/mae, alexandre-eymael/CropMAE
_MAE_DECODER = ("decoder_", "mask_token")


def _is_vit(d: dict) -> bool:
    return "patch_embed.proj.weight" in d and any(k.startswith("blocks.") for k in d)


def _is_mae(d: dict) -> bool:
    return _is_vit(d) and any(k.startswith(_MAE_DECODER) for k in d)


def _from_mae(d: dict) -> dict:
    return {k: v for k, v in d.items() if not k.startswith(_MAE_DECODER)}


def _is_resnet(d: dict) -> bool:
    return "conv1.weight" in d and "layer1.0.conv1.weight" in d


LAYOUTS = (
    Layout("dino_train", "DINO training checkpoint (facebookresearch/dino: 'teacher'/'student' with "
           "'module.'/'backbone.' prefixes; the teacher is read)", "top-level 'teacher' or 'student'",
           _is_dino_train, _from_dino_train),
    Layout("crw", "CRW checkpoint (ajabri/videowalk: 'model' with 'encoder.model.*' keys)",
           "'encoder.model.conv1.weight'", _is_crw, _from_crw),
    Layout("vfs", "VFS checkpoint (xvjiarui/VFS: mmcv 'state_dict' with 'backbone.*' ConvModule keys and "
           "'img_head.*')", "'backbone.conv1.conv.weight' and 'img_head.*'", _is_vfs, _from_mmcv_resnet),
    Layout("spa_then_temp", "Spa-then-Temp checkpoint (qianduoduolr/Spa-then-Temp: mmcv 'state_dict' with "
           "'backbone.*' ConvModule keys)", "'backbone.conv1.conv.weight'", _is_mmcv_resnet, _from_mmcv_resnet),
    Layout("mae", "MAE / CropMAE pretraining checkpoint ('model' with a timm-named ViT encoder and its decoder; "
           "the decoder is dropped)", "'patch_embed.proj.weight' and 'decoder_*'", _is_mae, _from_mae),
    Layout("timm_vit", "timm-named ViT state dict (timm ImageNet files, DINO ViT backbone files, MAE encoders)",
           "'patch_embed.proj.weight', 'blocks.0.*'", _is_vit, dict),
    Layout("torchvision_resnet", "torchvision-named ResNet state dict (torchvision / timm ImageNet files, DINO "
           "ResNet-50 backbone file)", "'conv1.weight', 'layer1.0.conv1.weight'", _is_resnet, dict),
)
_WRAPPERS = ("state_dict", "model", "model_state", "module")  # mmcv, MAE/CRW/CropMAE, SlowFast, DDP pickles


def _unwrap(obj: dict) -> tuple[dict, str]:
    """The state dict inside `obj` (a wrapper key followed, DDP's "module." stripped) and the path taken."""
    path = ""
    for _ in range(3):
        key = next((k for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if key is None or _is_dino_train(obj):
            break
        obj, path = obj[key], f"{path}[{key!r}]"
    tensors = _tensors(obj)
    if tensors and all(k.startswith("module.") for k in tensors):
        path += " 'module.'"
        obj = {**obj, **_strip(tensors, "module.")}
        obj = {k: v for k, v in obj.items() if not (isinstance(k, str) and k.startswith("module."))}
    return obj, path


def detect_layout(obj: dict) -> tuple[Layout | None, dict, str]:
    """(layout or None, backbone tensors under torchvision/timm names (the unwrapped tensors when None), the
    wrapper path followed)."""
    if _is_dino_train(obj):
        layout = LAYOUTS[0]
        return layout, layout.convert(obj), ""
    inner, path = _unwrap(obj)
    for layout in LAYOUTS[1:]:
        if layout.detect(inner):
            return layout, _tensors(layout.convert(inner)), path
    return None, _tensors(inner), path


_VIT_SIZES = {192: "tiny", 384: "small", 768: "base", 1024: "large"}
_RESNET_DEPTHS = {(2, 2, 2, 2, False): 18, (3, 4, 6, 3, False): 34, (3, 4, 6, 3, True): 50,
                  (3, 4, 23, 3, True): 101, (3, 8, 36, 3, True): 152}


def guess_backbone(state: dict, layout: Layout | None = None) -> str | None:
    """The vidssl backbone whose names and shapes `state` (torchvision/timm names) has, when recognisable."""
    if "patch_embed.proj.weight" in state:
        width, _, patch, _ = state["patch_embed.proj.weight"].shape
        size = _VIT_SIZES.get(width)
        name = f"vit_{size}_patch{patch}_224" if size else None
        import timm

        return f"timm:{name}" if name and timm.is_model(name) else None
    if "conv1.weight" in state:
        blocks = tuple(1 + max((int(k.split(".")[1]) for k in state if k.startswith(f"layer{i}.")), default=-1)
                       for i in range(1, 5))
        n = next((i for i, b in enumerate(blocks) if b == 0), 4)  # trailing layers may be removed (CRW: layer4)
        bottleneck = "layer1.0.conv3.weight" in state
        depth = next((d for (*cfg, bn), d in _RESNET_DEPTHS.items()
                      if bn == bottleneck and tuple(cfg[:n]) == blocks[:n] and not any(blocks[n:])), None)
        if depth is None or n == 0:
            return None
        family = {"crw": "crw_", "spa_then_temp": "stt_"}.get(layout.name if layout else "", "") if depth <= 50 else ""
        return f"{family}resnet{depth}"
    return None


def _native(key: str) -> str:
    """A backbone key under torchvision/timm names: TimmBackbone keeps timm's model as `.model`, ProjectedBackbone
    its base as `.base`."""
    while key.startswith(("model.", "base.")):
        key = key.split(".", 1)[1]
    return key


def _expected() -> str:
    return "; ".join(f"{layout.name}: {layout.expected}" for layout in LAYOUTS) + "; or the backbone's own names"


def _top_keys(obj: dict, n: int = 6) -> str:
    keys = [str(k) for k in obj]
    return ", ".join(repr(k) for k in keys[:n]) + (f", ... ({len(keys)} keys)" if len(keys) > n else "")


def load_published(backbone: nn.Module, name: str, obj: dict, path: str) -> tuple[str, list[str]]:
    """Load the weights file content `obj` into `backbone` (registered as `name`); returns (the layout's
    description, the backbone keys left without weights). ValueError naming `path`, the layout seen and what
    `name` expects when the file does not fit (wrong family or size: the fitting backbone is suggested)."""
    if "model" in obj and "config" in obj and isinstance(obj.get("model"), dict):
        raise ValueError(f"{path} is a vidssl training checkpoint: evaluate it with --checkpoint {path}")
    layout, state, wrapper = detect_layout(obj)
    own = backbone.state_dict()
    if layout is None:  # the backbone's own names (maybe under wrapper prefixes)
        try:
            missing = load_backbone_weights(backbone, state)
        except ValueError:
            raise ValueError(f"{path}: unrecognised key layout for --backbone {name} (top-level keys: "
                             f"{_top_keys(obj)}; state-dict keys{' under ' + wrapper if wrapper else ''}: "
                             f"{_top_keys(state, 4)}); expected one of: {_expected()} "
                             f"(e.g. {next(iter(own), '')!r})") from None
        return "state dict with the backbone's own names", missing
    seen = layout.description + (f" under {wrapper}" if wrapper else "")
    guess = guess_backbone(state, layout)
    hint = f"; it was published for --backbone {guess}" if guess and guess != name else ""
    matched, wrong_shape = {}, []
    for k, v in own.items():
        src = state.get(_native(k))
        if src is None:
            continue
        if src.shape != v.shape:
            wrong_shape.append(f"{_native(k)} {tuple(src.shape)} vs {tuple(v.shape)}")
        else:
            matched[k] = src
    if wrong_shape or not matched:
        what = (f"{len(wrong_shape)} tensor(s) of another shape (e.g. {', '.join(wrong_shape[:2])})" if wrong_shape
                else f"no tensor of --backbone {name} (it expects e.g. {_native(next(iter(own)))!r}; the file "
                     f"has e.g. {', '.join(repr(k) for k in list(state)[:3])})")
        raise ValueError(f"{path}: {seen} does not fit --backbone {name}: {what}{hint}")
    backbone.load_state_dict(matched, strict=False)
    # num_batches_tracked counters do not change an evaluated network (older torchvision files lack them)
    missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    return seen + hint, missing
