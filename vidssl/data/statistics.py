"""Motion and appearance statistics labels (Wang et al., "Self-supervised Spatio-temporal Representation Learning
for Videos by Predicting Motion and Appearance Statistics", CVPR 2019; TPAMI 2021 extension). A port, vectorised
with numpy, of the official label code laura-wang/video_repres_sts: sts/generate_motion_label.py,
sts/compute_motion_statistics_fast.py, sts/generate_app_label.py, sts/compute_appearance_statistics.py.

Three spatial partitions of the S x S clip (S = 112 in the reference; here any multiple of 8):
  1. a 4 x 4 grid of S/4 blocks, numbered row by row 1..16;
  2. four concentric square rings: the centre S/4 square, then the rings out to S/2, 3S/4 and S (1..4);
  3. eight triangles: each S/2 quadrant cut along a diagonal, the diagonal pixels belonging to both halves
     (top-left / bottom-right quadrants along the main diagonal: lower then upper triangle; top-right /
     bottom-left along the anti-diagonal: the half touching the quadrant's top-left corner, then the other).

Motion (14 labels, from the horizontal flow u and vertical flow v separately): the motion boundaries of each
component are its spatial derivatives (a Prewitt 3 x 3 filter applied with scipy.ndimage.convolve, i.e. the
kernel flipped, reflected borders), summed over the clip's flow frames; their magnitude and angle (degrees,
cv2.cartToPolar) give per partition the region of largest summed magnitude (mean magnitude for the rings) and
the dominant direction: the argmax of an 8-bin (45 degree) magnitude-weighted orientation histogram with
linear vote splitting between the two nearest bins (HOG-style). Order:
    u_grid, u_grid_dir, v_grid, v_grid_dir, u_ring, u_ring_dir, v_ring, v_ring_dir,
    u_tri, u_tri_dir, v_tri, v_tri_dir, u_frame, v_frame
where *_frame is the flow frame (1-based) of largest total boundary magnitude. A grid without any motion
gets labels (0, 0) as in the reference (rings and triangles then give 1, 1).

Appearance (13 labels, from the RGB clip): per partition the most diverse region (lowest colour-histogram IoU
across the frames: per channel, sum over 256 bins of the minimum over frames / sum of the maximum, averaged
over the 3 channels) and its dominant colour, then the most stable region (highest IoU) and its dominant
colour; last the clip's dominant colour. The dominant colour is the most frequent exact RGB triple of the
region over all frames (ties: the smallest (b, g, r) code, as np.bincount(...).argmax() in the reference),
binned by the high bit of each channel into 8 labels 1..8 (the reference's table, in BGR terms:
1 = blue, 2 = blue+green, 3 = blue+red, 4 = white-ish, 5 = dark, 6 = green, 7 = red, 8 = red+green). Order:
    grid_div, grid_div_col, grid_con, grid_con_col, ring_div, ring_div_col, ring_con, ring_con_col,
    tri_div, tri_div_col, tri_con, tri_con_col, global_col

Fixed reference defects (`reference=True` restores them):
  - compute_pattern_2_color: the 56 px ring's colour reads `block[: -14:, :, :]` (the first T - 14 *frames* of
    the whole 56 x 56 block, whose zeroed centre adds 2 x 784 black pixels) instead of the bottom 14 rows
    `block[:, -14:]`; the black pixels nearly always win, so that label is almost always 5. Fixed: the ring.
  - compute_motion_global looks at the first 15 flow frames only (the reference loads 16, one of them past the
    clip's last frame); here every given flow frame counts (identical for the T - 1 = 15 flows of a 16-frame
    clip that vidssl gives it).
Floating-point sums are not bit-identical to the reference (float64 here), so exact ties may break differently.
"""
from __future__ import annotations

import functools
import json
import os

import cv2
import numpy as np

from vidssl.io.paths import relative_source

NUM_MOTION, NUM_APPEARANCE = 14, 13
FLOW_BOUND = 20.0  # flow clipped to +-20 px and stored as round((f + 20) * 255 / 40) (the reference's data)
_BINS, _UNIT = 8, 45.0


# ------------------------------------------------------------------------------------------------ partitions
@functools.lru_cache(maxsize=8)
def partitions(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (16, S, S), (4, S, S), (8, S, S) of the grid, ring and triangle regions, in label order."""
    if size % 8 or size < 8:
        raise ValueError(f"statistics labels need a square crop whose side is a multiple of 8 (112 in the paper), "
                         f"got {size} (method.crop_size)")
    S, g, e, h = size, size // 4, size // 8, size // 2
    grid = np.zeros((16, S, S), bool)
    for i in range(4):
        for j in range(4):
            grid[4 * i + j, i * g:(i + 1) * g, j * g:(j + 1) * g] = True
    squares = np.zeros((4, S, S), bool)  # nested squares of side S/4, S/2, 3S/4, S around the centre
    for k in range(4):
        a = (3 - k) * e
        squares[k, a:S - a, a:S - a] = True
    rings = squares.copy()
    rings[1:] &= ~squares[:-1]
    r, c = np.mgrid[0:h, 0:h]
    lower, upper = r >= c, c >= r  # np.tril / np.triu, diagonal included
    anti_in, anti_out = r + c <= h - 1, r + c >= h - 1  # triu / tril of the horizontally flipped quadrant
    tri = np.zeros((8, S, S), bool)
    for k, (top, left, m) in enumerate([(0, 0, lower), (0, 0, upper), (0, h, anti_in), (0, h, anti_out),
                                        (h, 0, anti_in), (h, 0, anti_out), (h, h, lower), (h, h, upper)]):
        tri[k, top:top + h, left:left + h] = m
    for m in (grid, rings, tri):
        m.setflags(write=False)
    return grid, rings, tri


# ------------------------------------------------------------------------------------------------ motion
def motion_boundaries(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame x and y derivatives of one flow component (T, H, W), float32, exactly
    scipy.ndimage.convolve(frame, [[-1, 0, 1]] * 3) and with its transpose (the kernel flipped: left minus
    right, top minus bottom; borders reflected, scipy's 'reflect' = numpy's 'symmetric')."""
    p = np.pad(np.asarray(flow, np.float64), ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    cols = p[:, :-2] + p[:, 1:-1] + p[:, 2:]  # 3-row sums, (T, H, W + 2)
    rows = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]  # 3-column sums, (T, H + 2, W)
    return (cols[:, :, :-2] - cols[:, :, 2:]).astype(np.float32), (rows[:, :-2] - rows[:, 2:]).astype(np.float32)


def orientation_histogram(mag: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """8-bin histogram of angles in degrees, each pixel's magnitude split linearly between its bin and the next
    (the reference's cell_gradient)."""
    mag, ang = np.asarray(mag, np.float64).ravel(), np.asarray(ang, np.float64).ravel()
    lo = (ang / _UNIT).astype(np.int64) % _BINS
    frac = (ang % _UNIT) / _UNIT
    return (np.bincount(lo, mag * (1 - frac), _BINS) + np.bincount((lo + 1) % _BINS, mag * frac, _BINS))


def _component_labels(flow: np.ndarray, reference: bool) -> tuple[list[int], int]:
    """[grid, grid_dir, ring, ring_dir, tri, tri_dir] and the frame label of one flow component."""
    dx, dy = motion_boundaries(flow)
    mag, ang = cv2.cartToPolar(np.ascontiguousarray(dx.sum(0)), np.ascontiguousarray(dy.sum(0)),
                               angleInDegrees=True)
    grid, rings, tri = partitions(flow.shape[-1])
    m = mag.astype(np.float64).ravel()
    labels = []
    for k, masks in enumerate((grid, rings, tri)):
        flat = masks.reshape(len(masks), -1)
        sums = flat @ m
        if k == 1:
            sums = sums / flat.sum(1)  # the rings compare mean magnitudes
        best = int(np.argmax(sums))
        if k == 0 and sums[best] <= 0:
            labels += [0, 0]  # no motion: the reference's grid labels (0, 0)
            continue
        hist = orientation_histogram(mag[masks[best]], ang[masks[best]])
        labels += [best + 1, int(np.argmax(hist)) + 1]
    per_frame = np.sqrt(dx.astype(np.float64) ** 2 + dy.astype(np.float64) ** 2).sum((1, 2))
    if reference:
        per_frame = per_frame[:15]
    return labels, int(np.argmax(per_frame)) + 1


def motion_labels(u: np.ndarray, v: np.ndarray, reference: bool = False) -> np.ndarray:
    """The 14 motion statistics labels (int64) of horizontal / vertical flow `u`, `v` (T, S, S) in pixels."""
    u, v = np.asarray(u, np.float32), np.asarray(v, np.float32)
    if u.ndim != 3 or u.shape != v.shape or u.shape[1] != u.shape[2]:
        raise ValueError(f"motion_labels needs u, v of one shape (T, S, S), got {u.shape} and {v.shape}")
    lu, fu = _component_labels(u, reference)
    lv, fv = _component_labels(v, reference)
    out = [lu[0], lu[1], lv[0], lv[1], lu[2], lu[3], lv[2], lv[3], lu[4], lu[5], lv[4], lv[5], fu, fv]
    return np.array(out, dtype=np.int64)


# ------------------------------------------------------------------------------------------------ appearance
def colour_bin(r, g, b):
    """0..7: the reference's dominant-colour table, = 4 [b < 128] + 2 [r >= 128] + [g >= 128]."""
    return 4 * (np.asarray(b) < 128) + 2 * (np.asarray(r) >= 128) + (np.asarray(g) >= 128)


def dominant_colour(pixels: np.ndarray) -> int:
    """Label 1..8 of the most frequent exact colour of RGB pixels (..., 3) (ties: smallest BGR code)."""
    p = pixels.reshape(-1, 3).astype(np.int64)
    codes = (p[:, 2] << 16) | (p[:, 1] << 8) | p[:, 0]  # np.ravel_multi_index of (b, g, r), as the reference
    values, counts = np.unique(codes, return_counts=True)
    top = int(values[np.argmax(counts)])
    return int(colour_bin(top & 255, (top >> 8) & 255, top >> 16)) + 1


@functools.lru_cache(maxsize=8)
def _label_maps(size: int) -> tuple[tuple[np.ndarray, ...], ...]:
    """Each partition as label maps (S, S) of region ids (-1: none), one region per pixel and map: the first map
    gives every covered pixel its first region, the second the triangles' shared diagonals their second."""
    out = []
    for masks in partitions(size):
        if masks.sum(0).max() > 2:
            raise AssertionError("a pixel in more than two regions")
        first = np.where(masks.any(0), masks.argmax(0), -1)
        rest = masks & (np.arange(len(masks))[:, None, None] != first)
        maps = [first] + ([np.where(rest.any(0), rest.argmax(0), -1)] if rest.any() else [])
        out.append(tuple(maps))
    return tuple(out)


def region_histograms(rgb: np.ndarray, maps: tuple[np.ndarray, ...], regions: int,
                      _keys: np.ndarray | None = None) -> np.ndarray:
    """Per region, frame and channel the 256-bin histogram of an RGB clip (T, S, S, 3): (R, T, 3, 256)."""
    T = rgb.shape[0]
    keys = _frame_channel_keys(rgb) if _keys is None else _keys
    hist = np.zeros(regions * T * 768, np.int64)
    for m in maps:
        sel = m >= 0
        k = keys[:, sel] + (m[sel] * (T * 768)).astype(np.int32)[None, :, None]
        hist += np.bincount(k.ravel(), minlength=regions * T * 768)
    return hist.reshape(regions, T, 3, 256)


def _frame_channel_keys(rgb: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) int32: value + 256 (3 frame + channel), the histogram bin of each sample."""
    offset = ((np.arange(rgb.shape[0])[:, None] * 3 + np.arange(3)) * 256).astype(np.int32)
    return rgb.astype(np.int32) + offset[:, None, None, :]


def histogram_iou(hist: np.ndarray) -> np.ndarray:
    """Colour stability of regions from their histograms (R, T, 3, 256): per channel, sum over bins of the
    minimum over frames / sum of the maximum; the mean over channels (the reference's comput_IoU_all)."""
    iou = hist.min(1).sum(-1) / hist.max(1).sum(-1)  # (R, 3)
    return (iou[:, 0] + iou[:, 1] + iou[:, 2]) / 3.0


def appearance_labels(rgb: np.ndarray, reference: bool = False) -> np.ndarray:
    """The 13 appearance statistics labels (int64) of an RGB uint8 clip (T, S, S, 3)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.shape[1] != rgb.shape[2] or rgb.dtype != np.uint8:
        raise ValueError(f"appearance_labels needs a uint8 RGB clip (T, S, S, 3), got {rgb.dtype} {rgb.shape}")
    T, S = rgb.shape[:2]
    labels, keys = [], _frame_channel_keys(rgb)
    for k, (masks, maps) in enumerate(zip(partitions(S), _label_maps(S))):
        iou = histogram_iou(region_histograms(rgb, maps, len(masks), keys))
        for best in (int(np.argmin(iou)), int(np.argmax(iou))):  # most diverse, then most stable
            pixels = rgb[:, masks[best]]
            if reference and k == 1 and best == 1:  # the reference's misread ring (see the module docstring)
                a, e = S // 4, S // 8
                block = rgb[:, a:S - a, a:S - a].copy()
                block[:, e:-e, e:-e] = 0
                pixels = np.concatenate([block[:, :e].reshape(-1, 3), block[:, e:-e, :e].reshape(-1, 3),
                                         block[:, e:-e, -e:].reshape(-1, 3), block[:-e].reshape(-1, 3)])
            labels += [best + 1, dominant_colour(pixels)]
    labels.append(dominant_colour(rgb))
    return np.array(labels, dtype=np.int64)


# ------------------------------------------------------------------------------------------------ flow
def encode_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Flow in pixels -> uint8: clipped to +-bound, round((f + bound) * 255 / (2 bound)) (dense_flow's storage
    of the reference's TV-L1 data)."""
    q = np.rint((np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound)))
    return q.astype(np.uint8)


def decode_flow(img: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """uint8 -> flow in pixels (float32): img * 2 bound / 255 - bound (the reference's utils/read_clip.py)."""
    return img.astype(np.float32) * np.float32(2 * bound / 255.0) - np.float32(bound)


DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def has_tvl1() -> bool:
    """OpenCV's TV-L1 (the reference's flow) needs opencv-contrib (cv2.optflow)."""
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def flow_estimator(algorithm: str = "auto", dis_preset: str = "medium"):
    """(name, calc): calc(gray_a, gray_b) -> flow (H, W, 2) float32 in pixels (u, v). "tvl1": OpenCV's Dual
    TV-L1 (opencv-contrib); "dis": OpenCV's DIS (Kroeger et al. 2016) at `dis_preset`; "auto": TV-L1 when
    available, else DIS."""
    if algorithm not in ("auto", "tvl1", "dis"):
        raise ValueError(f"flow algorithm must be auto, tvl1 or dis, not {algorithm!r}")
    if algorithm == "tvl1" or (algorithm == "auto" and has_tvl1()):
        if not has_tvl1():
            raise ValueError("flow algorithm 'tvl1' needs opencv-contrib-python (cv2.optflow); use 'dis'")
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return "tvl1", lambda a, b: tvl1.calc(a, b, None)
    if dis_preset not in DIS_PRESETS:
        raise ValueError(f"DIS preset must be one of {', '.join(DIS_PRESETS)}, not {dis_preset!r}")
    dis = cv2.DISOpticalFlow_create(DIS_PRESETS[dis_preset])
    return f"dis_{dis_preset}", lambda a, b: dis.calc(a, b, None)


def clip_flow(frames: np.ndarray, algorithm: str = "dis", dis_preset: str = "medium") -> tuple[np.ndarray, np.ndarray]:
    """Optical flow between consecutive RGB frames (T, H, W, 3) uint8 -> u, v (T - 1, H, W) float32 pixels."""
    _, calc = flow_estimator(algorithm, dis_preset)
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    f = np.stack([calc(a, b) for a, b in zip(gray[:-1], gray[1:])]) if len(gray) > 1 else \
        np.zeros((0, *frames.shape[1:3], 2), np.float32)
    return f[..., 0], f[..., 1]


FLOW_SUFFIX = ".flow"


def flow_dir(source: str, root: str, flow_root: str) -> str:
    """Where `python -m data_prep.flow --root root --out flow_root` puts the flow of `source`:
    FLOW_ROOT/<source relative to root>.flow (vidssl.io.paths.relative_source)."""
    return os.path.join(flow_root, relative_source(source, root) + FLOW_SUFFIX)


def read_flow(flow_dir: str, indices) -> tuple[np.ndarray, np.ndarray]:
    """Decode the stored flow of frames `indices` (flow k: frame k -> k + 1) of one video, as written by
    `python -m data_prep.flow`: `flow_dir/u/%06d.{jpg,png}` and `flow_dir/v/...`, 8 bits, +-20 px.
    Returns u, v float32 (len(indices), H, W) in the pixels of the stored flow. Raises FileNotFoundError."""
    ext = _flow_ext(flow_dir)
    out = []
    for comp in ("u", "v"):
        frames = []
        for k in indices:
            path = os.path.join(flow_dir, comp, f"{int(k):06d}.{ext}")
            img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise FileNotFoundError(f"missing or unreadable flow image {path}")
            frames.append(img)
        out.append(decode_flow(np.stack(frames)))
    return out[0], out[1]


def _flow_ext(flow_dir: str) -> str:
    for ext in ("jpg", "png"):
        if os.path.exists(os.path.join(flow_dir, "u", f"{0:06d}.{ext}")):
            return ext
    raise FileNotFoundError(f"no flow images in {flow_dir}/u (expected 000000.jpg or 000000.png)")


def read_clip_flow(flow_dir: str, indices, boxes, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The stored flow of a clip, matched to the clip as the workers cut it: frames `indices` (T,) whose crop
    boxes `boxes` (T, 4: top, left, h, w in source pixels) were resized to `size` px. Returns u, v
    (T - 1, size, size): the flow leaving each frame but the last (flow k = frame k -> k + 1, so for a clip of
    consecutive frames exactly the motion between its frames; with a frame step > 1, the one-frame motion at
    each sampled frame), cropped with that frame's box, resized bilinearly and rescaled to the clip's pixels.
    Raises FileNotFoundError (no flow) or ValueError (flow that does not fit the video)."""
    meta_path = os.path.join(flow_dir, "meta.json")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"no precomputed flow at {flow_dir} (python -m data_prep.flow)")
    with open(meta_path) as f:
        meta = json.load(f)
    indices = [int(i) for i in indices][:-1]
    boxes = np.asarray(boxes, np.float64)[:len(indices)]
    if indices and max(indices) >= meta["flow_frames"]:
        raise ValueError(f"flow of {meta['flow_frames']} frame pairs at {flow_dir}, frame {max(indices)} asked "
                         f"(flow computed on another version of the video?)")
    src_h, src_w = meta["source_height"], meta["source_width"]
    if len(boxes) and ((boxes[:, 0] + boxes[:, 2]).max() > src_h or (boxes[:, 1] + boxes[:, 3]).max() > src_w):
        raise ValueError(f"crop boxes exceed the {src_w}x{src_h} frames the flow at {flow_dir} was computed on")
    u, v = read_flow(flow_dir, indices)
    if u.shape[1:] != (meta["height"], meta["width"]):
        raise ValueError(f"flow images of {u.shape[2]}x{u.shape[1]} at {flow_dir}, meta.json says "
                         f"{meta['width']}x{meta['height']}")
    sy, sx = meta["height"] / src_h, meta["width"] / src_w
    out_u, out_v = [], []
    for fu, fv, (top, left, h, w) in zip(u, v, boxes):
        y0, y1 = int(round(top * sy)), max(int(round((top + h) * sy)), int(round(top * sy)) + 1)
        x0, x1 = int(round(left * sx)), max(int(round((left + w) * sx)), int(round(left * sx)) + 1)
        out_u.append(cv2.resize(fu[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_LINEAR) * (size / (x1 - x0)))
        out_v.append(cv2.resize(fv[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_LINEAR) * (size / (y1 - y0)))
    empty = np.zeros((0, size, size), np.float32)
    return (np.stack(out_u).astype(np.float32), np.stack(out_v).astype(np.float32)) if out_u else (empty, empty)
