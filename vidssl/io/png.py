"""A fast path for the PNGs that hold segmentation masks: 8-bit palette or greyscale, not interlaced, rows
filtered with None, Sub or Up. PIL writes palette PNGs unfiltered; all 3,998 published result PNGs in the
davis2017-evaluation repository are such files. Inflating is most of the cost of a mask, and Pillow's wheels
inflate with the system zlib; zlib-ng does it 4-5x faster (benchmarks/RESULTS.md). Anything else returns
None, for the caller to decode with Pillow."""
from __future__ import annotations

import struct

import numpy as np

try:
    from zlib_ng import zlib_ng as zlib
except ImportError:  # still correct, just not faster than Pillow
    import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, PALETTE = 0, 3  # PNG colour types
_SUB, _UP = 1, 2  # PNG row filter types (Average = 3 and Paeth = 4 are left to Pillow)


def decode_indexed_png(data: bytes) -> tuple[np.ndarray, bool] | None:
    """(sample values (H, W) uint8, whether they are palette indices) of the bytes of an 8-bit palette or
    greyscale PNG, or None when the file is not one this fast path handles, including a damaged one (Pillow
    then reports the problem). Palette indices are returned as they are, not as colours."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    header, idat, pos = None, [], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IHDR" and length == 13:
            header = struct.unpack_from(">IIBBBBB", data, pos + 8)
        elif kind == b"IDAT":
            idat.append(data[pos + 8:pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length  # length, type, data, CRC
    if header is None:
        return None
    width, height, depth, color_type, _, _, interlace = header
    if depth != 8 or color_type not in (GREY, PALETTE) or interlace:
        return None
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error:
        return None
    if len(raw) != height * (width + 1):
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    filters, image = rows[:, 0], rows[:, 1:].copy()
    if filters.any():
        if filters.max() > _UP:
            return None
        _unfilter(image, filters)
    return image, color_type == PALETTE


def _unfilter(image: np.ndarray, filters: np.ndarray) -> None:
    """Undo Sub and Up row filters in place (one byte per pixel; arithmetic modulo 256, as uint8 wraps).
    Sub rows are a running sum along the row; a run of Up rows is a running sum down the columns, starting
    from the row above the run, which is already final because None and Sub rows do not look up."""
    sub = filters == _SUB
    image[sub] = np.cumsum(image[sub], axis=1, dtype=np.uint8)
    up = np.flatnonzero(filters == _UP)
    if len(up) == 0:
        return
    breaks = np.flatnonzero(np.diff(up) > 1)
    for start, stop in zip(up[np.r_[0, breaks + 1]], up[np.r_[breaks, len(up) - 1]] + 1):
        above = image[start - 1] if start > 0 else np.zeros_like(image[0])
        image[start:stop] = above + np.cumsum(image[start:stop], axis=0, dtype=np.uint8)
