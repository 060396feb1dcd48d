"""The data contract: named requests sampled together from one open video, placements, labels, collate."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import vidssl.data.datasets as datasets
from vidssl.data import ClipRequest, DataSpec, FrameCrop, VideoDataset, collate


def frame_folder(path, n, size=(24, 40)):
    """Frame k is a uniform image of value k: any crop or resize of it still says which frame it was."""
    path.mkdir()
    for k in range(n):
        Image.fromarray(np.full((*size, 3), k, np.uint8)).save(path / f"{k:05d}.png")
    return str(path)


def frame_ids(clip: torch.Tensor) -> list:
    return clip.flatten(-3).float().mean(-1).round().long().tolist()


def test_requests_read_the_frames_their_indices_name(tmp_path):
    video = frame_folder(tmp_path / "v", 40)
    spec = DataSpec([ClipRequest("clip", 4, 16, "per_frame", frame_skip=2),
                     ClipRequest("rho", 3, 8, "square", frame_skip=1, count=2),
                     ClipRequest("frame", 1, 8, "resize", frame_skip=1)])
    sample = VideoDataset([video], spec)[(0, 123)]
    assert sample["clip"].shape == (4, 16, 16, 3) and sample["clip"].dtype == torch.uint8
    assert sample["rho"].shape == (2, 3, 8, 8, 3) and sample["rho_index"].shape == (2, 3)
    assert sample["frame"].shape == (1, 8, 8, 3)
    for name in ("clip", "rho", "frame"):
        assert frame_ids(sample[name]) == sample[f"{name}_index"].tolist()
    idx = sample["clip_index"].tolist()
    assert [b - a for a, b in zip(idx, idx[1:])] == [2, 2, 2]
    assert sample["video"] == 0 and sample["skipped"] == [] and sample["path"] == video
    assert sample["clip_box"].shape == (4, 4) and sample["rho_box"].shape == (2, 3, 4)
    assert sample["rho_box"][0, :, 2:].tolist() == [[24, 24]] * 3  # "square": the largest square of 24 x 40


def test_seeded_items_are_reproducible_and_differ_by_seed(tmp_path):
    ds = VideoDataset([frame_folder(tmp_path / "v", 60)], DataSpec([ClipRequest("c", 3, 8, frame_skip=1, count=3)]))
    a, b, c = ds[(0, 5)], ds[(0, 5)], ds[(0, 6)]
    assert torch.equal(a["c"], b["c"]) and torch.equal(a["c_index"], b["c_index"])
    assert not torch.equal(a["c_index"], c["c_index"])


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 1.0])
def test_overlap_placement_shares_the_labelled_fraction(tmp_path, overlap):
    video = frame_folder(tmp_path / "v", 50)
    choices = (1.0, 0.5, 0.25, 0.0)
    spec = DataSpec([ClipRequest("a", 8, 8, frame_skip=2),
                     ClipRequest("b", 8, 8, placement="overlap", anchor="a", overlap_choices=choices)])
    ds = VideoDataset([video], spec)
    seen = 0
    for seed in range(40):
        s = ds[(0, seed)]
        if choices[s["b_overlap"]] != overlap:
            continue
        seen += 1
        shared = set(s["a_index"].tolist()) & set(s["b_index"].tolist())
        assert len(shared) == round(overlap * 8)
        assert frame_ids(s["b"]) == s["b_index"].tolist()
    assert seen > 0


def test_gap_same_and_rate_labels(tmp_path):
    video = frame_folder(tmp_path / "v", 80)
    spec = DataSpec([ClipRequest("a", 4, 8, frame_skip=1, rate_choices=(1, 2, 4)),
                     ClipRequest("g", 4, 8, placement="gap", anchor="a", gap=2),
                     ClipRequest("s", 2, 8, placement="same", anchor="a")])
    for seed in range(10):
        s = VideoDataset([video], spec)[(0, seed)]
        rate = (1, 2, 4)[s["a_rate"]]
        a, g = s["a_index"].tolist(), s["g_index"].tolist()
        assert [y - x for x, y in zip(a, a[1:])] == [rate] * 3
        assert g[0] == a[-1] + 3 * rate and [y - x for x, y in zip(g, g[1:])] == [rate] * 3  # placed: anchor's step
        assert s["s_index"].tolist() == a[:2]


def test_video_too_short_for_the_plan_is_skipped_and_named(tmp_path):
    short, long = frame_folder(tmp_path / "short", 6), frame_folder(tmp_path / "long", 40)
    spec = DataSpec([ClipRequest("a", 4, 8, frame_skip=1), ClipRequest("b", 4, 8, placement="gap", anchor="a", gap=3)])
    s = VideoDataset([short, long], spec)[(0, 1)]
    assert s["video"] == 1 and len(s["skipped"]) == 1
    assert s["skipped"][0].startswith(short) and "too short for the clip plan" in s["skipped"][0]


def test_all_requests_share_one_open_reader(tmp_path, monkeypatch):
    video = frame_folder(tmp_path / "v", 30)
    opened = []
    real = datasets.open_video
    monkeypatch.setattr(datasets, "open_video", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    spec = DataSpec([ClipRequest("a", 3, 8, frame_skip=1, count=3), ClipRequest("b", 2, 8, placement="same", anchor="a")])
    VideoDataset([video], spec)[(0, 0)]
    assert opened == [video]


def test_transform_runs_in_the_worker_with_its_own_generator(tmp_path):
    def label_parity(sample, generator):
        return {**sample, "parity": int(sample["a_index"][0]) % 2, "noise": torch.rand(2, generator=generator)}

    ds = VideoDataset([frame_folder(tmp_path / "v", 30)], DataSpec([ClipRequest("a", 2, 8, frame_skip=1)], label_parity))
    s = ds[(0, 3)]
    assert s["parity"] == s["a_index"][0] % 2 and torch.equal(s["noise"], ds[(0, 3)]["noise"])


def test_collate_stacks_tensors_and_numbers_and_joins_skipped():
    samples = [{"x": torch.ones(2, 3), "label": 1, "w": 0.5, "skipped": ["a\tbad"], "video": 0, "name": "p"},
               {"x": torch.zeros(2, 3), "label": 4, "w": 1.5, "skipped": [], "video": 3, "name": "q"}]
    b = collate(samples)
    assert b["x"].shape == (2, 2, 3) and b["label"].tolist() == [1, 4] and b["w"].dtype == torch.float32
    assert b["skipped"] == ["a\tbad"] and b["video"].tolist() == [0, 3] and b["name"] == ["p", "q"]


def test_crop_policies():
    clip = torch.arange(2 * 30 * 50 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(2, 30, 50, 3)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    square = FrameCrop(10, (0.5, 1.0), (1, 1), "square")
    boxes = square.boxes(2, 30, 50, g())
    assert boxes[:, 2:].tolist() == [[30, 30]] * 2 and boxes[0, 0] == 0 and 0 <= boxes[0, 1] <= 20
    per_clip = FrameCrop(10, (0.3, 0.6), (0.8, 1.2), "per_clip").boxes(5, 30, 50, g())
    assert (per_clip == per_clip[0]).all()
    per_frame = FrameCrop(10, (0.3, 0.6), (0.8, 1.2), "per_frame").boxes(5, 30, 50, g())
    assert len({tuple(b) for b in per_frame.tolist()}) > 1
    assert FrameCrop(12, None)(clip, g()).shape == (2, 12, 12, 3)


def test_bad_requests_are_refused_with_the_setting_named():
    with pytest.raises(ValueError, match="length must be >= 1"):
        ClipRequest("clip", 0)
    with pytest.raises(ValueError, match="crop must be one of"):
        ClipRequest("clip", 2, crop="random")
    with pytest.raises(ValueError, match="needs an anchor"):
        ClipRequest("b", 2, placement="overlap", overlap_choices=(0.5,))
    with pytest.raises(ValueError, match="earlier request"):
        DataSpec([ClipRequest("b", 2, placement="same", anchor="a"), ClipRequest("a", 2)])


def test_span_overlap_rule_is_cstps_shift_and_rates_fit_the_video(tmp_path):
    from vidssl.data.datasets import overlap_shift

    req = ClipRequest("b", 16, 8, placement="overlap", anchor="a", overlap_choices=(1.0, 0.8, 0.6, 0.4, 0.2),
                      overlap_rule="span")
    # CSTP: start_2 = start_1 -+ int((1 - rate) * (16 - 1) * pace); 0.2 * 15 must give 3, not float's 2
    assert [overlap_shift(req, r, 1) for r in req.overlap_choices] == [0, 3, 6, 9, 12]
    assert [overlap_shift(req, r, 2) for r in req.overlap_choices] == [0, 6, 12, 18, 24]
    frames = [overlap_shift(dataclasses.replace(req, overlap_rule="frames"), r, 1) for r in req.overlap_choices]
    assert frames == [0, 3, 6, 10, 13]  # the default rule: 16, 13, 10, 6, 3 shared frames
    video = frame_folder(tmp_path / "v", 40)  # 40 frames: pace 1 and 2 fit a 16-frame clip, 4 and 8 do not
    spec = DataSpec([ClipRequest("a", 16, 8, frame_skip=1, rate_choices=(1, 2, 4, 8))])
    assert {VideoDataset([video], spec)[(0, s)]["a_rate"] for s in range(30)} == {0, 1}


def test_crop_as_cuts_the_same_region(tmp_path):
    video = frame_folder(tmp_path / "v", 30, size=(24, 60))
    spec = DataSpec([ClipRequest("a", 4, 8, "square", frame_skip=1),
                     ClipRequest("b", 4, 8, "square", placement="overlap", anchor="a", overlap_choices=(0.5,),
                                 crop_as="a")])
    offsets = set()
    for seed in range(8):
        s = VideoDataset([video], spec)[(0, seed)]
        assert torch.equal(s["a_box"], s["b_box"])
        offsets.add(int(s["a_box"][0, 1]))
    assert len(offsets) > 1  # still a random square, shared by both
    with pytest.raises(ValueError, match="crop_as 'c' must be an earlier request"):
        DataSpec([ClipRequest("a", 4, 8), ClipRequest("b", 4, 8, crop_as="c")])
