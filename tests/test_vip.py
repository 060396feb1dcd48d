import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from vidssl.eval.tasks.vip import CLASSES, iou_from_confusion, score_results, write_csvs

# colours with distinct Lab directions (the pixel encoder's features): black, red, green, blue
COLOURS = {0: (0, 0, 0), 2: (255, 0, 0), 13: (0, 255, 0), 4: (0, 0, 255)}


def save_ids(path, ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(ids, np.uint8), mode="L").save(path)


def make_vip(root, videos=("v1", "v2"), n_frames=5, annotated=(0, 2, 4), size=(32, 48), gt_scale=(1, 2)):
    """A tiny VIP_Fine layout: static videos of 8-px-aligned coloured blocks (hair, face, upper-clothes),
    annotations every 2nd frame; video i's annotations are 1/gt_scale[i] of the frame size."""
    H, W = size
    ids = np.zeros((H, W), np.uint8)
    ids[8:16, 16:32] = 2
    ids[16:24, 16:32] = 13
    ids[24:32, 8:40] = 4
    img = np.zeros((H, W, 3), np.uint8)
    for k, c in COLOURS.items():
        img[ids == k] = c
    for v, scale in zip(videos, gt_scale):
        for t in range(n_frames):
            d = os.path.join(root, "Images", v)
            os.makedirs(d, exist_ok=True)
            Image.fromarray(img).save(os.path.join(d, f"{t:06d}.jpg"), quality=100)
            if t in annotated:
                save_ids(os.path.join(root, "Annotations", "Category_ids", v, f"{t:06d}.png"), ids[::scale, ::scale])
    os.makedirs(os.path.join(root, "lists"), exist_ok=True)
    with open(os.path.join(root, "lists", "val_videos.txt"), "w") as f:
        f.write("\n".join(videos) + "\n")
    return ids


def test_miou_equals_hand_computed_confusion(tmp_path):
    root, res = tmp_path / "vip", tmp_path / "res"
    ann = root / "Annotations" / "Category_ids" / "v"
    for t in range(5):
        os.makedirs(root / "Images" / "v", exist_ok=True)
        Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(root / "Images" / "v" / f"{t:02d}.jpg")
    save_ids(ann / "00.png", [[0, 0, 0], [0, 0, 0]])
    save_ids(ann / "02.png", [[0, 1, 1], [2, 2, 255]])  # 255: ignored
    save_ids(ann / "04.png", [[1, 1], [0, 2]])  # another size than the frames
    save_ids(res / "v" / "00.png", [[5, 5, 5], [5, 5, 5]])  # the given frame: never scored
    save_ids(res / "v" / "01.png", [[7, 7, 7], [7, 7, 7]])  # not annotated: never scored
    save_ids(res / "v" / "02.png", [[0, 1, 2], [2, 2, 1]])
    save_ids(res / "v" / "04.png", np.kron([[1, 0], [0, 2]], np.ones((2, 2), int)))  # 4x4: nearest back to 2x2
    hist = score_results(str(root), str(res), ["v"])
    # (gt, pred) pairs: frame 2 (0,0) (1,1) (1,2) (2,2) (2,2); frame 4 (1,1) (1,0) (0,0) (2,2)
    want = np.zeros((20, 20), int)
    for g, p, n in [(0, 0, 2), (1, 1, 2), (1, 2, 1), (2, 2, 3), (1, 0, 1)]:
        want[g, p] = n
    assert np.array_equal(hist, want)
    iou, miou = iou_from_confusion(hist)
    # IoU = tp / (gt + pred - tp): class 0: 2 / (2 + 3 - 2), class 1: 2 / (4 + 2 - 2), class 2: 3 / (3 + 4 - 3)
    assert iou[:3] == pytest.approx([2 / 3, 0.5, 0.75])
    assert np.isnan(iou[3:]).all()
    assert miou == pytest.approx((2 / 3 + 0.5 + 0.75) / 3)
    assert write_csvs(str(tmp_path), hist) == pytest.approx(miou)
    rows = list(csv.reader(open(tmp_path / "miou.csv")))
    assert rows[0] == ["class", "IoU"] and [r[0] for r in rows[1:21]] == list(CLASSES)
    assert rows[-1][0] == "mIoU" and float(rows[-1][1]) == pytest.approx(miou, abs=1e-6)
    assert float(rows[3][1]) == pytest.approx(0.75, abs=1e-6)


def test_end_to_end_through_the_runner(tmp_path):
    from vidssl.eval.runner import main

    root, out = tmp_path / "VIP_Fine", tmp_path / "out"
    ids = make_vip(str(root))
    # nearest output resize: bilinear would round the blocks' convex corners (a product of two weights < 0.5)
    summary = main(["vip", "--vip-root", str(root), "--out", str(out), "--init", "pixels", "--radius", "4",
                    "--output-resize", "nearest"])
    for video, scale in (("v1", 1), ("v2", 2)):
        for t in (0, 2, 4):
            img = Image.open(out / "results" / video / f"{t:06d}.png")
            assert img.mode == "P" and img.size == (48 // scale, 32 // scale)  # the annotation's size
            # static blocks on the 8-px cells: propagation returns the labels exactly
            assert np.array_equal(np.array(img), ids[::scale, ::scale])
        assert not (out / "results" / video / "000001.png").exists()  # frames without ground truth
        assert (out / "overlays" / video / "000002.jpg").exists()
    assert summary["mIoU"] == pytest.approx(1.0)
    rows = list(csv.reader(open(out / "miou.csv")))
    assert rows[-1] == ["mIoU", "1.000000"] and len(rows) == 22
    record = json.load(open(out / "protocol.json"))
    assert record["hash"] == summary["protocol_hash"] and record["radius"] == 4 and record["preset"] == "default"
    assert (out / "overlays" / "summary.png").exists()
    # frames read at twice their size (--input-size): predictions still at the annotations' size
    big = main(["vip", "--vip-root", str(root), "--out", str(tmp_path / "big"), "--init", "pixels", "--radius", "4",
                "--output-resize", "nearest", "--input-size", "64x96", "--no-overlays", "--videos", "v2"])
    assert Image.open(tmp_path / "big" / "results" / "v2" / "000002.png").size == (24, 16)
    assert big["mIoU"] > 0.9 and big["protocol"]["input_size"] == "64x96"


def test_clear_errors_for_a_broken_layout(tmp_path):
    from vidssl.eval.runner import main

    root = tmp_path / "VIP_Fine"
    make_vip(str(root), videos=("v1",), n_frames=3, annotated=(0, 2), gt_scale=(1,))
    os.remove(root / "lists" / "val_videos.txt")
    with pytest.raises(FileNotFoundError, match="val_videos.txt"):
        main(["vip", "--vip-root", str(root), "--out", str(tmp_path / "o"), "--init", "pixels"])
    with pytest.raises(FileNotFoundError, match="nope"):
        main(["vip", "--vip-root", str(root), "--out", str(tmp_path / "o"), "--init", "pixels", "--videos", "v1,nope"])
    os.remove(root / "Annotations" / "Category_ids" / "v1" / "000000.png")
    with pytest.raises(FileNotFoundError, match="first frame of v1"):
        main(["vip", "--vip-root", str(root), "--out", str(tmp_path / "o"), "--init", "pixels", "--videos", "v1"])
    import shutil
    shutil.rmtree(root / "Annotations")
    with pytest.raises(FileNotFoundError, match="Category_ids"):
        main(["vip", "--vip-root", str(root), "--out", str(tmp_path / "o"), "--init", "pixels", "--videos", "v1"])
    assert not (tmp_path / "o").exists()  # nothing written before the data checks pass
