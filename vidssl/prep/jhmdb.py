"""JHMDB (frames, puppet joint positions, official splits) for keypoint propagation.

  python -m data_prep.jhmdb download --root data/JHMDB
  python -m data_prep.jhmdb verify --root data/JHMDB

Layout: JHMDB/Rename_Images/<class>/<video>/00001.png ..., JHMDB/joint_positions/<class>/<video>/
joint_positions.mat, JHMDB/splits/<class>_test_split1.txt. The CRW protocol evaluates split 1's test videos:
python -m eval_davis --jhmdb-root data/JHMDB --split-list data/JHMDB/splits --out OUT ...
"""
from __future__ import annotations

import argparse
import glob
import os

from vidssl.prep.fetch import fetch_all, report

BASE = "https://files.is.tue.mpg.de/jhmdb/"
FILES = ["Rename_Images.tar.gz", "joint_positions.zip", "splits.zip"]
N_CLASSES, N_VIDEOS = 21, 928


def verify(root: str) -> list[str]:
    problems = []
    frames = glob.glob(os.path.join(root, "Rename_Images", "*", "*"))
    joints = glob.glob(os.path.join(root, "joint_positions", "*", "*", "joint_positions.mat"))
    splits = glob.glob(os.path.join(root, "splits", "*_test_split1.txt"))
    if len(frames) != N_VIDEOS:
        problems.append(f"{len(frames)} videos under Rename_Images, expected {N_VIDEOS}")
    if len(joints) != N_VIDEOS:
        problems.append(f"{len(joints)} joint_positions.mat files, expected {N_VIDEOS}")
    if len(splits) != N_CLASSES:
        problems.append(f"{len(splits)} *_test_split1.txt files under splits/, expected {N_CLASSES}")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["download", "verify"])
    p.add_argument("--root", default="data/JHMDB")
    args = p.parse_args(argv)
    if args.action == "download":
        hint = (f"and unpack them into {args.root}/ (Rename_Images/, joint_positions/, splits/). "
                f"The dataset's page is http://jhmdb.is.tue.mpg.de/.\n")
        if not fetch_all([(BASE + f, f) for f in FILES], args.root, hint):
            return 1
    return report(verify(args.root), "JHMDB", args.root)

