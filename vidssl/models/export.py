"""Exported encoders: `encoder.safetensors` (the backbone's tensors) + `encoder.json` (how to rebuild it).

encoder.json = {"format": 1, "backbone": registry name, "kwargs": its training kwargs, "eval_kwargs": what
evaluation adds to read its dense features (e.g. layer3 at stride 8), "source": where it came from (method,
step, run)}. Evaluation and extraction rebuild the backbone from these two files alone: no method code, no
pickle. `read_encoder` also accepts a run folder or a full training checkpoint (read with weights_only=True);
checkpoints written before the export existed (format 1 of the trainer) name the CRW encoder "resnet18",
which today is torchvision's ResNet: they are mapped to "crw_resnet18".
An encoder.json is checked before anything is built (`check_encoder_meta`): it may name only a known backbone
with known keywords of the right kinds, never a hub model, `pretrained`, a file or a URL (an edited file must
not make evaluation reach the network); every refusal names the file and the key.
"""
from __future__ import annotations

import json
import os

import torch
import torch.nn as nn

from vidssl.io.atomic import atomic_write
from vidssl.models.backbones import build_backbone, check_backbone_spec, eval_kwargs_of, load_backbone_weights

WEIGHTS, META, CHECKPOINT = "encoder.safetensors", "encoder.json", "checkpoint.pt"
FORMAT = 1
_LEGACY_NAMES = {"resnet18": "crw_resnet18", "resnet34": "crw_resnet34", "resnet50": "crw_resnet50"}


def encoder_meta(backbone: nn.Module, source: dict) -> dict:
    return {"format": FORMAT, "backbone": backbone.spec["name"], "kwargs": backbone.spec["kwargs"],
            "eval_kwargs": backbone.eval_kwargs(), "source": source}


def export_encoder(backbone: nn.Module, folder: str, source: dict) -> str:
    """Write encoder.safetensors then encoder.json (each atomically) into `folder`; returns the json path."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()}
    atomic_write(os.path.join(folder, WEIGHTS), lambda p: save_file(state, p, metadata={"format": str(FORMAT)}))
    meta = encoder_meta(backbone, source)

    def write_json(p):
        with open(p, "w") as f:
            json.dump(meta, f, indent=1)
    atomic_write(os.path.join(folder, META), write_json)
    return os.path.join(folder, META)


def check_encoder_meta(meta, where: str) -> dict:
    """`meta` (an encoder.json's content) with defaults filled in; ValueError naming `where` and the key when a
    key is missing, of the wrong kind, or names a backbone/keyword that could download or read other files."""
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: expected a JSON object with keys backbone, kwargs, eval_kwargs, source; "
                         f"found {type(meta).__name__}")
    if "backbone" not in meta:
        raise ValueError(f"{where}: key 'backbone' is missing (it names the backbone the weights are for, e.g. "
                         f"\"crw_resnet18\")")
    fmt = meta.get("format", FORMAT)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or not 0 <= fmt <= FORMAT:
        raise ValueError(f"{where}: key 'format' is {fmt!r}; this vidssl reads formats 0..{FORMAT}")
    meta = {"kwargs": {}, "eval_kwargs": None, "source": {}, **meta}
    if not isinstance(meta["source"], dict):
        raise ValueError(f"{where}: key 'source' must be an object, not {type(meta['source']).__name__}")
    check_backbone_spec(meta["backbone"], meta["kwargs"], where, "kwargs")
    if meta["eval_kwargs"] is not None:  # checked merged over kwargs, as they are built (projected: its base)
        if not isinstance(meta["eval_kwargs"], dict):
            raise ValueError(f"{where}: key 'eval_kwargs' must be an object or null, not "
                             f"{type(meta['eval_kwargs']).__name__}")
        check_backbone_spec(meta["backbone"], {**meta["kwargs"], **meta["eval_kwargs"]}, where, "eval_kwargs")
    return meta


def read_encoder_json(path: str) -> dict:
    """An encoder.json, parsed and checked (check_encoder_meta); errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file ({e.reason})") from e
    return check_encoder_meta(meta, path)


def load_state_file(path: str) -> dict:
    """Tensors from a .safetensors file or a torch file of plain data (never unpickling code)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as e:
            raise ValueError(f"{path} is not a readable safetensors file ({e})") from e
    from vidssl.io.checkpoint import load_checkpoint

    return load_checkpoint(path)


def _from_checkpoint(path: str) -> tuple[dict, dict]:
    ckpt = load_state_file(path)
    if "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path} is not a vidssl training checkpoint (no 'model'/'config'); for a plain state "
                         f"dict use --backbone NAME --weights {path}")
    if "encoder" in ckpt:
        meta, prefix = check_encoder_meta(ckpt["encoder"], f"{path} ['encoder']"), ckpt.get("encoder_prefix")
        if not isinstance(prefix, str):
            raise ValueError(f"{path}: key 'encoder_prefix' must be a string, not {type(prefix).__name__}")
    else:  # written before encoders were exported: a CRW run
        m = ckpt["config"]["method"]
        name = m.get("backbone", "resnet18")
        meta = {"format": 0, "backbone": _LEGACY_NAMES.get(name, name), "kwargs": m.get("backbone_kwargs") or {},
                "eval_kwargs": None, "source": {"method": m.get("name"), "step": ckpt.get("step")}}
        meta = check_encoder_meta(meta, f"{path} [config method.backbone/backbone_kwargs]")
        prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    meta = {**meta, "source": {**meta.get("source", {}), "checkpoint": path}}
    return meta, state


def resolve_encoder_path(path: str) -> str:
    """A run folder -> its encoder.json (or checkpoint.pt); a .safetensors -> the encoder.json beside it."""
    if os.path.isdir(path):
        for name in (META, CHECKPOINT):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise FileNotFoundError(f"{path} holds neither {META} nor {CHECKPOINT}")
    if path.endswith(".safetensors"):
        meta = os.path.join(os.path.dirname(path), META)
        if not os.path.isfile(meta):
            raise FileNotFoundError(f"{path}: {META} is not beside it (it says which backbone these weights are)")
        return meta
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    return path


def read_encoder(path: str, dense: bool = True) -> tuple[nn.Module, dict]:
    """(backbone in eval mode, meta) from a run folder, encoder.json/.safetensors or a training checkpoint.
    `dense`: build it as evaluation reads dense maps (meta's eval_kwargs); else as trained (global features)."""
    path = resolve_encoder_path(path)
    if path.endswith(".json"):
        meta = read_encoder_json(path)
        state = load_state_file(os.path.join(os.path.dirname(path), WEIGHTS))
    else:
        meta, state = _from_checkpoint(path)
    name, kwargs, eval_kwargs = meta["backbone"], dict(meta["kwargs"]), meta["eval_kwargs"]
    if dense and eval_kwargs is None:  # a checkpoint from before the export: ask the backbone
        eval_kwargs = eval_kwargs_of(name, **kwargs)
    backbone = build_backbone(name, **{**kwargs, **(eval_kwargs if dense else {})})
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: non-finite values in {len(bad)} tensor(s), e.g. {bad[0]}; this encoder "
                         f"diverged (use an earlier checkpoint)")
    missing = load_backbone_weights(backbone, state)
    if missing:
        raise ValueError(f"{path}: the weights do not cover the {name} backbone (missing e.g. {missing[:3]})")
    return backbone.eval(), meta
