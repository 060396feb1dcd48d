from vidssl.models.backbones import build_backbone, load_backbone_weights

__all__ = ["build_backbone", "load_backbone_weights"]
