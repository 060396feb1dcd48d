"""Label propagation speed and peak memory at DAVIS 480p (stride 8: 60 x 107 cells, 256 channels, 21 context
frames): vidssl's propagate_labels vs the same protocol computed the straightforward way
(propagate_labels_dense), and, with --reference PATH (a local clone of ajabri/videowalk), the reference's
chunked affinity loop on the same features (and the largest difference between the two results).

vidssl is timed over --frames frames (default 30: beyond the first 20, whose padded context is cheaper for
vidssl, which copies the duplicated frame-0 scores instead of recomputing them); the slower loops, whose cost
per frame does not depend on the position, over the first --ref-frames frames.

  python benchmarks/bench_propagation.py --reference /path/to/videowalk
  python benchmarks/bench_propagation.py --skip-dense --tiles 5,10,16,32   # on a GPU: one row per tile size
  python benchmarks/bench_propagation.py --size 12x16 --channels 16 --frames 4   # a tiny dry run
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import import_reference, machine, peak_rss_mb, print_row, print_table  # noqa: E402
from vidssl.eval import propagate_labels, propagate_labels_dense  # noqa: E402


def reference_propagation(ref_tu, ref_utils, feats, labels0, n_context=20, radius=12, topk=10, temperature=0.05):
    """videowalk test.py's affinity + propagation loop, driven on our features (padded like its dataset)."""
    T = feats.shape[0]
    padded = torch.cat([feats[:1].repeat(n_context, 1, 1, 1), feats]).permute(1, 0, 2, 3)[None]  # 1 C T h w
    N = padded.shape[2]
    key_idx = torch.cat(ref_tu.context_index_bank(n_context, [0], N - n_context), dim=-1)
    keys, query = padded[:, :, key_idx], padded[:, :, n_context:]
    restrict = ref_utils.MaskedAttention(radius, flat=False)
    D = restrict.mask(*padded.shape[-2:])[None].flatten(-4, -3).flatten(-2)
    D[D == 0] = -1e10
    D[D == 1] = 0
    Ws, Is = ref_tu.mem_efficient_batched_affinity(query.flatten(-2), keys.flatten(-2), D, temperature, topk, [0], "cpu")
    lbls = torch.cat([labels0[None].repeat(n_context, 1, 1, 1), torch.zeros(T, *labels0.shape)]).permute(0, 2, 3, 1)
    for t in range(key_idx.shape[0]):
        ctx = lbls[key_idx[t]].flatten(0, 2).transpose(0, 1)
        pred = (ctx[:, Is[t]] * Ws[t][None]).sum(1).view(-1, *feats.shape[-2:]).permute(1, 2, 0)
        lbls[t + n_context] = pred if t > 0 else lbls[0]
    return lbls[n_context:].permute(0, 3, 1, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=30, help="frames propagated by vidssl (after frame 0)")
    p.add_argument("--ref-frames", type=int, default=8, help="frames propagated by the slower loops")
    p.add_argument("--tile", type=int, help="query tile side (default: propagate_labels', 5 on a CPU, 16 on a GPU)")
    p.add_argument("--tiles", help="comma-separated tile sides, one vidssl row each (the first is the baseline)")
    p.add_argument("--size", default="60x107", help="feature map cells HxW (default: DAVIS 480p at stride 8)")
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument("--reference")
    p.add_argument("--skip-dense", action="store_true")
    args = p.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    h, w = (int(v) for v in args.size.lower().split("x"))
    tiles = [int(v) for v in args.tiles.split(",")] if args.tiles else [args.tile]
    torch.manual_seed(0)
    T, n_ref = args.frames + 1, min(args.ref_frames, args.frames)
    feats = F.normalize(torch.randn(T, args.channels, h, w), dim=1).to(device)
    labels0 = torch.softmax(torch.randn(3, h, w) * 4, 0).to(device)
    propagate_labels(feats[:3], labels0, tile=tiles[0])  # warm-up: CUDA context, kernels, allocator

    def peak_mb() -> float:
        return torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else peak_rss_mb()

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    rows, ours, t_ours = [], None, None
    for tile in tiles:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = clock()
        result = propagate_labels(feats, labels0, tile=tile)
        t_tile = (clock() - t) / args.frames
        if ours is None:
            ours, t_ours = result, t_tile
        else:
            assert torch.allclose(result, ours, atol=1e-4), f"tile {tile} changes the result"
        name = f"vidssl propagate_labels, tile {tile or 'default (' + str(16 if device.type == 'cuda' else 5) + ')'}"
        rows.append([name, f"{1 / t_tile:.3f}", f"{t_tile:.4f}", f"{peak_mb():.0f}", f"{t_tile / t_ours:.2f}x"])
        print_row(rows[-1])
        del result
    if not args.skip_dense:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = clock()
        dense = propagate_labels_dense(feats[:n_ref + 1], labels0)
        t_dense = (clock() - t) / n_ref
        rows.append(["straightforward loop (same protocol)", f"{1 / t_dense:.3f}", f"{t_dense:.4f}",
                     f"{peak_mb():.0f}", f"{t_dense / t_ours:.1f}x"])
        assert torch.allclose(ours[:n_ref + 1], dense, atol=1e-4), "results differ"
    if args.reference:
        _, ref_tu = import_reference(os.path.join(args.reference, "code"))
        import utils as ref_utils  # the reference's package, now on sys.path
        t = time.perf_counter()
        ref = reference_propagation(ref_tu, ref_utils, feats[:n_ref + 1].cpu(), labels0.cpu())
        t_ref = (time.perf_counter() - t) / n_ref
        rows.append(["videowalk reference (chunked, CPU)", f"{1 / t_ref:.3f}", f"{t_ref:.4f}",
                     f"{peak_rss_mb():.0f}", f"{t_ref / t_ours:.1f}x"])
        print("max |ours - reference| =", float((ours[:n_ref + 1].cpu() - ref).abs().max()))
    memory = "peak GPU MB (allocated)" if device.type == "cuda" else "peak RSS MB (cumulative)"
    print_table(f"Label propagation, {h}x{w} cells, {args.channels} channels ({args.frames} frames for vidssl, "
                f"{n_ref} for the others), on {machine()}",
                ["implementation", "frames/s", "s/frame", memory, "time vs first row"], rows)


if __name__ == "__main__":
    main()
