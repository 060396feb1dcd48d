"""DAVIS J&F computation: vidssl.eval.tasks.davis.evaluate_results vs the official davis2017-evaluation
(DAVISEvaluation.evaluate, what evaluation_method.py runs) on the same results folder, checking that every
per-object number is identical. Uses the real DAVIS sequences in ../shared/data/davis2016 (or --davis-root)
with predictions made by eroding the ground truth, both written as palette PNGs by PIL (the format of the
DAVIS-2017 annotations and of published results). Two timings: end to end from the PNG folders (the official
code decodes with PIL, which inflates with the system zlib, ~1.1 ms a mask here; vidssl with its own path for
plain 8-bit PNGs and zlib-ng, vidssl/io/png.py), and the measures alone on masks already decoded (the official
_evaluate_semisupervised on its one-hot arrays vs vidssl's evaluate_sequence on id maps).

  python benchmarks/bench_metrics.py --davis-eval /path/to/davis2017-evaluation
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import machine, print_table, timed  # noqa: E402
from vidssl.eval.davis_metrics import evaluate_sequence  # noqa: E402
from vidssl.eval.tasks.davis import evaluate_results, list_sequences, read_gt, read_masks, sequence_files  # noqa: E402
from vidssl.io import write_davis_mask  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "davis2016")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--davis-eval", required=True, help="local clone of davis2017-evaluation")
    p.add_argument("--davis-root", default=SHARED)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    sys.path.insert(0, args.davis_eval)
    from davis2017.evaluation import DAVISEvaluation
    from davis2017.results import Results

    seqs = list_sequences(args.davis_root, None)
    with tempfile.TemporaryDirectory() as tmp:
        root, res = os.path.join(tmp, "DAVIS"), os.path.join(tmp, "results")
        os.makedirs(os.path.join(root, "ImageSets", "2017"))
        os.symlink(os.path.abspath(os.path.join(args.davis_root, "JPEGImages")), os.path.join(root, "JPEGImages"))
        with open(os.path.join(root, "ImageSets", "2017", "val.txt"), "w") as f:
            f.write("\n".join(seqs) + "\n")
        frames = 0
        for seq in seqs:
            masks = sequence_files(args.davis_root, seq)[1]
            os.makedirs(os.path.join(res, seq))
            os.makedirs(os.path.join(root, "Annotations", "480p", seq))
            for path, gt in zip(masks, read_gt(masks)):  # palette PNGs: the official reader needs DAVIS-2017 masks
                name = os.path.basename(path)
                write_davis_mask(os.path.join(root, "Annotations", "480p", seq, name), gt)
                write_davis_mask(os.path.join(res, seq, name), cv2.erode(gt, np.ones((15, 15), np.uint8)))
            frames += len(masks)
        evaluation = DAVISEvaluation(root, "semi-supervised", "val")
        official = evaluation.evaluate(res)
        ours, rows, _ = evaluate_results(root, res, seqs)
        # then the median of `--repeats` more runs each (this machine's speed varies from second to second)
        t_official = timed(lambda: DAVISEvaluation(root, "semi-supervised", "val").evaluate(res),
                           repeats=args.repeats, warmup=0)
        t_ours = timed(lambda: evaluate_results(root, res, seqs), repeats=args.repeats, warmup=0)
        # the measures alone, on masks decoded beforehand (each side in its own input format)
        t_official_m = t_ours_m = 0.0
        for seq in seqs:
            gt_onehot, _, ids = evaluation.dataset.get_all_masks(seq, True)
            res_onehot = Results(res).read_masks(seq, ids[1:-1])
            t = time.perf_counter()
            evaluation._evaluate_semisupervised(gt_onehot[:, 1:-1], res_onehot, None, ("J", "F"))
            t_official_m += time.perf_counter() - t
            masks = sequence_files(root, seq)[1]
            gt, pred = read_gt(masks), read_masks([os.path.join(res, seq, os.path.basename(m)) for m in masks])
            t = time.perf_counter()
            evaluate_sequence(gt, pred, seq)
            t_ours_m += time.perf_counter() - t
    same = all(np.isclose(official["J"]["M_per_object"][s], j, rtol=0, atol=1e-12) and
               np.isclose(official["F"]["M_per_object"][s], f, rtol=0, atol=1e-12) for s, j, f in rows)
    same &= np.isclose(np.mean(official["J"]["D"]), ours["J-Decay"]) and np.isclose(np.mean(official["F"]["R"]), ours["F-Recall"])
    print_table(f"DAVIS J&F of {len(seqs)} real sequences ({frames} frames, read from PNGs) on {machine()}",
                ["implementation", "seconds", "frames/s", "identical numbers"],
                [["davis2017-evaluation, from PNGs", f"{t_official:.2f}", f"{frames / t_official:.0f}", "-"],
                 ["vidssl, from PNGs (2 threads)", f"{t_ours:.2f}", f"{frames / t_ours:.0f}", str(bool(same))],
                 ["davis2017-evaluation, measures only", f"{t_official_m:.2f}", f"{frames / t_official_m:.0f}", "-"],
                 ["vidssl, measures only (1 thread)", f"{t_ours_m:.2f}", f"{frames / t_ours_m:.0f}", "-"]])
    print(f"speed-up: {t_official / t_ours:.1f}x from PNGs, {t_official_m / t_ours_m:.1f}x for the measures")


if __name__ == "__main__":
    main()
