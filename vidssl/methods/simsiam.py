"""SimSiam on single video frames (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021;
official code facebookresearch/simsiam simsiam/builder.py and main_simsiam.py).

Two views of a frame with the same augmentation (MoCo v2's, main_simsiam.py: crop 0.2-1, jitter 0.4/0.4/0.4/0.1
with p 0.8, grayscale 0.2, blur p 0.5, flip); one encoder f = backbone -> 3-layer projector
(Linear-BN-ReLU x 2 at the backbone's width, Linear to `dim`, BatchNorm without affine), a predictor h
(Linear(dim, 512)-BN-ReLU-Linear(dim), bottleneck) and the loss
D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 with D = -cos (vidssl.losses.simsiam). No momentum encoder: the stop-
gradient alone prevents collapse. Each view goes through the network in its own pass (BN per view), as the
official code. Optimisation (official): SGD momentum 0.9, lr 0.05 x batch / 256, weight decay 1e-4 on every
parameter, cosine decay; the predictor's lr is fixed (`fix_pred_lr`, the official --fix-pred-lr, used for the
paper's results): a `static_lr` parameter group. The backbone's last BN of each residual block starts at zero
(torchvision's zero_init_residual=True in the official builder).

Deviations: the last projector Linear has no bias (the official one keeps a frozen bias, which the following
BatchNorm removes anyway); the cosine lr decays per step, not per epoch.

"""
from __future__ import annotations

from vidssl.data.views import mocov2_view
from vidssl.losses.simsiam import simsiam_loss
from vidssl.methods.base import FrameViewsMethod, embedding_std, frame_backbone, register
from vidssl.models.heads import linear_bn_mlp


@register("simsiam")
class SimSiam(FrameViewsMethod):
    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None, dim: int = 2048,
                 pred_dim: int = 512, proj_hidden: int | None = None, fix_pred_lr: bool = True,
                 crop_size: int = 224, min_scale: float = 0.2, zero_init_residual: bool = True):
        super().__init__()
        self.backbone = frame_backbone(backbone, backbone_kwargs, "simsiam", zero_init_residual)
        width = self.backbone.out_channels
        hidden = proj_hidden or width  # official: the backbone's width (2048 for ResNet-50)
        self.projector = linear_bn_mlp([width, hidden, hidden, dim], last_bn=True)
        self.predictor = linear_bn_mlp([dim, pred_dim, dim], last_bias=True)
        self.fix_pred_lr = fix_pred_lr
        self.views = (mocov2_view(crop_size, min_scale),) * 2

    def forward(self, batch: dict) -> dict:
        x1, x2 = batch["views"]
        z1, z2 = self.projector(self.backbone.forward_global(x1)), self.projector(self.backbone.forward_global(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = simsiam_loss(p1, z2) / 2 + simsiam_loss(p2, z1) / 2
        return {"loss": loss, "z_std": embedding_std(z1)}

    def param_groups(self) -> list[dict]:
        encoder = [*self.backbone.parameters(), *self.projector.parameters()]
        return [{"name": "encoder", "params": [p for p in encoder if p.requires_grad]},
                {"name": "predictor", "params": list(self.predictor.parameters()), "static_lr": self.fix_pred_lr}]
