"""How features become labels: every knob of label propagation and of reading the encoder, in one object that
the runner builds from the command line and hands to every evaluation task. Defaults: the CRW reference
(ajabri/videowalk code/test.py and code/utils/arguments.py: temperature 0.05, top-10, the first frame + 20
previous frames as context, a radius of 12 feature cells, native resolution).

`input_size` is the size the encoder reads frames at: "native" (each task's reference size: DAVIS frames as
stored, JHMDB 320x320), "short:N" (short side N px, aspect kept) or "HxW" (fixed). Predictions are always
scored at the ground truth's own size (soft maps resized back, then argmax / keypoint decoding)."""
from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass


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
    raise ValueError(f"input size {spec!r} is not 'native', 'short:N' (short side N px) or 'HxW' (e.g. 240x427)")


def input_shape(spec: str, height: int, width: int, native: tuple[int, int] | None = None) -> tuple[int, int]:
    """(h, w) the encoder reads a (height, width) frame at. `native`: the task's own size for "native" (default:
    the frame's). short:N keeps the aspect ratio (the long side rounded to the nearest pixel)."""
    kind = parse_input_size(spec)
    if kind[0] == "native":
        return native or (height, width)
    if kind[0] == "fixed":
        return kind[1], kind[2]
    n = kind[1]
    if height <= width:
        return n, max(1, round(width * n / height))
    return max(1, round(height * n / width)), n


@dataclass(frozen=True)
class Protocol:
    n_context: int = 20  # previous frames in the context (besides the first frame)
    radius: float | None = 12  # feature cells; None = no spatial restriction
    restrict_first: bool = False  # apply the radius to the first frame too
    topk: int = 10
    temperature: float = 0.05
    weighting: str = "softmax"  # or exp_renorm
    minmax_norm: bool = False  # per-channel min-max of the predicted maps
    label_resize: str = "bilinear"  # first-frame labels to feature resolution
    output_resize: str = "bilinear"  # predicted maps back to the frame size
    input_size: str = "native"  # native | short:N | HxW (see the module docstring)
    clip_len: int = 8  # video backbones: frames of the clip each frame is read from (vidssl/models/dense.py)

    def __post_init__(self):
        parse_input_size(self.input_size)  # a bad value fails here, naming it

    def propagation(self) -> dict:
        """Keyword arguments of vidssl.eval.propagate.propagate_labels."""
        return dict(n_context=self.n_context, radius=self.radius, topk=self.topk, temperature=self.temperature,
                    restrict_first=self.restrict_first, weighting=self.weighting, minmax_norm=self.minmax_norm)

    def as_dict(self) -> dict:
        return asdict(self)


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    d = Protocol()
    g = parser.add_argument_group("propagation (defaults: the CRW reference)")
    g.add_argument("--n-context", type=int, default=d.n_context, help="previous frames in the context")
    g.add_argument("--radius", type=float, default=d.radius, help="feature cells; <= 0 disables")
    g.add_argument("--restrict-first", action="store_true", help="apply the radius to the first frame too")
    g.add_argument("--topk", type=int, default=d.topk)
    g.add_argument("--temperature", type=float, default=d.temperature)
    g.add_argument("--weighting", default=d.weighting, choices=["softmax", "exp_renorm"])
    g.add_argument("--minmax-norm", action="store_true", help="per-channel min-max of predicted maps")
    g.add_argument("--label-resize", default=d.label_resize, choices=["bilinear", "nearest"])
    g.add_argument("--output-resize", default=d.output_resize, choices=["bilinear", "nearest"])
    g.add_argument("--input-size", default=d.input_size,
                   help="frames as the encoder reads them: native (default), short:N (short side N px) or HxW; "
                        "predictions are scored at the ground truth's size")
    g.add_argument("--clip-len", type=int, default=d.clip_len, help="video backbones: frames of the clip centred on each frame")


def protocol_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Protocol:
    """The protocol the options describe; options that make no sense are errors, not a score of 0."""
    if args.temperature <= 0:
        parser.error(f"--temperature must be > 0, got {args.temperature}")
    for name in ("topk", "clip_len"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.n_context < 0:
        parser.error(f"--n-context must be >= 0, got {args.n_context}")
    try:
        parse_input_size(args.input_size)
    except ValueError as e:
        parser.error(f"--input-size: {e}")
    return Protocol(n_context=args.n_context, radius=args.radius if args.radius > 0 else None,
                    restrict_first=args.restrict_first, topk=args.topk, temperature=args.temperature,
                    weighting=args.weighting, minmax_norm=args.minmax_norm, label_resize=args.label_resize,
                    output_resize=args.output_resize, clip_len=args.clip_len,
                    input_size=args.input_size)
