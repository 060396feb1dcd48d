import os

import numpy as np
import pytest
import torch
from PIL import Image

from vidssl.io import (
    FrameFolderReader,
    VideoDecodeError,
    VideoReader,
    available_backends,
    read_davis_mask,
    write_davis_mask,
)


@pytest.mark.parametrize("backend", available_backends()[1:])
def test_backends_agree_frame_exact(sample_videos, backend):
    ref_backend = available_backends()[0]
    for path in sample_videos:
        with VideoReader(path, backend=ref_backend) as ref, VideoReader(path, backend=backend) as other:
            assert ref.num_frames == other.num_frames
            idx = [0, 1, ref.num_frames // 2, ref.num_frames // 2 + 3, ref.num_frames - 1]
            a, b = ref.get_frames(idx), other.get_frames(idx)
            assert a.dtype == torch.uint8 and a.shape[0] == 5 and a.shape[-1] == 3
            assert torch.equal(a, b), f"{backend} disagrees with {ref_backend} on {path}"


def test_get_frames_order_and_repeats(sample_videos):
    with VideoReader(sample_videos[0]) as v:
        a = v.get_frames([5, 2, 5])
        b = v.get_frames([2, 5])
        assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0]) and torch.equal(a[2], b[1])
        assert not torch.equal(b[0], b[1])
        with pytest.raises(IndexError):
            v.get_frames([v.num_frames])


def test_corrupt_and_truncated_files_name_the_file(tmp_path, sample_videos):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    for backend in available_backends():
        with pytest.raises(VideoDecodeError) as e:
            VideoReader(bad, backend=backend).get_frames([0])
        assert "garbage.mp4" in str(e.value)
    with pytest.raises(VideoDecodeError, match="no such file"):
        VideoReader(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="unknown video backend"):
        VideoReader(sample_videos[0], backend="ffmpeg-magic")


def test_frame_folder(tmp_path):
    for i in (10, 2, 1):
        Image.fromarray(np.full((4, 6, 3), i, np.uint8)).save(tmp_path / f"{i:05d}.png")
    r = FrameFolderReader(tmp_path)
    assert r.num_frames == 3
    assert r.get_frames([0, 2])[:, 0, 0, 0].tolist() == [1, 10]


def test_davis_masks_palette_and_binary(tmp_path):
    ids = np.array([[0, 1, 2], [255, 2, 0]], np.uint8)
    write_davis_mask(str(tmp_path / "p.png"), ids)
    img = Image.open(tmp_path / "p.png")
    assert img.mode == "P" and img.getpalette()[3:6] == [128, 0, 0]
    assert np.array_equal(read_davis_mask(str(tmp_path / "p.png")), ids)
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), mode="L").save(tmp_path / "b.png")
    assert np.array_equal(read_davis_mask(str(tmp_path / "b.png")), [[0, 1], [1, 0]])


def _png_bytes(image: np.ndarray, filters: list[int], color_type: int = 3, bit_depth: int = 8) -> bytes:
    """A PNG of `image` (H, W) uint8 whose row y is written with PNG filter type filters[y], built by hand
    from the PNG specification (forward filters, zlib, chunks with CRCs)."""
    import struct
    import zlib

    img = image.astype(np.int64)
    rows = []
    for y, kind in enumerate(filters):
        x = img[y]
        left = np.r_[0, x[:-1]]
        up = img[y - 1] if y else np.zeros_like(x)
        up_left = np.r_[0, up[:-1]]
        if kind == 3:
            pred = (left + up) // 2
        elif kind == 4:  # Paeth: the one of left, up, up-left closest to left + up - up-left
            p = left + up - up_left
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        else:
            pred = [0 * x, left, up][kind]
        rows.append(bytes([kind]) + ((x - pred) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", image.shape[1], image.shape[0], bit_depth, color_type, 0, 0, 0)
    palette = chunk(b"PLTE", bytes(range(256)) * 3) if color_type == 3 else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + palette
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("filters", [[0] * 9, [1] * 9, [2] * 9, [0, 2, 2, 1, 2, 0, 1, 1, 2], [2, 2, 1, 0, 3, 4, 2, 4, 3]])
def test_mask_png_fast_path_matches_pillow(tmp_path, filters):
    from vidssl.io.png import decode_indexed_png

    image = np.random.default_rng(0).integers(0, 256, (9, 13)).astype(np.uint8)
    image[3:6] = 7  # long runs, as in masks
    for color_type in (3, 0):  # palette, greyscale
        path = tmp_path / f"m{color_type}.png"
        path.write_bytes(_png_bytes(image, filters, color_type))
        assert np.array_equal(np.array(Image.open(path)), image)  # the hand-built file is a valid PNG
        fast = decode_indexed_png(path.read_bytes())
        if max(filters) > 2:
            assert fast is None  # Average and Paeth rows are left to Pillow
        else:
            assert np.array_equal(fast[0], image) and fast[1] == (color_type == 3)
    assert np.array_equal(read_davis_mask(str(tmp_path / "m3.png")), image)  # either path


def test_mask_png_fast_path_declines_what_it_does_not_handle(tmp_path):
    from vidssl.io.png import decode_indexed_png

    image = np.array([[0, 1], [1, 0]], np.uint8)
    Image.fromarray(image * 255).convert("1").save(tmp_path / "bits.png")  # 1-bit
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    (tmp_path / "cut.png").write_bytes(_png_bytes(image, [0, 0])[:-30])  # IDAT cut short
    for name in ("bits.png", "rgb.png", "cut.png"):
        assert decode_indexed_png((tmp_path / name).read_bytes()) is None
    assert np.array_equal(read_davis_mask(str(tmp_path / "bits.png")), image)
    with pytest.raises(VideoDecodeError, match="cut.png"):
        read_davis_mask(str(tmp_path / "cut.png"))


def test_real_davis2016_masks(shared_data):
    m = read_davis_mask(os.path.join(shared_data, "davis2016", "Annotations", "480p", "blackswan", "00000.png"))
    assert m.shape == (480, 854) and set(np.unique(m)) == {0, 1}
    from vidssl.io.png import decode_indexed_png

    folder = os.path.join(shared_data, "davis2016", "Annotations", "480p", "dog")
    for name in sorted(os.listdir(folder))[::10]:  # greyscale, libpng's adaptive filters: both paths meet
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            fast = decode_indexed_png(f.read())
        assert fast is None or np.array_equal(fast[0], np.array(Image.open(path)))


def test_auto_avoids_estimated_frame_counts(tmp_path, sample_videos):
    from vidssl.io.video import _resolve_backend

    assert VideoReader(sample_videos[0]).backend == available_backends()[0]
    if "opencv" in available_backends() and len(available_backends()) > 1:
        assert _resolve_backend("auto", "cpu", "clip.webm") != "opencv"
    with pytest.raises(RuntimeError, match="GPU decoding|cannot decode"):
        _resolve_backend("pyav", "cuda", "clip.mp4")  # no CUDA here, or PyAV cannot decode on a GPU
