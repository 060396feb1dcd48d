"""SwAV on single video frames (Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020; official code facebookresearch/swav main_swav.py, src/resnet50.py,
src/multicropdataset.py).

Multi-crop: `global_crops` crops of `global_size` px (scale 0.14-1) and `local_crops` of `local_size` px
(0.05-0.14), each with SwAV's colour distortion (jitter 0.8 / 0.8 / 0.8 / 0.2 with p 0.8, grayscale 0.2) and
Gaussian blur (p 0.5, sigma 0.1-2). The backbone runs once per crop resolution; the projection head
(Linear-BN-ReLU-Linear, 2048 -> 2048 -> 128) and the prototypes (Linear 128 -> 3000 without bias, rows kept
L2-normalised) run once on all crops. Codes: Sinkhorn-Knopp (epsilon 0.05, 3 iterations) on each global crop's
scores, without gradient; the loss predicts each global crop's codes from every other crop's scores
(temperature 0.1). Optionally a queue of past embeddings (one per global crop, `queue_length` rows) is scored
against the current prototypes and prepended to the batch before Sinkhorn, from step `queue_start_step` on and
once full (main_swav.py: `epoch_queue_starts`, used once its last row is non-zero). The prototypes get no
gradient (and so no update) for the first `freeze_prototypes_steps` steps and are renormalised at construction
and after every optimizer step (the official renormalises before every forward: the same weights meet every
forward). Both switches are per-step schedules ("freeze_prototypes", "use_queue": 1 or 0), so they are logged
and replay exactly on resume. Defaults are the official ones (313 frozen steps = one ImageNet epoch at 4096).

Under torchrun, Sinkhorn normalises over the global batch: the official `distributed_sinkhorn` all-reduces its
sums over ranks; here every rank gathers the scores (no gradient), runs the single-process `sinkhorn` on them
and keeps its own rows, which gives the same codes. The official queue is per rank (each holds its own past
embeddings); vidssl's FeatureQueue holds the gathered global ones on every rank: the same set of rows enters
Sinkhorn. Evaluation reads the backbone.

Deviations from the official code: the blur kernel is 10% of the crop side (23 px at 224, 9 px at 96) where the
official uses 23 px for every size; crops are bilinear (roi_align) and colour jitter draws its op order per batch
(vidssl/data/views.py); the lr warm-up starts from lr / warmup_steps, not from `start_warmup`; the queue length
must be a multiple of the global batch (the official silently rounds it down, which turns the queue off for
batch 4096).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.data.views import ViewRecipe
from vidssl.dist import gather, get_rank, get_world_size
from vidssl.losses.swav import sinkhorn, swav_loss
from vidssl.methods.base import FrameViewsMethod, embedding_std, register
from vidssl.models.backbones import build_backbone
from vidssl.models.heads import mlp
from vidssl.models.heads_multicrop import check_multicrop, multicrop_forward
from vidssl.models.queue import FeatureQueue


def swav_recipe(size: int, scale: tuple[float, float]) -> ViewRecipe:
    """src/multicropdataset.py: RandomResizedCrop, flip, get_color_distortion(s=1), RandomGaussianBlur (p 0.5),
    normalised with SwAV's std (0.228, 0.224, 0.225), kept as the official writes it."""
    return ViewRecipe(size=size, scale=tuple(scale), brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2,
                      jitter_p=0.8, grayscale_p=0.2, blur_p=0.5, blur_sigma=(0.1, 2.0), solarize_p=0.0,
                      std=(0.228, 0.224, 0.225))


@register("swav")
class SwAV(FrameViewsMethod):
    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None, hidden: int = 2048,
                 feat_dim: int = 128, prototypes: int = 3000, global_crops: int = 2, global_size: int = 224,
                 global_scale: tuple = (0.14, 1.0), local_crops: int = 6, local_size: int = 96,
                 local_scale: tuple = (0.05, 0.14), temperature: float = 0.1, epsilon: float = 0.05,
                 sinkhorn_iterations: int = 3, queue_length: int = 0, queue_start_step: int = 0,
                 freeze_prototypes_steps: int = 313):
        super().__init__()
        self.backbone = build_backbone(backbone, **(backbone_kwargs or {}))
        check_multicrop(self.backbone, backbone, global_size, local_size, local_crops)
        if global_crops < 1 or global_crops + local_crops < 2:
            raise ValueError(f"swav needs method.global_crops >= 1 and at least 2 crops in all, got "
                             f"{global_crops} global + {local_crops} local")
        if queue_length < 0:
            raise ValueError(f"method.queue_length must be >= 0 (0 = no queue), got {queue_length}")
        self.projector = mlp(self.backbone.out_channels, hidden, feat_dim, num_layers=2, batch_norm=True)
        self.prototypes = nn.Linear(feat_dim, prototypes, bias=False)
        self.normalize_prototypes()
        self.queues = nn.ModuleList(FeatureQueue(queue_length, feat_dim, normalize=False)
                                    for _ in range(global_crops if queue_length else 0))
        self.global_crops, self.temperature = global_crops, temperature
        self.epsilon, self.sinkhorn_iterations = epsilon, sinkhorn_iterations
        self.queue_start_step, self.freeze_prototypes_steps = queue_start_step, freeze_prototypes_steps
        self.views = ([swav_recipe(global_size, global_scale)] * global_crops
                      + [swav_recipe(local_size, local_scale)] * local_crops)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    @torch.no_grad()
    def codes(self, scores: torch.Tensor, z: torch.Tensor, crop: int, use_queue: bool) -> torch.Tensor:
        """Sinkhorn codes (n, K) of this rank's n rows of global crop `crop`: Sinkhorn runs on the scores of the
        global batch, with the queue's scores (against the current prototypes) prepended once the queue is full;
        then this crop's embeddings `z` are pushed to its queue when `use_queue`."""
        n = scores.shape[0]
        rows = gather(scores.float())  # (world * n, K), rank order
        offset = get_rank() * n
        queue = self.queues[crop] if use_queue and len(self.queues) else None
        if queue is not None and queue.full:
            rows = torch.cat([queue.keys.float() @ self.prototypes.weight.float().t(), rows])
            offset += queue.size
        q = sinkhorn(rows, self.epsilon, self.sinkhorn_iterations)[offset:offset + n]
        if queue is not None:
            queue.push(z)
        return q

    def forward(self, batch: dict) -> dict:
        views = batch["views"]
        n = views[0].shape[0]
        z = F.normalize(self.projector(multicrop_forward(self.backbone.forward_global, views)), dim=1)
        scores = self.prototypes(z)  # (n_crops * n, K), crop-major
        use_queue = bool(batch.get("schedule", {}).get("use_queue", 0.0))
        if len(self.queues) and self.queues[0].size % (n * get_world_size()):  # fail at step 1, not at queue start
            raise ValueError(f"method.queue_length={self.queues[0].size} must be a multiple of the global batch "
                             f"({n * get_world_size()}); the official code rounds it down")
        codes = [self.codes(scores[c * n:(c + 1) * n], z[c * n:(c + 1) * n], c, use_queue)
                 for c in range(self.global_crops)]
        loss = swav_loss(list(scores.split(n)), codes, self.temperature)
        return {"loss": loss, "z_std": embedding_std(z[:n])}

    def schedules(self, max_steps: int) -> dict:
        out = {"freeze_prototypes": lambda s: float(s < self.freeze_prototypes_steps)}
        if len(self.queues):
            out["use_queue"] = lambda s: float(s >= self.queue_start_step)
        return out

    def before_optimizer_step(self, step: int, values: dict) -> None:
        if values.get("freeze_prototypes", 0.0) > 0:  # main_swav.py: iteration < freeze_prototypes_niters
            self.prototypes.weight.grad = None

    def after_optimizer_step(self, step: int, values: dict) -> None:
        super().after_optimizer_step(step, values)
        self.normalize_prototypes()

    def queue_lengths(self) -> dict[str, int]:
        return {"method.queue_length": self.queues[0].size} if len(self.queues) else {}
