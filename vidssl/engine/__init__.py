from vidssl.engine.checkpoint import load_checkpoint, save_checkpoint


def train(cfg) -> dict:
    """Train a run (vidssl/engine/trainer.py); imported on use so that loading checkpoints stays light."""
    from vidssl.engine.trainer import train as _train

    return _train(cfg)


__all__ = ["train", "save_checkpoint", "load_checkpoint"]
