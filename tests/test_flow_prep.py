"""python -m data_prep.flow: sharding, resume, failures, and the 8-bit storage read back by read_flow /
read_clip_flow; the sts worker transform on precomputed flow."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from vidssl.data.statistics import decode_flow, encode_flow, flow_dir, flow_estimator, read_clip_flow, read_flow
from vidssl.io import VideoDecodeError
from vidssl.prep.flow import main as flow_main

H, W, N = 48, 64, 4


def _texture(seed):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (H + 16, W + 16, 3)).astype(np.uint8), (5, 5), 1.5)


def _frames(seed):
    """N frames of a smooth texture moving 2 px right and 1 px down per frame."""
    tex = _texture(seed)
    return [np.ascontiguousarray(tex[8 - t:8 - t + H, 8 - 2 * t:8 - 2 * t + W]) for t in range(N)]


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    for k in range(3):  # frame folders (lossless PNG: the flow can be recomputed from the same pixels)
        d = root / "cls" / f"v{k}"
        d.mkdir(parents=True)
        for t, f in enumerate(_frames(k)):
            cv2.imwrite(str(d / f"{t:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (root / "bad.mp4").write_bytes(b"not a video at all")
    return root


def _run(root, out, *extra):
    return flow_main(["--root", str(root), "--out", str(out), "--algorithm", "dis", "--short-side", "0", *extra])


def test_shards_cover_each_video_once_resume_skips_and_failures_are_listed(videos, tmp_path, capsys):
    out = tmp_path / "flow"
    assert _run(videos, out, "--shard", "0", "--num-shards", "2", "--format", "png") == 1  # bad.mp4 is shard 0
    assert _run(videos, out, "--shard", "1", "--num-shards", "2", "--format", "png") == 0
    done = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.flow"))
    assert done == ["cls/v0.flow", "cls/v1.flow", "cls/v2.flow"]
    failed = (out / "failed_0of2.tsv").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith(str(videos / "bad.mp4") + "\t")
    assert not (out / "failed_1of2.tsv").exists()
    meta = json.loads((out / "cls/v0.flow/meta.json").read_text())
    assert meta["flow_frames"] == N - 1 and (meta["height"], meta["width"]) == (H, W)
    assert sorted(os.listdir(out / "cls/v0.flow/u")) == [f"{k:06d}.png" for k in range(N - 1)]
    stamp = os.path.getmtime(out / "cls/v1.flow/meta.json")
    capsys.readouterr()
    _run(videos, out, "--format", "png")  # all shards at once: only the bad video is tried again
    assert "0 written, 3 already done, 1 failed" in capsys.readouterr().out
    assert os.path.getmtime(out / "cls/v1.flow/meta.json") == stamp
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("fmt,tol", [("png", 20 / 255 + 1e-4), ("jpg", 0.5)])
def test_read_flow_round_trips_within_8_bit_quantisation(videos, tmp_path, fmt, tol):
    out = tmp_path / "flow"
    _run(videos, out, "--format", fmt)
    frames = _frames(1)
    _, calc = flow_estimator("dis", "medium")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    expected = np.clip(np.stack([calc(a, b) for a, b in zip(gray[:-1], gray[1:])]), -20, 20)
    d = flow_dir(str(videos / "cls" / "v1"), str(videos), str(out))
    u, v = read_flow(d, [2, 0])
    assert u.shape == (2, H, W)
    assert np.abs(u - expected[[2, 0], ..., 0]).max() <= tol and np.abs(v - expected[[2, 0], ..., 1]).max() <= tol
    if fmt == "png":  # lossless storage: exactly the quantised values
        assert np.array_equal(u, decode_flow(encode_flow(expected[[2, 0], ..., 0])))
    assert abs(float(np.median(u[:, 8:-8, 8:-8])) - 2) < 0.5 and abs(float(np.median(v[:, 8:-8, 8:-8])) - 1) < 0.5

    # matched to a clip: whole frames (no crop) at half size -> the flow halves; a crop of the right half
    boxes = np.array([[0, 0, H, W]] * 3)
    cu, cv = read_clip_flow(d, [0, 1, 2], boxes, 32)
    assert cu.shape == (2, 32, 32)
    assert abs(float(np.median(cu)) - 2 * 32 / W) < 0.3 and abs(float(np.median(cv)) - 1 * 32 / H) < 0.3
    boxes = np.array([[0, W // 2, H, W // 2]] * 2)
    ru, _ = read_clip_flow(d, [1, 2], boxes, W // 2)
    right = read_flow(d, [1])[0][0][:, W // 2:]  # (H, W/2) resized to (W/2, W/2): u keeps its scale
    assert np.allclose(ru[0], cv2.resize(right, (W // 2, W // 2)), atol=1e-4)
    with pytest.raises(ValueError, match="exceed"):
        read_clip_flow(d, [0, 1], np.array([[0, 0, H + 10, W]] * 2), 32)
    with pytest.raises(ValueError, match="frame pairs"):
        read_clip_flow(d, [3, 4], boxes, 32)


def test_sts_transform_uses_precomputed_flow_and_skips_videos_without(videos, tmp_path):
    from vidssl.methods.sts import StatisticsTransform

    out = tmp_path / "flow"
    _run(videos, out, "--format", "png")
    clip = torch.from_numpy(np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in _frames(0)]))
    sample = {"clip": clip, "clip_index": torch.arange(N), "clip_box": torch.tensor([[0, 0, H, W]] * N),
              "path": str(videos / "cls" / "v0")}
    t = StatisticsTransform("clip", 32, str(out), str(videos), flip=False)
    s = t(dict(sample), torch.Generator().manual_seed(0))
    assert s["motion_label"].shape == (14,) and s["appearance_label"].shape == (13,)
    assert s["motion_label"].dtype == torch.int64
    with pytest.raises(VideoDecodeError, match="precomputed flow"):
        t({**sample, "path": str(videos / "cls" / "missing")}, torch.Generator().manual_seed(0))
    # the flip mirrors the clip; a u field mirrored is negated (the reference forgets to)
    flips = [StatisticsTransform("clip", 32, str(out), str(videos), flip=True)(dict(sample),
                                                                               torch.Generator().manual_seed(k))
             for k in range(8)]
    assert any(torch.equal(f["clip"], clip.flip(2)) for f in flips)
    assert any(torch.equal(f["clip"], clip) for f in flips)
