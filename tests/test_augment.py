import torch

from vidssl.data import FrameCrop, PatchGrid, sample_rrc_boxes


def test_rrc_boxes_in_bounds_and_in_scale():
    g = torch.Generator().manual_seed(0)
    boxes = sample_rrc_boxes(256, 256, 2000, (0.8, 0.95), (0.7, 1.3), g)
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 256).all() and (left + w <= 256).all()
    area = (h * w).float() / 256 ** 2
    drawn = area < 1  # the rest fell back to the whole (square) frame after 10 misses, as torchvision does
    assert drawn.float().mean() > 0.99
    assert area[drawn].min() > 0.79 and area[drawn].max() < 0.96
    assert (w.float() / h)[drawn].min() > 0.69 and (w.float() / h)[drawn].max() < 1.31


def test_rrc_fallback_is_centre_crop():
    boxes = sample_rrc_boxes(10, 100, 5, scale=(0.99, 1.0), ratio=(1.0, 1.0))  # never fits: square of area ~1000
    assert boxes.tolist() == [[0, 45, 10, 10]] * 5


def test_frame_crop_per_frame():
    clip = torch.arange(2 * 40 * 60 * 3, dtype=torch.int64).remainder(251).to(torch.uint8).view(2, 40, 60, 3)
    out = FrameCrop(32)(clip, torch.Generator().manual_seed(0))
    assert out.shape == (2, 32, 32, 3) and out.dtype == torch.uint8


def test_patch_grid_without_jitter_cuts_exact_windows():
    clips = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    grid = PatchGrid(32, 16, jitter_scale=(1.0, 1.0), jitter_ratio=(1.0, 1.0), mean=(0, 0, 0), std=(1, 1, 1))
    patches = grid(clips)
    assert patches.shape == (2, 3, 9, 3, 32, 32)
    want = clips[1, 2, 16:48, 32:64].permute(2, 0, 1).float() / 255  # row 1, column 2 of the 3x3 grid
    assert torch.allclose(patches[1, 2, 5], want, atol=1e-5)
