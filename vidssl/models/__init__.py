from vidssl.models.backbones import BACKBONES, Backbone, build_backbone, load_backbone_weights, register_backbone

__all__ = ["BACKBONES", "Backbone", "build_backbone", "load_backbone_weights", "register_backbone"]
