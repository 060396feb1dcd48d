"""Motion-vector reading speed: fps of vidssl.io.read_motion_vectors (every frame, at its default 4 px cells
and at 1 px) against a plain PyAV decode of the same file (decode only, and decode + RGB conversion, what a
frame reader pays), PyAV's default slice threading each. The variants run interleaved, `--repeats` rounds, and
the median of each is reported (this machine's speed drifts). It also checks that the reader's decoder options
(no deblocking, no IDCT) leave every vector as a plain `+export_mvs` decode gives it. Clips:
vidssl.data.sample_videos(), the videos of /work/shared/data/videos when present, and an MPEG-4 re-encode
(data_prep.reencode, the CMD convention) of each.

    python benchmarks/bench_motion_vectors.py [--repeats 7] [--max-frames 300]
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time
from unittest.mock import patch

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine  # noqa: E402
from vidssl.data.sample_videos import sample_videos  # noqa: E402
from vidssl.io import MotionVectorReader, motion_vectors, read_motion_vectors  # noqa: E402
from vidssl.prep.reencode import reencode  # noqa: E402


def plain_decode(path: str, n: int, rgb: bool) -> None:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        for i, frame in enumerate(c.decode(s)):
            if rgb:
                frame.to_ndarray(format="rgb24")
            if i + 1 >= n:
                break


def interleaved(variants: dict, repeats: int) -> dict:
    """Median seconds of each variant, the variants run in turn `repeats` times (after one warm-up round)."""
    times = {k: [] for k in variants}
    for r in range(repeats + 1):
        for k, fn in variants.items():
            t = time.perf_counter()
            fn()
            if r:
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-frames", type=int, default=300)
    args = ap.parse_args(argv)
    clips = list(sample_videos()) + sorted(glob.glob("/work/shared/data/videos/*.mp4"))
    unique: dict = {}
    for c in clips:  # one copy of each clip (the sample videos may be the shared ones again)
        unique.setdefault((os.path.basename(c), os.path.getsize(c)), c)
    clips = list(unique.values())
    tmp = tempfile.mkdtemp()
    rows = []
    for path in clips:
        import av

        with av.open(path) as c:
            s = c.streams.video[0]
            info = f"{s.codec_context.name} {s.codec_context.width}x{s.codec_context.height}"
        re = os.path.join(tmp, os.path.basename(path))
        reencode(path, re, "mpeg4", 12)
        for name, p in ((os.path.basename(path), path), (os.path.basename(path) + " (mpeg4 re-encode)", re)):
            with MotionVectorReader(p) as reader:
                n = min(reader.num_frames, args.max_frames)
            idx = list(range(n))
            fast = read_motion_vectors(p, idx)
            with patch.object(motion_vectors, "DECODER_OPTIONS", {"flags2": "+export_mvs"}):
                same = np.array_equal(read_motion_vectors(p, idx), fast)
            sec = interleaved({"decode": lambda: plain_decode(p, n, False),
                               "decode+rgb": lambda: plain_decode(p, n, True),
                               "mv 4": lambda: read_motion_vectors(p, idx),
                               "mv 1": lambda: read_motion_vectors(p, idx, cell=1)}, args.repeats)
            fps = {k: n / v for k, v in sec.items()}
            rows.append((name, info if p == path else f"mpeg4 {info.split()[1]}", n, fps, same))
    print(f"# read_motion_vectors vs plain PyAV decode, frames/s, median of {args.repeats} ({machine()})\n")
    print("| clip | codec | frames | PyAV decode | PyAV decode + RGB | read_motion_vectors (4 px cells) "
          "| vs decode | vs decode + RGB | (1 px) | vectors = plain +export_mvs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, info, n, f, same in rows:
        print(f"| {name} | {info} | {n} | {f['decode']:.0f} | {f['decode+rgb']:.0f} | {f['mv 4']:.0f} | "
              f"{f['mv 4'] / f['decode']:.2f}x | {f['mv 4'] / f['decode+rgb']:.2f}x | {f['mv 1']:.0f} | "
              f"{'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
