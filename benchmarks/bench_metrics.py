"""DAVIS J&F computation: vidssl.eval.davis.evaluate_results vs the official davis2017-evaluation
(DAVISEvaluation.evaluate, what evaluation_method.py runs) on the same results folder, checking that every
per-object number is identical. Uses the real DAVIS sequences in ../shared/data/davis2016 (or --davis-root)
with predictions made by eroding the ground truth.

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
from benchmarks.common import machine, print_table  # noqa: E402
from vidssl.eval.davis import evaluate_results, list_sequences, read_gt, sequence_files  # noqa: E402
from vidssl.io import write_davis_mask  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "davis2016")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--davis-eval", required=True, help="local clone of davis2017-evaluation")
    p.add_argument("--davis-root", default=SHARED)
    args = p.parse_args()
    sys.path.insert(0, args.davis_eval)
    from davis2017.evaluation import DAVISEvaluation

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
        t = time.perf_counter()
        official = DAVISEvaluation(root, "semi-supervised", "val").evaluate(res)
        t_official = time.perf_counter() - t
        t = time.perf_counter()
        ours, rows = evaluate_results(root, res, seqs)
        t_ours = time.perf_counter() - t
    same = all(np.isclose(official["J"]["M_per_object"][s], j, rtol=0, atol=1e-12) and
               np.isclose(official["F"]["M_per_object"][s], f, rtol=0, atol=1e-12) for s, j, f in rows)
    same &= np.isclose(np.mean(official["J"]["D"]), ours["J-Decay"]) and np.isclose(np.mean(official["F"]["R"]), ours["F-Recall"])
    print_table(f"DAVIS J&F of {len(seqs)} real sequences ({frames} frames, read from PNGs) on {machine()}",
                ["implementation", "seconds", "frames/s", "identical numbers"],
                [["davis2017-evaluation", f"{t_official:.2f}", f"{frames / t_official:.0f}", "-"],
                 ["vidssl", f"{t_ours:.2f}", f"{frames / t_ours:.0f}", str(bool(same))]])


if __name__ == "__main__":
    main()
