import torch

from vidssl.methods import build_method

SMALL = {"backbone_kwargs": {"remove_layers": ["layer4"]}, "patch_size": 16, "patch_stride": 8}


def test_patch_nodes_are_pooled_embeddings():
    m = build_method("crw", **SMALL)
    clips = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)
    batch = m.device_augment({"clip": clips}, torch.Generator().manual_seed(0))
    assert batch["views"].shape == (2, 3, 9, 3, 16, 16)  # 3 x 3 grid of 16 px patches, stride 8
    q = m.embed(batch["views"])
    assert q.shape == (2, 128, 3, 9)
    assert torch.allclose(q.norm(dim=1), torch.ones(2, 3, 9), atol=1e-5)
    out = m(batch)
    assert out["loss"].ndim == 0 and {"walk2_acc", "walk2_xent"} <= out.keys()


def test_dense_nodes_are_feature_map_locations():
    m = build_method("crw", nodes="dense", **SMALL)
    batch = m.device_augment({"clip": torch.randint(0, 256, (1, 3, 32, 48, 3), dtype=torch.uint8)})
    q = m.embed(batch["views"])
    assert q.shape == (1, 128, 3, 4 * 6)  # stride 8: 4 x 6 locations per frame
    out = m(batch)
    out["loss"].backward()
    assert m.head[0].weight.grad is not None
