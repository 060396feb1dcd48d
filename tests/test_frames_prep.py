import os
import shutil

import cv2

from vidssl.data.datasets import discover_sources
from vidssl.io import open_video
from vidssl.prep.frames import main as frames_main


def test_videos_become_frame_folders_that_training_finds(tmp_path, sample_videos, capsys):
    src = tmp_path / "videos" / "a"
    src.mkdir(parents=True)
    shutil.copy(sample_videos[2], src / "clip.mp4")
    (src / "broken.mp4").write_text("not a video")
    out = tmp_path / "frames"
    args = ["--root", str(tmp_path / "videos"), "--out", str(out), "--short-side", "64"]
    assert frames_main(args) == 1  # one video failed: listed, the others done
    folder = out / "a" / "clip.mp4"
    with open_video(sample_videos[2]) as r:
        n = r.num_frames
    files = sorted(os.listdir(folder))
    assert files == [f"{k:05d}.jpg" for k in range(n)]
    assert min(cv2.imread(str(folder / files[0])).shape[:2]) == 64
    assert "broken.mp4" in (out / "failed_0of1.tsv").read_text()
    assert discover_sources(str(out)) == [str(folder)]
    capsys.readouterr()
    frames_main(args)
    assert "0 written, 1 already done" in capsys.readouterr().out  # resumable
