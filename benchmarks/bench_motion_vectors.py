"""Motion-vector reading speed: fps of vidssl.io.read_motion_vectors (decode with +export_mvs, rasterise the
vectors at 1 px and 4 px cells) against a plain PyAV decode of the same file (decode only, and decode + RGB
conversion, what a frame reader pays), one thread each. Clips: vidssl.data.sample_videos(), the videos of
/work/shared/data/videos when present, and an MPEG-4 re-encode (data_prep.reencode, the CMD convention) of each.

    python benchmarks/bench_motion_vectors.py [--repeats 3] [--max-frames 300]
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine, timed  # noqa: E402
from data_prep.reencode import reencode  # noqa: E402
from vidssl.data.sample_videos import sample_videos  # noqa: E402
from vidssl.io import read_motion_vectors  # noqa: E402


def plain_decode(path: str, n: int, rgb: bool) -> None:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "SLICE"
        for i, frame in enumerate(c.decode(s)):
            if rgb:
                frame.to_ndarray(format="rgb24")
            if i + 1 >= n:
                break


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-frames", type=int, default=300)
    args = ap.parse_args(argv)
    clips = list(sample_videos()) + sorted(glob.glob("/work/shared/data/videos/*.mp4"))
    clips = list(dict.fromkeys(os.path.realpath(c) for c in clips))
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
            with av.open(p) as c:
                total = sum(1 for _ in c.demux(c.streams.video[0]))
            n = min(total, args.max_frames) - 1
            idx = list(range(n))
            fps = {}
            fps["decode"] = n / timed(lambda: plain_decode(p, n, False), args.repeats)
            fps["decode+rgb"] = n / timed(lambda: plain_decode(p, n, True), args.repeats)
            fps["mv cell 1"] = n / timed(lambda: read_motion_vectors(p, idx, cell=1), args.repeats)
            fps["mv cell 4"] = n / timed(lambda: read_motion_vectors(p, idx, cell=4), args.repeats)
            rows.append((name, info if p == path else f"mpeg4 {info.split()[1]}", n, fps))
    print(f"# read_motion_vectors vs plain PyAV decode, frames/s ({machine()})\n")
    print("| clip | codec | frames | PyAV decode | PyAV decode + RGB | read_motion_vectors (1 px) | (4 px cells) |")
    print("|---|---|---|---|---|---|---|")
    for name, info, n, f in rows:
        print(f"| {name} | {info} | {n} | {f['decode']:.0f} | {f['decode+rgb']:.0f} | {f['mv cell 1']:.0f} | "
              f"{f['mv cell 4']:.0f} |")


if __name__ == "__main__":
    main()
