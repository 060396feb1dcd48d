"""What a method asks of the data: named clip requests, sampled together from one open video.

A method returns a `DataSpec` from `Method.data_spec(data_cfg)`. Each `ClipRequest` becomes one entry of the
sample (and, stacked, of the batch) under its name:

- `length` frames at `frame_rate` fps (or every `frame_skip`-th frame), optionally sped up by a factor drawn from
  `rate_choices` among those whose clip fits the video (its index is the label `<name>_rate`);
- `count` independent draws stacked on a leading axis (rho clips: (count, T, H, W, 3)); count 1 keeps (T, H, W, 3);
- placement: "independent" (start uniform over the video), or relative to an earlier request `anchor`:
  "overlap" (shares a fraction drawn from `overlap_choices` of its frames with the anchor, before or after it;
  label `<name>_overlap`; `overlap_rule` "span" moves the start by (1 - r) of the clip's span instead, as CSTP),
  "gap" (starts `gap` clip steps after the anchor ends), "same" (the anchor's start);
- a crop policy applied in the workers (`vidssl.data.augment.FrameCrop`): per_frame | per_clip | square | resize;
  `crop_as` names an earlier request whose region (its first frame's box) this one cuts too (e.g. two clips of one
  video on the same square canvas, for crops made on the device with known geometry);
- `<name>_index` holds the source frame indices (int64, (count,) T) and `<name>_box` the crop boxes ((count,)
  T, 4: top, left, h, w in source pixels); the sample also holds the video's "path".

`DataSpec.transform(sample, generator)` runs in the DataLoader workers after sampling: label generators and
side data (precomputed flow or motion vectors read by path and frame indices and cropped with the boxes,
I-frames). It must be picklable (a module-level function or a small object, never a bound method of the model).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from vidssl.io.video import VideoDecodeError

PLACEMENTS = ("independent", "overlap", "gap", "same")
CROPS = ("per_frame", "per_clip", "square", "resize")


class PlacementMiss(VideoDecodeError):
    """This draw of a placed request (or of a transform's side data) fell outside the video; another draw of the
    same video may fit. Raised by the dataset and by `DataSpec.transform`s."""


@dataclass(frozen=True)
class ClipRequest:
    name: str
    length: int = 1
    size: int = 256
    crop: str = "per_frame"
    crop_scale: tuple = (0.8, 0.95)
    crop_ratio: tuple = (0.7, 1.3)
    frame_rate: Optional[float] = None
    frame_skip: Optional[int] = None
    rate_choices: tuple = ()
    count: int = 1
    placement: str = "independent"
    anchor: Optional[str] = None
    overlap_choices: tuple = ()
    overlap_rule: str = "frames"  # "frames": share round(r * length) frames; "span": CSTP's shift (datasets.py)
    gap: int = 0
    crop_as: Optional[str] = None  # cut the same region as this earlier request (its first frame's box)

    def __post_init__(self):
        where = f"clip request {self.name!r}"
        if self.length < 1:
            raise ValueError(f"{where}: length must be >= 1 (data.clip_len?), got {self.length}")
        if self.size < 1 or self.count < 1:
            raise ValueError(f"{where}: size and count must be >= 1")
        if self.crop not in CROPS:
            raise ValueError(f"{where}: crop must be one of {', '.join(CROPS)}, not {self.crop!r}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"{where}: placement must be one of {', '.join(PLACEMENTS)}, not {self.placement!r}")
        if (self.placement == "independent") != (self.anchor is None):
            raise ValueError(f"{where}: placement {self.placement!r} needs {'an' if self.anchor is None else 'no'} anchor")
        if self.placement == "overlap" and not self.overlap_choices:
            raise ValueError(f"{where}: placement 'overlap' needs overlap_choices (fractions in [0, 1])")
        if self.overlap_rule not in ("frames", "span"):
            raise ValueError(f"{where}: overlap_rule must be 'frames' or 'span', not {self.overlap_rule!r}")
        if any(not 0 <= r <= 1 for r in self.overlap_choices):
            raise ValueError(f"{where}: overlap_choices must lie in [0, 1]")
        if self.anchor is not None and self.count != 1:
            raise ValueError(f"{where}: a placed request has count 1")


@dataclass
class DataSpec:
    requests: Sequence[ClipRequest]
    transform: Optional[Callable] = None  # (sample dict, torch.Generator) -> sample dict, in the workers

    def __post_init__(self):
        names = [r.name for r in self.requests]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a data spec needs requests with distinct names, got {names}")
        for i, r in enumerate(self.requests):
            for role, other in (("anchor", r.anchor), ("crop_as", r.crop_as)):
                if other is not None and other not in names[:i]:
                    raise ValueError(f"clip request {r.name!r}: {role} {other!r} must be an earlier request")
