"""read_motion_vectors on synthetic videos (a textured square moving right 2 px a frame) and data_prep.reencode."""
import os

import cv2
import numpy as np
import pytest

from vidssl.io import VideoDecodeError, motion_vectors, read_motion_vectors
from vidssl.io.motion_vectors import MV_DTYPE, Rasterizer, rasterize_motion_vectors
from vidssl.prep.reencode import main as reencode_main

H, W, N, GOP = 96, 128, 20, 8


def square_frames(n=N):
    rng = np.random.default_rng(0)
    bg = (rng.random((H, W, 3)) * 60 + 100).astype(np.uint8)
    tex = cv2.resize((rng.random((8, 8, 3)) * 255).astype(np.uint8), (32, 32), interpolation=cv2.INTER_LINEAR)
    for t in range(n):
        img = bg.copy()
        img[32:64, 20 + 2 * t:52 + 2 * t] = tex
        yield img


def write(path, codec, gop=GOP, options=None, pix_fmt="yuv420p"):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = W, H, pix_fmt
        s.codec_context.gop_size, s.codec_context.max_b_frames = gop, 0
        if options:
            s.codec_context.options = options
        for img in square_frames():
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)))
        c.mux(s.encode(None))
    return str(path)


CODECS = {"mpeg4": ("mpeg4", {"flags": "+qscale", "global_quality": "236"}),
          "h264": ("libx264", {"bf": "0", "refs": "1", "g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0"})}


@pytest.fixture(scope="module", params=sorted(CODECS))
def square_video(request, tmp_path_factory):
    codec, opts = CODECS[request.param]
    return write(tmp_path_factory.mktemp("mv") / f"square_{request.param}.mp4", codec, options=opts)


def test_square_moving_right_reads_plus_two(square_video):
    assert read_motion_vectors(square_video).shape == (N, H // 4, W // 4, 2)  # default: 4 px cells
    mv, types = read_motion_vectors(square_video, cell=1, with_types=True)
    assert mv.shape == (N, H, W, 2) and mv.dtype == np.float32
    assert types == ["I" if t % GOP == 0 else "P" for t in range(N)]
    for t in range(N):
        inside = mv[t, 36:60, 24 + 2 * t:48 + 2 * t].reshape(-1, 2)
        if types[t] == "I":
            assert not mv[t].any()
        else:
            assert np.median(inside, 0) == pytest.approx([2.0, 0.0], abs=0.25), t


def test_indices_seek_and_cells(square_video):
    full = read_motion_vectors(square_video, cell=1)
    part = read_motion_vectors(square_video, [13, 5, 13], cell=1)
    np.testing.assert_array_equal(part, full[[13, 5, 13]])
    coarse = read_motion_vectors(square_video, [5])
    assert coarse.shape == (1, H // 4, W // 4, 2)
    np.testing.assert_array_equal(coarse[0], full[5, ::4, ::4])
    np.testing.assert_array_equal(read_motion_vectors(square_video, [5], cell=2)[0], full[5, ::2, ::2])
    with pytest.raises(IndexError):
        read_motion_vectors(square_video, [N])
    with pytest.raises(ValueError):
        read_motion_vectors(square_video, [1], cell=3)


def test_files_without_vectors_raise_naming_the_file(tmp_path):
    mjpeg = write(tmp_path / "intra.avi", "mjpeg", pix_fmt="yuvj420p")
    all_intra = write(tmp_path / "gop1.mp4", "mpeg4", gop=1)
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "00000.jpg"), np.zeros((8, 8, 3), np.uint8))
    for path in (mjpeg, all_intra, str(folder), str(tmp_path / "missing.mp4")):
        with pytest.raises(VideoDecodeError) as e:
            read_motion_vectors(path)
        assert e.value.path == str(path)


def test_skipping_deblocking_and_idct_leaves_the_vectors(square_video, monkeypatch):
    fast = read_motion_vectors(square_video, cell=1)
    monkeypatch.setattr(motion_vectors, "DECODER_OPTIONS", {"flags2": "+export_mvs"})
    np.testing.assert_array_equal(read_motion_vectors(square_video, cell=1), fast)


def test_rasterize_by_hand():
    dt = MV_DTYPE
    mvs = np.array([
        (-1, 16, 16, 0, 0, 8, 8, 0, -8, 4, 4),     # block [0,16)x[0,16) from the past: content moved (+2, -1)
        (1, 16, 16, 0, 0, 8, 8, 0, 12, 0, 4),      # same block from the future: ignored (past wins)
        (1, 8, 8, 0, 0, 20, 4, 0, 6, -2, 2),        # block x [16,24), y [0,8) future only: (+3, -1)
    ], dtype=dt)
    out = rasterize_motion_vectors(mvs, 18, 26, cell=1)
    want = np.zeros((18, 26, 2), np.float32)
    for y in range(16):
        for x in range(16):
            want[y, x] = (2.0, -1.0)
    for y in range(8):
        for x in range(16, 24):
            want[y, x] = (3.0, -1.0)
    np.testing.assert_array_equal(out, want)


def naive_raster(mvs, height, width):
    """Per pixel, record by record: future references first, then past ones over them."""
    out = np.zeros((height, width, 2), np.float32)
    for past in (False, True):
        for m in mvs:
            if (m["source"] < 0) != past:
                continue
            d = np.array([m["motion_x"], m["motion_y"]], np.float32) / max(int(m["motion_scale"]), 1)
            x0, y0 = int(m["dst_x"]) - m["w"] // 2, int(m["dst_y"]) - m["h"] // 2
            out[max(y0, 0):y0 + m["h"], max(x0, 0):x0 + m["w"]] = -d if past else d
    return out


def partitioned_frame(rng, height, width, small_blocks=False):
    """Records like FFmpeg's exporter: per macroblock one partition (16x16, 16x8, 8x16, 8x8, or with
    `small_blocks` 4x8 / 4x4) shared by the directions it uses (past, future or both), some macroblocks intra."""
    shapes = [(16, 16), (16, 8), (8, 16), (8, 8)] + ([(4, 8), (4, 4)] if small_blocks else [])
    rows = []
    for my in range(-(-height // 16)):
        for mx in range(-(-width // 16)):
            use = rng.integers(0, 4)  # 0 intra, 1 past, 2 future, 3 both
            if use == 0:
                continue
            bw, bh = shapes[rng.integers(len(shapes))]
            for y in range(my * 16, my * 16 + 16, bh):
                for x in range(mx * 16, mx * 16 + 16, bw):
                    for source in ([-1] if use == 1 else [1] if use == 2 else [1, -1]):
                        mx_, my_, scale = rng.integers(-40, 40), rng.integers(-40, 40), [1, 2, 4][rng.integers(3)]
                        rows.append((source, bw, bh, 0, 0, x + bw // 2, y + bh // 2, 0, mx_, my_, scale))
    return np.array(rows, dtype=MV_DTYPE)


def test_rasterizer_matches_a_per_pixel_loop():
    rng = np.random.default_rng(0)
    height, width = 40, 56  # not multiples of 16: edge macroblocks reach past the frame
    frames = [partitioned_frame(rng, height, width, small_blocks=t == 2) for t in range(4)]
    want = np.stack([naive_raster(f, height, width) for f in frames])
    raster = Rasterizer(len(frames), height, width)
    raster.add(np.concatenate(frames[:3]), np.repeat(np.arange(3), [len(f) for f in frames[:3]]))
    raster.add(frames[3], np.full(len(frames[3]), 3))  # frames come in several passes
    np.testing.assert_array_equal(raster.result(1), want)
    np.testing.assert_array_equal(raster.result(4), want[:, ::4, ::4])
    for t, f in enumerate(frames):
        np.testing.assert_array_equal(rasterize_motion_vectors(f, height, width, cell=2), want[t, ::2, ::2])


def test_reencode_gives_the_coviar_convention(tmp_path):
    src = tmp_path / "in" / "cls"
    src.mkdir(parents=True)
    write(src / "a.mp4", "libx264", gop=250, options={"bf": "2", "refs": "3"})  # B-frames, multi-reference
    assert "B" in read_motion_vectors(str(src / "a.mp4"), with_types=True)[1]
    for codec in ("mpeg4", "h264"):
        out = tmp_path / codec
        args = ["--root", str(tmp_path / "in"), "--out", str(out), "--codec", codec, "--gop", "6"]
        assert reencode_main(args)["done"] == 1
        assert reencode_main(args)["skipped"] == 1  # resumable: finished videos are skipped
        mv, types = read_motion_vectors(str(out / "cls" / "a.mp4"), cell=1, with_types=True)
        assert types == ["I" if t % 6 == 0 else "P" for t in range(N)]
        assert np.median(mv[7, 36:60, 38:62].reshape(-1, 2), 0) == pytest.approx([2.0, 0.0], abs=0.25)
    assert not os.path.exists(tmp_path / "mpeg4" / "failed_0of1.tsv")
