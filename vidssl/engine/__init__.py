from vidssl.engine.checkpoint import load_checkpoint, save_checkpoint
from vidssl.engine.trainer import train

__all__ = ["train", "save_checkpoint", "load_checkpoint"]
