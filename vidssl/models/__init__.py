from vidssl.models import slow as _slow  # noqa: F401  (registers "slow_r50")
from vidssl.models import vit3d as _vit3d  # noqa: F401  (registers "vit3d")
from vidssl.models.backbones import BACKBONES, Backbone, build_backbone, load_backbone_weights, register_backbone

__all__ = ["BACKBONES", "Backbone", "build_backbone", "load_backbone_weights", "register_backbone"]
