"""DAVIS-2017 semi-supervised, trainval at 480p (the set CRW and its successors report on).

  python -m data_prep.davis2017 download --root data/DAVIS     # fetch + unpack + verify
  python -m data_prep.davis2017 verify --root data/DAVIS       # check an existing copy

Layout after unpacking: DAVIS/JPEGImages/480p/<seq>/*.jpg, DAVIS/Annotations/480p/<seq>/*.png,
DAVIS/ImageSets/2017/{train,val}.txt (60 train + 30 val sequences). Evaluate with
python -m eval_davis --davis-root data/DAVIS --set val ...
"""
from __future__ import annotations

import argparse
import os

from vidssl.prep.fetch import fetch_all, move_contents, report

URL = "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip"
EXPECTED = {"train": 60, "val": 30}


def verify(root: str) -> list[str]:
    """Problems found (empty = fine): missing folders, sequences without frames or masks, mask/frame count
    mismatches, unreadable first masks."""
    from vidssl.io import read_davis_mask
    from vidssl.io.frames import list_frames

    problems = []
    for subset, n in EXPECTED.items():
        path = os.path.join(root, "ImageSets", "2017", f"{subset}.txt")
        if not os.path.isfile(path):
            problems.append(f"missing {path}")
            continue
        seqs = [s.strip() for s in open(path) if s.strip()]
        if len(seqs) != n:
            problems.append(f"{path} lists {len(seqs)} sequences, expected {n}")
        for seq in seqs:
            frames = list_frames(os.path.join(root, "JPEGImages", "480p", seq)) if os.path.isdir(
                os.path.join(root, "JPEGImages", "480p", seq)) else []
            ann_dir = os.path.join(root, "Annotations", "480p", seq)
            masks = list_frames(ann_dir) if os.path.isdir(ann_dir) else []
            if not frames or not masks:
                problems.append(f"{seq}: {len(frames)} frames, {len(masks)} masks")
            elif len(frames) != len(masks):
                problems.append(f"{seq}: {len(frames)} frames but {len(masks)} masks")
            else:
                try:
                    read_davis_mask(masks[0])
                except Exception as e:
                    problems.append(str(e))
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["download", "verify"])
    p.add_argument("--root", default="data/DAVIS")
    args = p.parse_args(argv)
    if args.action == "download" and not os.path.isdir(os.path.join(args.root, "JPEGImages")):
        parent = os.path.dirname(os.path.abspath(args.root))
        hint = f"and unzip it so that {args.root}/JPEGImages/480p exists (the zip holds a DAVIS/ folder).\n"
        if not fetch_all([(URL, "DAVIS-2017-trainval-480p.zip")], parent, hint):
            return 1
        unpacked = os.path.join(parent, "DAVIS")
        if os.path.abspath(unpacked) != os.path.abspath(args.root):
            move_contents(unpacked, args.root)
    return report(verify(args.root), "DAVIS-2017", args.root)

