"""DINO on single video frames (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
ICCV 2021; official code facebookresearch/dino main_dino.py, vision_transformer.py `DINOHead`, utils.py).

A student (backbone + DINOHead) matches the output distribution of a teacher of the same architecture, an EMA
of the student (momentum 0.996 -> 1 along a cosine). Multi-crop (main_dino.py `DataAugmentationDINO`): two global
crops of `global_size` px (scale 0.4-1; the first always blurred, the second blurred with p 0.1 and solarised
with p 0.2) and `local_crops` crops of `local_size` px (0.05-0.4, blurred with p 0.5), all with flip, colour
jitter (0.4, 0.4, 0.2, 0.1) with p 0.8 and grayscale 0.2. The teacher sees only the global crops, the student
all of them; each backbone runs once per crop resolution. Loss: `dino_loss` with the teacher's outputs centred
by `center` (a buffer, updated with momentum 0.9 from the teacher outputs averaged over the global batch, after
the loss as in `DINOLoss.update_center`) and sharpened by the teacher temperature (a linear warm-up
`warmup_teacher_temp` -> `teacher_temp` over `warmup_teacher_temp_steps`, then constant; np.linspace as the
official); student temperature 0.1. The last layer of the student head gets no gradient (and so no update)
during the first `freeze_last_layer_steps` (utils.py `cancel_gradients_last_layer`). Parameter groups: no weight
decay on biases and norm parameters (utils.py `get_params_groups`). Evaluation reads the teacher backbone.

Defaults are main_dino.py's, with its epoch counts turned into steps: `freeze_last_layer_steps` 1251 = one
ImageNet epoch at batch 1024; `warmup_teacher_temp_steps` 0 (the argument's default; its help text says 30
epochs, set in configs/dino.yaml). "teacher_temp", "ema_momentum" and "freeze_last_layer" (1 or 0) are per-step
schedules, logged by the trainer.

The teacher backbone is built with the student's kwargs minus `drop_path_rate` (the official teacher has no
stochastic depth) and starts from the student's weights.

Deviations from the official code: gradient clipping is the trainer's global-norm clip (`trainer.grad_clip`), the
official clips every parameter's gradient to that norm separately (utils.py `clip_gradients`); crops are bilinear
(roi_align), not bicubic; the blur kernel is 10% of the crop side where PIL's GaussianBlur sizes it from sigma;
colour jitter draws its op order per batch (vidssl/data/views.py); the lr warm-up starts from lr / warmup_steps.
"""
from __future__ import annotations

import torch

from vidssl.data.views import ViewRecipe
from vidssl.dist import all_reduce_mean
from vidssl.losses.dino import dino_loss
from vidssl.methods.base import FrameViewsMethod, decay_groups, embedding_std, register
from vidssl.models.backbones import build_backbone
from vidssl.models.ema import momentum_copy
from vidssl.models.heads_multicrop import DINOHead, check_multicrop, multicrop_forward
from vidssl.optim.schedules import cosine_ramp


def dino_recipes(global_size: int, global_scale, local_size: int, local_scale, local_crops: int) -> list[ViewRecipe]:
    """main_dino.py `DataAugmentationDINO`: global 1 (blur 1.0), global 2 (blur 0.1, solarise 0.2), locals
    (blur 0.5); flip, jitter (0.4, 0.4, 0.2, 0.1) p 0.8 and grayscale 0.2 (ViewRecipe's defaults) for all."""
    g = ViewRecipe(size=global_size, scale=tuple(global_scale), blur_p=1.0, blur_sigma=(0.1, 2.0), solarize_p=0.0)
    return [g, ViewRecipe(size=global_size, scale=tuple(global_scale), blur_p=0.1, solarize_p=0.2),
            *[ViewRecipe(size=local_size, scale=tuple(local_scale), blur_p=0.5, solarize_p=0.0)] * local_crops]


def linear_warmup(step: int, warmup_steps: int, start: float, end: float) -> float:
    """np.linspace(start, end, warmup_steps)[step], then `end` (DINOLoss.teacher_temp_schedule, per step)."""
    if step >= warmup_steps:
        return end
    return start if warmup_steps == 1 else start + (end - start) * step / (warmup_steps - 1)


@register("dino")
class DINO(FrameViewsMethod):
    def __init__(self, backbone: str = "timm:vit_small_patch16_224", backbone_kwargs: dict | None = None,
                 out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256, head_layers: int = 3,
                 use_bn_in_head: bool = False, norm_last_layer: bool = True, base_momentum: float = 0.996,
                 final_momentum: float = 1.0, global_size: int = 224, global_scale: tuple = (0.4, 1.0),
                 local_crops: int = 8, local_size: int = 96, local_scale: tuple = (0.05, 0.4),
                 student_temp: float = 0.1, warmup_teacher_temp: float = 0.04, teacher_temp: float = 0.04,
                 warmup_teacher_temp_steps: int = 0, center_momentum: float = 0.9,
                 freeze_last_layer_steps: int = 1251):
        super().__init__()
        kwargs = dict(backbone_kwargs or {})
        self.backbone = build_backbone(backbone, **kwargs)
        check_multicrop(self.backbone, backbone, global_size, local_size, local_crops)
        self.head = DINOHead(self.backbone.out_channels, out_dim, hidden_dim, bottleneck_dim, head_layers,
                             use_bn_in_head, norm_last_layer)
        kwargs.pop("drop_path_rate", None)  # the official teacher has no stochastic depth
        self.teacher_backbone = build_backbone(backbone, **kwargs)
        self.teacher_backbone.load_state_dict(self.backbone.state_dict())
        self.teacher_backbone.requires_grad_(False)
        self.teacher_head = momentum_copy(self.head)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.base_momentum, self.final_momentum = base_momentum, final_momentum
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.warmup_teacher_temp, self.teacher_temp = warmup_teacher_temp, teacher_temp
        self.warmup_teacher_temp_steps = warmup_teacher_temp_steps
        self.freeze_last_layer_steps = freeze_last_layer_steps
        self.views = dino_recipes(global_size, global_scale, local_size, local_scale, local_crops)

    @torch.no_grad()
    def update_center(self, teacher: torch.Tensor) -> None:
        """center <- m * center + (1 - m) * mean of the teacher outputs over the global batch."""
        batch_center = all_reduce_mean(teacher.float().mean(dim=0, keepdim=True))
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)

    def forward(self, batch: dict) -> dict:
        views = batch["views"]
        n = views[0].shape[0]
        with torch.no_grad():
            teacher = self.teacher_head(multicrop_forward(self.teacher_backbone.forward_global, views[:2]))
        embedding = self.head.embed(multicrop_forward(self.backbone.forward_global, views))
        student = self.head.last_layer(embedding)
        temp = batch.get("schedule", {}).get("teacher_temp", self.teacher_temp)
        loss = dino_loss(student, teacher, self.center, self.student_temp, temp)
        self.update_center(teacher)
        return {"loss": loss, "z_std": embedding_std(embedding[:n])}

    def param_groups(self) -> list[dict]:
        return decay_groups(self)  # the teacher is frozen, so only the student's parameters

    def schedules(self, max_steps: int) -> dict:
        return {"ema_momentum": lambda s: cosine_ramp(s, max_steps, self.base_momentum, self.final_momentum),
                "teacher_temp": lambda s: linear_warmup(s, self.warmup_teacher_temp_steps, self.warmup_teacher_temp,
                                                        self.teacher_temp),
                "freeze_last_layer": lambda s: float(s < self.freeze_last_layer_steps)}

    def before_optimizer_step(self, step: int, values: dict) -> None:
        if values.get("freeze_last_layer", 0.0) > 0:  # utils.py cancel_gradients_last_layer
            for p in self.head.last_layer.parameters():
                p.grad = None

    def momentum_pairs(self) -> list:
        return [(self.backbone, self.teacher_backbone), (self.head, self.teacher_head)]

    def eval_encoder(self):
        return self.teacher_backbone
