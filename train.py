"""python train.py --config configs/crw_demo.yaml key=value ...  (the same as `vidssl train ...`)"""
import sys

from vidssl.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
