"""How features become labels: every knob of label propagation and of reading the encoder, in one object that
the runner builds from the command line and hands to every evaluation task.

`--protocol NAME` picks a named set of every knob, as a published evaluation ran it (PRESETS below, each value
with the file it comes from); an option given explicitly on the command line still wins over the preset. The
default ("default") is vidssl's own long-standing setting, the CRW reference's DAVIS command (ajabri/videowalk
README.md: --topk 10 --videoLen 20 --radius 12 --temperature 0.05 --cropSize -1).

Every result folder gets the resolved protocol as protocol.json and a short hash of its knobs (`Protocol.digest`),
so that two results can be told apart, or known to be comparable, by one look at the hash.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields, replace

RADIUS_SHAPES = ("circle", "square")
CONTEXT_PADS = ("first", "none", "after_first")
POS_EMBED_MODES = ("timm", "dino")
WEIGHTINGS = ("softmax", "exp_renorm")
RESIZE_MODES = ("bilinear", "nearest")


@dataclass(frozen=True)
class Protocol:
    n_context: int = 20  # previous frames in the context (besides the first frame)
    context_pad: str = "first"  # previous frames before the video: first (copies of frame 0) | none | after_first
    radius: float | None = 12  # feature cells; None = no spatial restriction
    radius_shape: str = "circle"  # circle: Euclidean distance < radius; square: |dy|, |dx| <= radius
    restrict_first: bool = False  # apply the radius to the first frame too
    topk: int = 10
    temperature: float = 0.05
    weighting: str = "softmax"  # or exp_renorm
    minmax_norm: bool = False  # per-channel min-max of the predicted maps (fed back, UVC's norm_mask)
    output_minmax: bool = False  # per-channel min-max of the output maps only (not fed back: DINO, Spa-then-Temp)
    label_resize: str = "bilinear"  # first-frame labels to feature resolution
    output_resize: str = "bilinear"  # predicted maps back to the frame size
    clip_len: int = 8  # video backbones: frames per sliding clip
    input_size: str = "native"  # frames given to the encoder: native | short:N (short side N px) | HxW
    vit_pos_embed: str = "timm"  # ViT position embedding at other grid sizes: timm (antialiased) | dino
    feature_stride: int | None = None  # the stride the reference read features at (checked, not enforced)
    preset: str = "default"  # the name this protocol started from (not part of the digest)

    def __post_init__(self):
        parse_input_size(self.input_size)  # a bad value fails here, naming it

    def propagation(self) -> dict:
        """Keyword arguments of vidssl.eval.propagate.propagate_labels."""
        return dict(n_context=self.n_context, radius=self.radius, topk=self.topk, temperature=self.temperature,
                    restrict_first=self.restrict_first, weighting=self.weighting, minmax_norm=self.minmax_norm,
                    radius_shape=self.radius_shape, context_pad=self.context_pad, output_minmax=self.output_minmax)

    def as_dict(self) -> dict:
        return asdict(self)

    def knobs(self) -> dict:
        """Every knob that can change a result (all fields but the preset's name)."""
        return {k: v for k, v in asdict(self).items() if k != "preset"}

    def digest(self) -> str:
        """Short hash of the knobs: equal for equal settings whatever preset they came from."""
        text = json.dumps(self.knobs(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def record(self) -> dict:
        """What protocol.json holds."""
        return {"preset": self.preset, "hash": self.digest(), **self.knobs()}


# Each preset: "all" (every task) and per-task overrides ("davis", "jhmdb", "vip"), where the reference runs a
# task differently. Fields not named keep the Protocol defaults above. The "# divergence" notes say where vidssl
# cannot (yet) do exactly what the reference does.
PRESETS: dict[str, dict[str, dict]] = {
    "default": {"all": {}},
    # ajabri/videowalk (CRW, Jabri et al. 2020)
    "crw": {
        "all": dict(
            temperature=0.05,  # README.md DAVIS command --temperature 0.05 (utils/arguments.py default 0.07)
            topk=10,  # README.md --topk 10; code/utils/arguments.py --topk default 10
            n_context=20,  # README.md --videoLen 20; code/utils/arguments.py --videoLen default 20
            context_pad="first",  # code/data/vos.py make_paths: the video starts with videoLen copies of frame 0
            radius=12,  # README.md --radius 12; code/utils/arguments.py --radius default 12
            radius_shape="circle",  # code/utils/__init__.py MaskedAttention: D < radius, D Euclidean
            restrict_first=False,  # code/utils/test_utils.py mem_efficient_batched_affinity: mask only after long_mem
            weighting="softmax",  # code/utils/test_utils.py: softmax over the top-k of A / temperature
            minmax_norm=False,  # code/utils/arguments.py --norm_mask default False
            output_minmax=False,  # test.py: norm_mask is the only normalisation
            label_resize="bilinear",  # code/data/vos.py: cv2.resize of the one-hot maps, INTER_LINEAR
            output_resize="bilinear",  # code/utils/test_utils.py dump_predictions: cv2.resize (linear), argmax
            input_size="native",  # README.md --cropSize -1 (native 480p)
            feature_stride=8,  # code/utils/arguments.py --remove-layers ['layer4']: res4 at stride 8 (resnet.py)
        ),
        # code/utils/arguments.py --cropSize default 320; code/data/jhmdb.py resizes both sides to it
        "jhmdb": dict(input_size="320x320"),
    },
    # facebookresearch/dino eval_video_segmentation.py (Caron et al. 2021)
    "dino": {
        "all": dict(
            temperature=0.1,  # label_propagation: torch.exp(bmm(...) / 0.1)
            weighting="exp_renorm",  # exp, zero below the k-th largest, divide by the sum (no softmax shift)
            topk=5,  # --topk default 5
            n_context=7,  # --n_last_frames default 7
            context_pad="after_first",  # a queue of the last 7 predicted frames: frame 0 only as the first frame
            radius=12,  # --size_mask_neighborhood default 12
            radius_shape="square",  # restrict_neighborhood: |di|, |dj| <= size_mask_neighborhood
            restrict_first=True,  # aff *= mask_neighborhood on every context frame, the first included
            minmax_norm=False,  # the queue keeps the raw prediction (seg = copy.deepcopy before norm_mask)
            output_minmax=True,  # norm_mask on the output (divergence: at feature resolution, not after upsampling)
            label_resize="nearest",  # read_seg: seg.resize((w / p, h / p), 0) = PIL NEAREST
            output_resize="bilinear",  # F.interpolate(scale_factor=patch_size, bilinear), then NEAREST to original
            # read_frame: short side 480, long side floored to a multiple of 64; DAVIS 480p frames are 854x480
            input_size="480x832",
            vit_pos_embed="dino",  # vision_transformer.py interpolate_pos_encoding: bicubic, scale (n + 0.1) / N
        ),
    },
    # alexandre-eymael/CropMAE downstreams/propagation (Eymael et al. 2024; the RSP / SiamMAE protocol)
    "cropmae": {
        "all": dict(
            temperature=0.7,  # util.py --davis_temperature 0.7; src/utils/arguments.py --temperature 0.7
            topk=7,  # util.py --davis_topk 7; src/utils/arguments.py --topk 7
            n_context=20,  # util.py --davis_video_len 20; src/utils/arguments.py --video_len 20
            context_pad="first",  # src/data/vos.py make_paths: frame index max(0, i - video_len)
            radius=20,  # util.py --davis_radius 20; src/utils/arguments.py --radius 20
            radius_shape="circle",  # src/utils/__init__.py MaskedAttention: Euclidean D < radius
            restrict_first=False,  # src/utils/test_utils.py: the mask skips long_mem [0] (start.py long_mem=[0])
            weighting="softmax",  # src/utils/test_utils.py mem_efficient_batched_affinity
            minmax_norm=False,  # start.py norm_mask=False
            output_minmax=False,  # src/test.py: norm_mask is the only normalisation
            label_resize="bilinear",  # src/data/vos.py: cv2.resize of the one-hot maps, INTER_LINEAR
            output_resize="bilinear",  # src/utils/test_utils.py dump_predictions: cv2.resize, argmax
            input_size="480x880",  # util.py --davis_crop_size [480, 880]; src/utils/arguments.py (480, 880)
            vit_pos_embed="dino",  # src/models_mae.py interpolate_pos_encoding (DINO's: bicubic, + 0.1)
        ),
        "jhmdb": dict(input_size="320x320"),  # util.py --jhmdb_crop_size [320, 320] (topk 7, radius 20 as DAVIS)
        # util.py --vip_topk 10; --vip_crop_size [880]: long side 880, short side floored to a multiple of 64
        # (src/data/vos.py). divergence: that size rule has no input_size form yet, VIP frames stay native.
        "vip": dict(topk=10),
    },
    # qianduoduolr/Spa-then-Temp configs/test/res18_d8.py and base_data.py (Li et al. 2023), ResNet-18 stride 8
    "spa_then_temp": {
        "all": dict(
            temperature=0.07,  # res18_d8.py test_cfg_* temperature=0.07
            topk=10,  # res18_d8.py test_cfg_* topk=10
            n_context=20,  # res18_d8.py precede_frames=20
            context_pad="none",  # vanilla_tracker.py key_start = max(0, frame_idx - precede_frames)
            # res18_d8.py test_cfg_davis neighbor_range=24, mode='square': vcl/models/common/affinity_utils.py
            # spatial_neighbor keeps i - 24 // 2 .. i + 24 // 2, i.e. |dy|, |dx| <= 12
            radius=12,
            radius_shape="square",
            restrict_first=True,  # res18_d8.py with_first_neighbor=True: non_mask_len 0 (the first frame masked)
            weighting="softmax",  # vcl/models/common/local_attention.py masked_attention_efficient mode='softmax'
            minmax_norm=False,  # vanilla_tracker.py: seg_bank keeps the raw seg_logit
            # vanilla_tracker.py: the upsampled output min-max normalised when the reference map holds class ids
            # (DAVIS, VIP; divergence: here at feature resolution)
            output_minmax=True,
            label_resize="nearest",  # vcl/models/trackers/vanilla_tracker.py pil_nearest_interpolate
            output_resize="bilinear",  # vanilla_tracker.py F.interpolate(seg_logit, original_shape, bilinear)
            input_size="short:480",  # base_data.py val_pipeline_davis Resize scale=(-1, 480), keep_ratio
            feature_stride=8,  # res18_d8.py strides=(1, 2, 2, 1), out_indices=(2,): layer3 at stride 8
        ),
        # base_data.py val_pipeline_jhmdb Resize (320, 320); res18_d8.py test_cfg_jhmdb neighbor_range=10
        # and no output min-max for JHMDB's one-hot heatmaps (vanilla_tracker.py `if not input_onehot`)
        "jhmdb": dict(input_size="320x320", radius=5, output_minmax=False),
        # base_data.py val_pipeline_vip Resize (560, 560); res18_d8.py test_cfg_vip neighbor_range=32
        "vip": dict(input_size="560x560", radius=16),
    },
}

def parse_input_size(spec: str) -> tuple:
    """"native" -> ("native",); "short:N" -> ("short", N); "HxW" -> ("fixed", H, W). Anything else: ValueError."""
    if spec == "native":
        return ("native",)
    m = re.fullmatch(r"short:(\d+)", spec)
    if m and int(m.group(1)) > 0:
        return ("short", int(m.group(1)))
    m = re.fullmatch(r"(\d+)x(\d+)", spec)
    if m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
        return ("fixed", int(m.group(1)), int(m.group(2)))
    raise ValueError(f"--input-size must be native, short:N or HxW (e.g. 480x880), not {spec!r}")


def input_shape(spec: str, height: int, width: int, native: tuple[int, int] | None = None) -> tuple[int, int]:
    """(h, w) the encoder reads a (height, width) frame at. `native`: the task's own size for "native" (default:
    the frame's; JHMDB's reference reads 320x320). short:N keeps the aspect ratio (long side rounded)."""
    kind = parse_input_size(spec)
    if kind[0] == "native":
        return native or (height, width)
    if kind[0] == "fixed":
        return kind[1], kind[2]
    n = kind[1]
    if height <= width:
        return n, max(1, round(width * n / height))
    return max(1, round(height * n / width)), n


def check_protocol(p: Protocol) -> list[str]:
    """What is wrong with a protocol (empty when nothing is)."""
    errors = []
    if p.temperature <= 0:
        errors.append(f"--temperature must be > 0, got {p.temperature}")
    for name in ("topk", "clip_len"):
        if getattr(p, name) < 1:
            errors.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(p, name)}")
    if p.n_context < 0:
        errors.append(f"--n-context must be >= 0, got {p.n_context}")
    try:
        parse_input_size(p.input_size)
    except ValueError as e:
        errors.append(str(e))
    for name, allowed in (("radius_shape", RADIUS_SHAPES), ("context_pad", CONTEXT_PADS),
                          ("vit_pos_embed", POS_EMBED_MODES),
                          ("weighting", WEIGHTINGS), ("label_resize", RESIZE_MODES), ("output_resize", RESIZE_MODES)):
        if getattr(p, name) not in allowed:
            errors.append(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, not {getattr(p, name)!r}")
    return errors


def preset(name: str, task: str | None = None) -> Protocol:
    """The named preset as `task` runs it (its "all" values, then the task's own)."""
    if name not in PRESETS:
        raise ValueError(f"unknown protocol {name!r}: choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[name]["all"], **PRESETS[name].get(task or "", {})}
    return Protocol(**values, preset=name)


# option name -> Protocol field, for every option that sets a knob
_OPTIONS = {f.name: f.name for f in fields(Protocol) if f.name != "preset"}


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The propagation options. All default to None so that an option given explicitly is told apart from the
    preset's value (the explicit one wins)."""
    g = parser.add_argument_group("propagation protocol (--protocol picks a named set; each option overrides it)")
    g.add_argument("--protocol", default="default", choices=list(PRESETS),
                   help="a published evaluation's settings (default: CRW's DAVIS command, vidssl's long-standing one)")
    g.add_argument("--n-context", type=int, help="previous frames in the context")
    g.add_argument("--context-pad", choices=CONTEXT_PADS,
                   help="context slots before the video: first (copies of frame 0), none, after_first (frame 0 "
                        "only as the first frame)")
    g.add_argument("--radius", type=float, help="feature cells; <= 0 disables")
    g.add_argument("--radius-shape", choices=RADIUS_SHAPES,
                   help="circle: distance < radius; square: |dy|, |dx| <= radius")
    g.add_argument("--restrict-first", action=argparse.BooleanOptionalAction,
                   help="apply the radius to the first frame too")
    g.add_argument("--topk", type=int)
    g.add_argument("--temperature", type=float)
    g.add_argument("--weighting", choices=WEIGHTINGS)
    g.add_argument("--minmax-norm", action=argparse.BooleanOptionalAction,
                   help="per-channel min-max of predicted maps, fed back (UVC)")
    g.add_argument("--output-minmax", action=argparse.BooleanOptionalAction,
                   help="per-channel min-max of the output maps only (DINO, Spa-then-Temp)")
    g.add_argument("--label-resize", choices=RESIZE_MODES)
    g.add_argument("--output-resize", choices=RESIZE_MODES)
    g.add_argument("--clip-len", type=int, help="video backbones: frames per sliding clip")
    g.add_argument("--input-size", help="frames to the encoder: native, short:N (short side N px) or HxW")
    g.add_argument("--vit-pos-embed", choices=POS_EMBED_MODES,
                   help="ViT position embedding resampling: timm (bicubic, antialiased) or dino (bicubic, +0.1)")
    g.add_argument("--feature-stride", type=int, help="expected encoder stride (a warning when it differs)")


def protocol_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace, task: str | None = None) -> Protocol:
    """The preset of --protocol for `task`, with every explicitly given option over it; options that make no
    sense are errors, not a score of 0."""
    base = preset(getattr(args, "protocol", None) or "default", task)
    given = {field: getattr(args, opt) for opt, field in _OPTIONS.items() if getattr(args, opt, None) is not None}
    if "radius" in given and given["radius"] <= 0:
        given["radius"] = None
    try:
        p = replace(base, **given)
    except ValueError as e:  # __post_init__: a value no protocol can have
        parser.error(str(e))
    errors = check_protocol(p)
    if errors:
        parser.error("; ".join(errors))
    return p
