"""Frame folders (JPEG/PNG per frame, as DAVIS and JHMDB ship them) and DAVIS mask files."""
from __future__ import annotations

import io
import os
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from vidssl.io.png import decode_indexed_png
from vidssl.io.video import VideoDecodeError, check_indices

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def list_frames(folder: str | os.PathLike) -> list[str]:
    """Image files in `folder`, sorted numerically where the names are numbers (00001.png < 00010.png)."""
    names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]

    def key(n: str):
        stem = os.path.splitext(n)[0]
        return (0, int(stem), n) if stem.isdigit() else (1, 0, n)

    return [os.path.join(folder, n) for n in sorted(names, key=key)]


def read_image(path: str) -> np.ndarray:
    """RGB uint8 (H, W, 3); raises VideoDecodeError naming the file when it cannot be read, or when a JPEG is
    truncated (no end-of-image marker: libjpeg would fill the missing part with grey and only warn)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise VideoDecodeError(path, f"cannot read image ({e.strerror})") from None
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:].tobytes():
        raise VideoDecodeError(path, "truncated JPEG (no end-of-image marker)")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise VideoDecodeError(path, "cannot read image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class FrameFolderReader:
    """The VideoReader interface over a folder of frames. `fps` is what the caller says (folders carry none)."""

    def __init__(self, folder: str | os.PathLike, fps: float = 0.0):
        self.path = str(folder)
        if not os.path.isdir(self.path):
            raise VideoDecodeError(self.path, "no such folder")
        self.files = list_frames(self.path)
        if not self.files:
            raise VideoDecodeError(self.path, "folder has no frames")
        self.fps = float(fps)
        self.backend = "frames"

    @property
    def num_frames(self) -> int:
        return len(self.files)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames as (T, H, W, 3) uint8; an unreadable frame is reported as the folder's failure (naming the frame),
        so the folder is listed once and skipped as a whole."""
        idx = check_indices(self.path, indices, len(self.files), "get_frames")
        try:
            frames = [read_image(self.files[i]) for i in idx]
        except VideoDecodeError as e:
            raise VideoDecodeError(self.path, f"{os.path.basename(e.path)}: {e.reason}") from None
        if len({f.shape for f in frames}) > 1:
            raise VideoDecodeError(self.path, "frames differ in size")
        return torch.from_numpy(np.stack(frames))

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameFolderReader":
        return self

    def __exit__(self, *exc) -> None:
        pass


def davis_palette() -> np.ndarray:
    """The PASCAL VOC colour map that DAVIS masks use, (256, 3) uint8: id bits spread over the R, G, B high bits."""
    ids = np.arange(256)
    cmap = np.zeros((256, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            cmap[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return cmap.astype(np.uint8)


VOID_LABEL = 255


def read_davis_mask(path: str) -> np.ndarray:
    """Object ids (H, W) uint8 from a DAVIS mask: DAVIS-2017 palette PNGs (0..K, 255 = void) or DAVIS-2016
    single-object greyscale PNGs ({0, 255}, where 255 is the object, id 1)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        decoded = decode_indexed_png(data)
        if decoded is None:  # not a plain 8-bit PNG: Pillow decodes it
            img = Image.open(io.BytesIO(data))
            img.load()
            palette = img.mode == "P"
            decoded = np.array(img if palette else img.convert("L"), dtype=np.uint8), palette
    except Exception as e:
        raise VideoDecodeError(path, f"cannot read mask: {e}") from e
    arr, palette = decoded
    if palette:
        return arr
    values = np.flatnonzero(np.bincount(arr.ravel(), minlength=256))  # cheaper than np.unique
    if set(values.tolist()) <= {0, 255}:  # DAVIS-2016 binary mask
        return (arr > 127).astype(np.uint8)
    if values.max() < VOID_LABEL:  # greyscale ids written without a palette
        return arr
    raise VideoDecodeError(path, f"unrecognised mask values {values[:10].tolist()}; expected a palette PNG or {{0, 255}}")


def write_davis_mask(path: str, mask: np.ndarray) -> None:
    """Write object ids as an indexed PNG with the DAVIS palette (the official results format)."""
    if mask.max(initial=0) > 255:
        raise ValueError(f"{path}: object id {mask.max()} does not fit a palette PNG")
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(davis_palette().flatten().tolist())
    tmp = f"{path}.tmp.png"
    img.save(tmp)
    os.replace(tmp, path)
