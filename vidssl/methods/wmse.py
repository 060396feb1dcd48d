"""W-MSE on single video frames (Ermolov, Siarohin, Sangineto & Sebe, "Whitening for Self-Supervised
Representation Learning", ICML 2021; official code htdt/self-supervised methods/w_mse.py, whitening.py,
model.py, cfg.py, train.py, datasets/imagenet.py).

`num_views` views of a frame (the official --num_samples: 2 for W-MSE 2, 4 for W-MSE 4), all with the same
augmentation (cfg.py defaults: crop 0.2-1, colour jitter 0.4/0.4/0.4/0.1 with p 0.8, grayscale 0.1, flip 0.5,
and the ImageNet dataset's blur sigma 0.1-2 with p 0.5). The backbone embeds each view in its own pass, the
projector (Linear(1024)-BN-ReLU-Linear(emb 64), model.py get_head with the cfg defaults) runs once on all views
concatenated (so its BatchNorm sees every view, as the official code), and the loss whitens each view's
embeddings in random sub-batches of `w_size` (128), `w_iter` times, then averages 2 - 2 cos over every pair of
views (1 pair for 2 views, 6 for 4: vidssl.losses.wmse). Whitening runs in float32 with autocast off.

Distributed: the official code runs on one GPU (nn.DataParallel for the backbone only), so the whitening and
the projector's BatchNorm see the whole batch. Here, under torchrun, the projections are gathered with gradient
and every rank whitens the global batch with the same sub-batch permutation (rank 0's draw, shared with a tiny
no-grad gather), which gives the single-process gradients; set trainer.sync_bn for the projector's BatchNorm.
The global batch must be a multiple of `w_size`, and `w_size` larger than the embedding size (`proj_dim`).

Optimisation (official train.py): Adam, lr 1e-3 (2e-3 / 3e-3 in the README's recipes), L2 weight decay 1e-6 on
every parameter, 500 linear warm-up steps, lr x 0.2 at 50 and 25 epochs before the end.

Deviations: the official pipeline applies colour jitter and grayscale before the random resized crop; here they
follow it (vidssl/data/views.py order): only contrast, which blends with the image mean, differs slightly. The
projector's last Linear has no bias: the whitening subtracts each sub-batch's mean, so the official bias never
gets a gradient (a dead parameter; its Adam L2 decay only shrinks it, without any effect on the loss).
"""
from __future__ import annotations

import torch

from vidssl.data.views import ViewRecipe
from vidssl.dist import gather, gather_with_grad, is_distributed
from vidssl.losses.wmse import wmse_loss
from vidssl.methods.base import FrameViewsMethod, embedding_std, frame_backbone, register
from vidssl.models.heads import linear_bn_mlp


@register("wmse")
class WMSE(FrameViewsMethod):
    def __init__(self, backbone: str = "resnet18", backbone_kwargs: dict | None = None, proj_hidden: int = 1024,
                 proj_dim: int = 64, num_views: int = 2, w_size: int = 128, w_iter: int = 1, w_eps: float = 0.0,
                 crop_size: int = 224, min_scale: float = 0.2, jitter: list | tuple = (0.4, 0.4, 0.4, 0.1),
                 grayscale_p: float = 0.1, blur_p: float = 0.5):
        super().__init__()
        if num_views < 2:
            raise ValueError(f"method.num_views must be >= 2 (W-MSE 2 or W-MSE 4), got {num_views}")
        if w_iter < 1:
            raise ValueError(f"method.w_iter must be >= 1, got {w_iter}")
        if w_size <= proj_dim and w_eps == 0:
            raise ValueError(f"method.w_size={w_size} must exceed method.proj_dim={proj_dim}: the covariance of a "
                             "sub-batch is singular otherwise (or set method.w_eps > 0)")
        if len(jitter) != 4:
            raise ValueError(f"method.jitter must be [brightness, contrast, saturation, hue], got {jitter!r}")
        self.backbone = frame_backbone(backbone, backbone_kwargs, "wmse")
        self.projector = linear_bn_mlp([self.backbone.out_channels, proj_hidden, proj_dim], hidden_bias=True)
        self.w_size, self.w_iter, self.w_eps = w_size, w_iter, w_eps
        b, c, s, h = (float(v) for v in jitter)
        recipe = ViewRecipe(size=crop_size, scale=(min_scale, 1.0), brightness=b, contrast=c, saturation=s, hue=h,
                            grayscale_p=grayscale_p, blur_p=blur_p, solarize_p=0.0)
        self.views = (recipe,) * num_views

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        batch = super().device_augment(batch, generator)
        n = batch["frame"].shape[0]
        return {**batch, "wmse_seed": torch.randint(0, 2**62, (n,), generator=generator)}  # sub-batch draws

    def forward(self, batch: dict) -> dict:
        views = batch["views"]
        h = self.projector(torch.cat([self.backbone.forward_global(v) for v in views]))
        h = [gather_with_grad(x) for x in h.chunk(len(views))]
        n = h[0].shape[0]
        if n % self.w_size:
            raise ValueError(f"wmse: the global batch of {n} (trainer.batch_size x processes) must be a multiple "
                             f"of method.w_size={self.w_size}")
        seed = batch["wmse_seed"][:1]
        if is_distributed():  # every rank whitens the same sub-batches: rank 0's draw
            seed = gather(seed.to(h[0].device))[:1]
        generator = torch.Generator().manual_seed(int(seed))
        loss = wmse_loss(h, self.w_size, self.w_iter, self.w_eps, generator)
        return {"loss": loss, "z_std": embedding_std(h[0])}
