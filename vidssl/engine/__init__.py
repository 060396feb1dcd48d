"""The training loop (trainer.py), its logs (logs.py) and its resume policy (resume.py)."""


def train(cfg) -> dict:
    """Train a run (vidssl/engine/trainer.py); imported on use so that `import vidssl.engine` stays light."""
    from vidssl.engine.trainer import train as _train

    return _train(cfg)


__all__ = ["train"]
