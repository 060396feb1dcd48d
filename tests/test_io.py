import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from vidssl.io import (FrameFolderReader, VideoDecodeError, VideoReader, available_backends, read_davis_mask,
                       write_davis_mask)


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


def test_real_davis2016_masks(shared_data):
    m = read_davis_mask(os.path.join(shared_data, "davis2016", "Annotations", "480p", "blackswan", "00000.png"))
    assert m.shape == (480, 854) and set(np.unique(m)) == {0, 1}


def test_auto_avoids_estimated_frame_counts(tmp_path, sample_videos):
    from vidssl.io.video import _resolve_backend

    assert VideoReader(sample_videos[0]).backend == available_backends()[0]
    if "opencv" in available_backends() and len(available_backends()) > 1:
        assert _resolve_backend("auto", "cpu", "clip.webm") != "opencv"
    with pytest.raises(RuntimeError, match="GPU decoding|cannot decode"):
        _resolve_backend("pyav", "cuda", "clip.mp4")  # no CUDA here, or PyAV cannot decode on a GPU
