"""Presets against their sources, option precedence, the protocol hash and protocol.json, the square radius and
DINO's position-embedding resampling."""
import argparse
import json
import math
from dataclasses import fields, replace

import pytest
import torch
import torch.nn.functional as F

from vidssl.eval.protocol import PRESETS, Protocol, add_protocol_arguments, preset, protocol_from_args


def resolve(argv, task="davis"):
    parser = argparse.ArgumentParser()
    add_protocol_arguments(parser)
    return protocol_from_args(parser, parser.parse_args(argv), task)


def test_crw_preset_matches_videowalk():
    p = preset("crw", "davis")
    # ajabri/videowalk README.md DAVIS command: --topk 10 --videoLen 20 --radius 12 --temperature 0.05 --cropSize -1
    assert (p.topk, p.n_context, p.radius, p.temperature, p.input_size) == (10, 20, 12, 0.05, "native")
    # code/utils/__init__.py MaskedAttention: Euclidean distance < radius; code/utils/test_utils.py: the mask skips
    # the long-memory (first) frame, softmax over the top-k
    assert (p.radius_shape, p.restrict_first, p.weighting) == ("circle", False, "softmax")
    # code/data/vos.py: the video is padded with videoLen copies of frame 0; norm_mask off and no other
    assert (p.context_pad, p.output_minmax) == ("first", False)
    # code/utils/arguments.py: --norm_mask off, --remove-layers layer4 (res4, stride 8); code/data/vos.py and
    # test_utils.py dump_predictions: cv2 linear resizes of the label maps in and out
    assert (p.minmax_norm, p.feature_stride, p.label_resize, p.output_resize) == (False, 8, "bilinear", "bilinear")
    assert preset("crw", "jhmdb").input_size == "320x320"  # arguments.py --cropSize 320; data/jhmdb.py
    assert preset("crw").knobs() == {**Protocol().knobs(), "feature_stride": 8}  # vidssl's default is CRW's


def test_dino_preset_matches_eval_video_segmentation():
    p = preset("dino", "davis")
    # facebookresearch/dino eval_video_segmentation.py: exp(aff / 0.1), top-k min threshold then renormalise,
    # --topk 5, --n_last_frames 7, --size_mask_neighborhood 12 (a square, on every context frame)
    assert (p.temperature, p.weighting, p.topk, p.n_context) == (0.1, "exp_renorm", 5, 7)
    # a queue of the n last predicted frames (frame 0 only as the first); norm_mask on the output, not the queue
    assert (p.context_pad, p.output_minmax, p.minmax_norm) == ("after_first", True, False)
    assert (p.radius, p.radius_shape, p.restrict_first) == (12, "square", True)
    # read_seg: PIL NEAREST to the patch grid; read_frame: 480 short side, long side floored to 64 (854 -> 832)
    assert (p.label_resize, p.output_resize, p.input_size) == ("nearest", "bilinear", "480x832")
    assert p.vit_pos_embed == "dino"  # vision_transformer.py interpolate_pos_encoding


def test_cropmae_preset_matches_its_propagation_scripts():
    p = preset("cropmae", "davis")
    # alexandre-eymael/CropMAE downstreams/propagation/util.py: --davis_temperature 0.7, --davis_topk 7,
    # --davis_video_len 20, --davis_radius 20, --davis_crop_size [480, 880]
    assert (p.temperature, p.topk, p.n_context, p.radius, p.input_size) == (0.7, 7, 20, 20, "480x880")
    # src/utils/__init__.py MaskedAttention (circle), test_utils.py (softmax, first frame unmasked)
    assert (p.radius_shape, p.restrict_first, p.weighting, p.minmax_norm) == ("circle", False, "softmax", False)
    assert (p.context_pad, p.output_minmax) == ("first", False)  # src/data/vos.py make_paths: max(0, i - video_len)
    assert (p.label_resize, p.output_resize, p.vit_pos_embed) == ("bilinear", "bilinear", "dino")  # vos.py, models_mae.py
    j, v = preset("cropmae", "jhmdb"), preset("cropmae", "vip")
    assert (j.input_size, j.topk, j.temperature, j.radius) == ("320x320", 7, 0.7, 20)  # --jhmdb_* options
    assert (v.topk, v.temperature, v.radius, v.n_context) == (10, 0.7, 20, 20)  # --vip_topk 10, --vip_* options


def test_spa_then_temp_preset_matches_res18_d8_config():
    p = preset("spa_then_temp", "davis")
    # qianduoduolr/Spa-then-Temp configs/test/res18_d8.py test_cfg_davis: temperature 0.07, topk 10,
    # precede_frames 20, neighbor_range 24 in 'square' mode = |d| <= 24 // 2 (affinity_utils.py spatial_neighbor),
    # with_first_neighbor (the first frame masked too); strides (1, 2, 2, 1), out_indices (2,): stride 8
    assert (p.temperature, p.topk, p.n_context) == (0.07, 10, 20)
    # vanilla_tracker.py: key_start = max(0, t - precede_frames); the output (not seg_bank) min-max normalised
    assert (p.context_pad, p.output_minmax, p.minmax_norm) == ("none", True, False)
    assert (p.radius, p.radius_shape, p.restrict_first, p.feature_stride) == (12, "square", True, 8)
    # base_data.py val_pipeline_davis Resize (-1, 480) keep_ratio; vanilla_tracker.py pil_nearest_interpolate
    assert (p.input_size, p.label_resize, p.output_resize, p.weighting) == ("short:480", "nearest", "bilinear", "softmax")
    j, v = preset("spa_then_temp", "jhmdb"), preset("spa_then_temp", "vip")
    assert (j.input_size, j.radius, j.output_minmax) == ("320x320", 5, False)  # Resize (320, 320), range 10
    assert (v.input_size, v.radius, v.topk) == ("560x560", 16, 10)  # Resize (560, 560), neighbor_range 32


def test_every_preset_is_valid_for_every_task():
    from vidssl.eval.protocol import check_protocol

    for name in PRESETS:
        for task in (None, "davis", "jhmdb", "vip"):
            assert check_protocol(preset(name, task)) == [], (name, task)


def test_explicit_options_override_the_preset():
    assert resolve(["--protocol", "dino"]) == preset("dino", "davis")
    p = resolve(["--protocol", "dino", "--topk", "3", "--no-restrict-first", "--temperature", "0.05"])
    # an explicit value wins even when it equals vidssl's default (0.05): options default to None
    assert (p.topk, p.restrict_first, p.temperature) == (3, False, 0.05)
    assert (p.radius_shape, p.n_context, p.preset) == ("square", 7, "dino")
    assert resolve(["--protocol", "spa_then_temp"], "vip").radius == 16
    assert resolve(["--protocol", "spa_then_temp", "--radius", "7"], "vip").radius == 7
    assert resolve(["--radius", "0"]).radius is None
    assert resolve(["--input-size", "short:360"]).input_size == "short:360"
    for bad in (["--input-size", "480"], ["--topk", "0"], ["--temperature", "0"], ["--input-size", "0x5"]):
        with pytest.raises(SystemExit):
            resolve(bad)


def test_hash_is_stable_and_follows_every_knob():
    a, b = Protocol(), Protocol()
    assert a.digest() == b.digest() and len(a.digest()) == 10
    assert replace(a, preset="crw").digest() == a.digest()  # the name is not a knob
    changed = {"n_context": 7, "context_pad": "none", "output_minmax": True, "radius": 5.0, "radius_shape": "square",
               "restrict_first": True, "topk": 3,
               "temperature": 0.1, "weighting": "exp_renorm", "minmax_norm": True, "label_resize": "nearest",
               "output_resize": "nearest", "clip_len": 4, "input_size": "320x320", "vit_pos_embed": "dino",
               "feature_stride": 16}
    assert set(changed) == {f.name for f in fields(Protocol)} - {"preset"}  # a new knob needs a line here
    digests = {replace(a, **{k: v}).digest() for k, v in changed.items()}
    assert len(digests) == len(changed) and a.digest() not in digests
    assert len({preset(n, "davis").digest() for n in PRESETS}) == len(PRESETS)
    assert replace(preset("crw"), feature_stride=None).digest() == a.digest()  # the default is CRW's setting


def test_write_protocol_beside_every_csv(tmp_path):
    from vidssl.eval.runner import write_protocol

    (tmp_path / "results" / "seq").mkdir(parents=True)
    (tmp_path / "results" / "global.csv").write_text("x\n")
    (tmp_path / "results" / "seq" / "a.png").write_bytes(b"")
    p = preset("cropmae", "davis")
    paths = write_protocol(str(tmp_path), p)
    assert sorted(paths) == sorted([str(tmp_path / "protocol.json"), str(tmp_path / "results" / "protocol.json")])
    record = json.load(open(tmp_path / "results" / "protocol.json"))
    assert record == {"preset": "cropmae", "hash": p.digest(), **p.knobs()}


def _naive(feats, labels0, n_context, radius, topk, temperature, shape, restrict_first, context_pad):
    """Every candidate listed explicitly, the context spelled out per mode."""
    T, C, h, w = feats.shape
    near = {"square": lambda dy, dx: max(abs(dy), abs(dx)) <= radius,
            "circle": lambda dy, dx: math.hypot(dy, dx) < radius}[shape]
    preds = [labels0.clone()]
    for t in range(1, T):
        prev = {"first": [max(j, 0) for j in range(t - n_context, t)],
                "none": [j for j in range(max(t - n_context, 0), t)],
                "after_first": [j for j in range(max(t - n_context, 1), t)]}[context_pad]
        out = torch.zeros_like(labels0)
        for y in range(h):
            for x in range(w):
                cands = [(float(feats[t, :, y, x] @ feats[f, :, v, u]), preds[f][:, v, u])
                         for slot, f in enumerate([0] + prev) for v in range(h) for u in range(w)
                         if (slot == 0 and not restrict_first) or near(v - y, u - x)]
                top = sorted(cands, key=lambda c: -c[0])[:topk]
                wts = torch.softmax(torch.tensor([c[0] for c in top]) / temperature, 0)
                out[:, y, x] = sum(wt * lab for wt, (_, lab) in zip(wts, top))
        preds.append(out)
    return torch.stack(preds)


@pytest.mark.parametrize("shape,restrict_first,context_pad", [
    ("square", True, "first"), ("square", True, "after_first"), ("circle", False, "none"),
    ("square", False, "after_first")])
def test_radius_shape_and_context_pad_against_naive_loop_and_dense(shape, restrict_first, context_pad):
    from vidssl.eval.propagate import propagate_labels, propagate_labels_dense

    torch.manual_seed(0)
    feats = F.normalize(torch.randn(5, 6, 5, 6), dim=1)
    labels0 = torch.softmax(torch.randn(3, 5, 6), 0)
    kw = dict(n_context=3, radius=1, topk=4, temperature=0.1, restrict_first=restrict_first)
    want = _naive(feats, labels0, **kw, shape=shape, context_pad=context_pad)
    got = propagate_labels(feats, labels0, radius_shape=shape, context_pad=context_pad, tile=2, **kw)
    assert torch.allclose(got, want, atol=1e-5)
    dense = propagate_labels_dense(feats, labels0, radius_shape=shape, context_pad=context_pad, **kw)
    assert torch.allclose(dense, want, atol=1e-5)
    other = _naive(feats, labels0, **kw, shape={"square": "circle", "circle": "square"}[shape], context_pad=context_pad)
    assert not torch.allclose(other, want, atol=1e-3)  # radius 1: the square has the 4 diagonal cells more


def test_context_pad_changes_results_and_bad_names_fail():
    from vidssl.eval.propagate import propagate_labels

    torch.manual_seed(1)
    feats = F.normalize(torch.randn(4, 6, 5, 6), dim=1)
    labels0 = torch.softmax(torch.randn(3, 5, 6), 0)
    runs = [propagate_labels(feats, labels0, n_context=3, radius=2, topk=6, context_pad=m)
            for m in ("first", "none", "after_first")]
    assert not torch.allclose(runs[0], runs[1]) and not torch.allclose(runs[1], runs[2])
    with pytest.raises(ValueError, match="radius_shape"):
        propagate_labels(feats, labels0, radius_shape="diamond")
    with pytest.raises(ValueError, match="context_pad"):
        propagate_labels(feats, labels0, context_pad="last")


def test_output_minmax_normalises_the_output_only():
    from vidssl.eval.propagate import propagate_labels

    torch.manual_seed(2)
    feats = F.normalize(torch.randn(4, 6, 5, 6), dim=1)
    labels0 = torch.softmax(torch.randn(3, 5, 6), 0)
    labels0[2] = 0  # a channel that is 0 everywhere stays 0
    raw = propagate_labels(feats, labels0, radius=3, topk=5)
    out = propagate_labels(feats, labels0, radius=3, topk=5, output_minmax=True)
    assert torch.equal(out[0], labels0)
    flat = raw[1:, :2].flatten(2)
    lo, hi = flat.min(-1, keepdim=True)[0], flat.max(-1, keepdim=True)[0]
    assert torch.allclose(out[1:, :2].flatten(2), (flat - lo) / (hi - lo), atol=1e-6)  # and not fed back
    assert torch.equal(out[1:, 2], raw[1:, 2]) and raw[1:, 2].abs().max() == 0
    fed_back = propagate_labels(feats, labels0, radius=3, topk=5, minmax_norm=True)
    assert not torch.allclose(fed_back[2:], out[2:], atol=1e-4)


def test_dino_position_embedding_resampling():
    from vidssl.eval.encoder import set_vit_pos_embed
    from vidssl.models.backbones import build_backbone

    enc = build_backbone("timm:vit_tiny_patch16_224", depth=1, img_size=96).eval()  # a 6 x 6 patch grid
    vit = enc.model
    torch.nn.init.normal_(vit.pos_embed)
    x = torch.zeros(1, 4, 9, vit.embed_dim)  # a 4 x 9 grid: shrinks one axis, grows the other
    timm_out = vit._pos_embed(x)
    assert set_vit_pos_embed(enc, "dino") == 1
    dino_out = vit._pos_embed(x)
    grid = vit.pos_embed[:, 1:].reshape(1, 6, 6, -1).permute(0, 3, 1, 2)
    want = F.interpolate(grid, scale_factor=(4.1 / 6, 9.1 / 6), mode="bicubic").permute(0, 2, 3, 1).reshape(1, 36, -1)
    assert torch.allclose(dino_out[:, 1:], want, atol=1e-6)
    assert torch.allclose(dino_out[:, 0], vit.cls_token[:, 0] + vit.pos_embed[:, 0])
    assert not torch.allclose(dino_out, timm_out, atol=1e-3)  # timm antialiases when it shrinks
    full = torch.zeros(1, 6, 6, vit.embed_dim)
    assert torch.allclose(vit._pos_embed(full)[:, 1:], vit.pos_embed[:, 1:])  # the native grid: untouched
    assert set_vit_pos_embed(enc, "timm") == 1 and torch.allclose(vit._pos_embed(x), timm_out)
    assert enc(torch.zeros(1, 3, 64, 144)).shape == (1, 192, 4, 9)  # the forward pass runs through it
    assert set_vit_pos_embed(build_backbone("resnet18"), "dino") == 0
