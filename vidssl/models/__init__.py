from vidssl.models.backbones import BACKBONES, Backbone, build_backbone, load_backbone_weights, register_backbone
from vidssl.models import slow as _slow  # noqa: F401  (registers "slow_r50")

__all__ = ["BACKBONES", "Backbone", "build_backbone", "load_backbone_weights", "register_backbone"]
