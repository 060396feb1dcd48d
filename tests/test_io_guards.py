"""Inputs that used to be misread: a string or fractional frame index, a truncated JPEG in a frame folder (libjpeg
only warns and fills grey), random bytes given as a checkpoint (not a pickle: not "code")."""
import os

import cv2
import numpy as np
import pytest
import torch

from vidssl.io import FrameFolderReader, VideoDecodeError, VideoReader, read_image
from vidssl.io.checkpoint import load_checkpoint


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "clip"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(d / f"{i:05d}.jpg"), rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
    return d


@pytest.mark.parametrize("indices, message", [("12", "got the string '12'"), ([1.7], "must be integers")])
def test_indices_that_are_no_frame_numbers_are_refused(folder, sample_videos, indices, message):
    with pytest.raises(TypeError, match=message):
        FrameFolderReader(folder).get_frames(indices)
    with VideoReader(sample_videos[2]) as reader, pytest.raises(TypeError, match=message):
        reader.get_frames(indices)
    assert FrameFolderReader(folder).get_frames(np.array([0, 2])).shape == (2, 32, 48, 3)


def test_a_truncated_jpeg_is_an_error_naming_the_folder_and_frame(folder):
    path = folder / "00001.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VideoDecodeError, match="truncated JPEG"):
        read_image(str(path))
    with pytest.raises(VideoDecodeError) as e:
        FrameFolderReader(folder).get_frames([0, 1])
    assert e.value.path == str(folder) and "00001.jpg: truncated JPEG" in e.value.reason
    assert read_image(str(folder / "00000.jpg")).shape == (32, 48, 3)


def test_random_bytes_are_no_checkpoint_and_code_is_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_checkpoint(str(junk))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo should-not-run",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, evil)
    with pytest.raises(ValueError, match="would run code"):
        load_checkpoint(str(evil))
