"""TimeCycle (Wang, Jabri & Efros, "Learning Correspondence from the Cycle-Consistency of Time", CVPR 2019;
official code xiaolonw/TimeCycle: models/videos/model_simple.py, geotnf/, models/dataset/vlog_train.py,
train_video_cycle_simple.py).

An 80 px patch of a future "target" frame is tracked backward through the clip's frames and forward again to the
target; the tracker is differentiable, so the cycle's end must land where the patch started. Features: ResNet-50
to layer3 at output stride 8 (the reference's resnet_res4s1: layer3 built with stride 1, zero padding, no
dilation = `build_backbone("resnet50", out_layer="layer3", stride8=True)`; its inflated 3D ResNet has temporal
kernels of 1, i.e. per-frame 2D convolutions, with BatchNorm over all frames of one call, as here) -> 1x1 conv to
512 -> ReLU -> L2 norm. One tracking step: the affinity of the query (patch features, 10x10) against a frame's
map (30x30), softmax over the frame positions at temperature 512^-0.5, goes through the localizer (two 4x4
convs + FC -> tx, ty, angle) to a fixed-scale (1/3) affine transform that crops the next query from the frame's
features (bilinear, translation x 227/210, align_corners=True as the PyTorch 0.4 reference).

Loss (train_video_cycle_simple.py): 0.1 * 0.2 * mean over the long cycles (back through 1..T frames and forward
again, then to the target) of the grid loss of the final transform against the patch's true one + the soft
inlier loss (-normalised inlier count of the patch -> frame affinities under the predicted transforms) + 0.1 *
the skip-cycle grid loss (patch -> each frame directly -> back to the target). Gradients are clipped at 10 in the
reference (trainer.grad_clip).

Data (vlog_train.py): T frames (4, frame gap 2 at 12 fps = `data.frame_rate: 6`) and two future frames starting
`pred_distance` steps after the clip's last frame, all on one square canvas of `data.img_size` (256: the
reference resizes the short side to 256); on the device one random `crop_size` (240) crop and horizontal flip for
the whole item, ImageNet normalisation; the target patch sits at one of the 10 7x7-grid windows (3/9 of the
crop wide) where the two future frames differ most, jittered by +-1/12, rotated by +-45 degrees, cut with the
fixed scale patch_size / crop_size.

Deviations from the reference, none changing the loss: the backward walks of the T cycles share their common
prefix (the reference recomputes the same walk for every cycle length: identical values and gradients);
outputs the loss never reads (the skip prediction from the longest walk's crops, the target crop of each cycle)
are not computed. The reference's loader flips the patch location once more after choosing it on already
flipped frames, so half of its patches miss the motion; here the patch is always at a high-motion window.
Videos too short for the clip plan are skipped (the reference shrinks the frame gap instead). Evaluation reads
what the reference's test code propagates with: the 1x1-conv projection of layer3 after ReLU (normalised by
the propagation), exported as one "projected" backbone (vidssl/models/backbones.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidssl.data.spec import ClipRequest, DataSpec
from vidssl.losses.timecycle import OFFSET_FACTOR, affinity, fixed_scale_theta, grid_loss, soft_inlier_score, warp
from vidssl.methods.base import Method, position_code, register
from vidssl.models.backbones import build_backbone

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MOTION_GRID = 9  # vlog_train.py: the crop is cut in 9 x 9 boxes; candidate windows are 3 x 3 boxes (7 x 7 of them)


class Localizer(nn.Module):
    """Affinity (N, H*W, h, w) -> fixed-scale affine theta (N, 2, 3): conv 4x4 -> 128, LeakyReLU(0.1), conv 4x4
    -> 64, LeakyReLU(0.1), Linear -> (tx, ty, angle) (model_simple.py afterconv3_trans/afterconv4_trans/linear2)."""

    def __init__(self, positions: int, query_size: int, scale: float):
        super().__init__()
        self.conv1 = nn.Conv2d(positions, 128, kernel_size=4, bias=False)
        self.conv2 = nn.Conv2d(128, 64, kernel_size=4, bias=False)
        self.fc = nn.Linear(64 * (query_size - 6) ** 2, 3)
        self.scale = scale
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.fc.weight, 0.0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(a), 0.1)
        x = F.leaky_relu(self.conv2(x), 0.1)
        return fixed_scale_theta(self.fc(x.flatten(1)), self.scale)


@register("timecycle")
class TimeCycle(Method):
    def __init__(self, backbone: str = "resnet50", backbone_kwargs: dict | None = None, embed_dim: int = 512,
                 temperature: float | None = None, crop_size: int = 240, patch_size: int = 80,
                 pred_distance: int = 4, lamda: float = 0.1, cycle_weight: float = 0.2,
                 offset_factor: float = OFFSET_FACTOR, motion_topk: int = 10, max_rotation: float = 45.0,
                 loc_jitter: float = 1 / 12):
        super().__init__()
        kwargs = {"out_layer": "layer3", "stride8": True} if backbone_kwargs is None else backbone_kwargs
        # the encoder = backbone + the 1x1 projection, one exported module: evaluation propagates with the
        # projected features, as the reference's test code (model_test.py: normalize(relu(afterconv1(layer3))))
        self.encoder = build_backbone("projected", base=backbone, base_kwargs=kwargs, dim=embed_dim)
        s = self.backbone.stride
        if crop_size % s or patch_size % s:
            raise ValueError(f"timecycle: method.crop_size ({crop_size}) and method.patch_size ({patch_size}) must be "
                             f"multiples of the backbone's stride {s}")
        if patch_size // s < 7:
            raise ValueError(f"timecycle: method.patch_size must be >= {7 * s} px (the localizer's two 4x4 convs "
                             f"need a >= 7x7 patch feature map), got {patch_size}")
        if patch_size >= crop_size:
            raise ValueError(f"timecycle: method.patch_size ({patch_size}) must be smaller than method.crop_size "
                             f"({crop_size})")
        if pred_distance < 1:
            raise ValueError(f"timecycle: method.pred_distance must be >= 1, got {pred_distance}")
        nn.init.kaiming_normal_(self.proj.weight, mode="fan_out", nonlinearity="relu")
        self.frame_hw, self.patch_hw = crop_size // s, patch_size // s
        self.scale = patch_size / crop_size  # the reference's 1/3
        self.localizer = Localizer(self.frame_hw ** 2, self.patch_hw, self.scale)
        self.temperature = embed_dim ** -0.5 if temperature is None else temperature
        self.crop_size, self.patch_size, self.pred_distance = crop_size, patch_size, pred_distance
        self.lamda, self.cycle_weight, self.offset_factor = lamda, cycle_weight, offset_factor
        self.motion_topk, self.max_rotation, self.loc_jitter = motion_topk, max_rotation, loc_jitter

    def data_spec(self, d) -> DataSpec:
        if d.img_size < self.crop_size:
            raise ValueError(f"timecycle: data.img_size ({d.img_size}) must be >= method.crop_size ({self.crop_size})")
        return DataSpec([
            ClipRequest("frames", d.clip_len, d.img_size, "square", frame_rate=d.frame_rate, frame_skip=d.frame_skip),
            ClipRequest("future", 2, d.img_size, "square", placement="gap", anchor="frames",
                        gap=self.pred_distance - 1, crop_as="frames")])

    # --- data on the device ----------------------------------------------------------------------------------

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        video = torch.cat([batch["frames"], batch["future"]], 1)  # uint8 (B, T + 2, S, S, 3)
        B, n, S = video.shape[:3]
        c, dev = self.crop_size, video.device
        u = torch.rand(B, 7, generator=generator)  # crop top, left, flip, window, jitter x, jitter y, angle
        top, left = (u[:, 0] * (S - c + 1)).long().tolist(), (u[:, 1] * (S - c + 1)).long().tolist()
        x = torch.stack([video[b, :, t:t + c, l:l + c] for b, (t, l) in enumerate(zip(top, left))])
        x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)
        mean = torch.tensor(IMAGENET_MEAN, device=dev).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=dev).view(3, 1, 1)
        x = (x - mean) / std
        x = torch.where((u[:, 2] < 0.5).to(dev).view(B, 1, 1, 1, 1), x.flip(-1), x)
        T = n - 2
        target, theta = x[:, T], self.draw_patch(x[:, T], x[:, T + 1], u[:, 3:].to(dev))
        patch = warp(target, theta, self.patch_size, self.patch_size)
        return {**batch, "clip": x[:, :T], "target": target, "patch": patch, "theta": theta}

    def draw_patch(self, f0: torch.Tensor, f1: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """theta (B, 2, 3) of the target patch in frames f0 (B, 3, c, c): one of the `motion_topk` windows of a
        7 x 7 grid (each 3/9 of the crop wide) where |f0 - f1| sums highest, position jittered, random rotation
        (vlog_train.py `__getitem__`); u (B, 4) uniforms: window, jitter x, jitter y, angle."""
        e = f0.shape[-1] // MOTION_GRID
        diff = (f0 - f1).abs().sum(1, keepdim=True)[..., :MOTION_GRID * e, :MOTION_GRID * e]
        boxes = F.avg_pool2d(diff, e)  # (B, 1, 9, 9) box means (sums up to a constant)
        scores = F.avg_pool2d(boxes, 3, stride=1).flatten(1)  # (B, 49) windows, index y * 7 + x
        k = min(self.motion_topk, scores.shape[1])
        pick = (u[:, 0] * k).long().clamp_max(k - 1)
        win = scores.topk(k, dim=1).indices.gather(1, pick[:, None])[:, 0]
        last = MOTION_GRID - 3
        loc = torch.stack([win % (last + 1), win // (last + 1)], 1).float() / last  # (x, y) in [0, 1]
        loc = (loc + (u[:, 1:3] - 0.5) * 2 * self.loc_jitter).clamp(0.0, 1.0)
        shift = (loc * 2 - 1) * (1 - self.scale)
        angle = (u[:, 3] - 0.5) * 2 * torch.pi * self.max_rotation / 180
        return fixed_scale_theta(torch.stack([shift[:, 0], shift[:, 1], angle], 1), self.scale)

    # --- model -------------------------------------------------------------------------------------------------

    @property
    def backbone(self) -> nn.Module:  # the ResNet to layer3 (inside the exported encoder)
        return self.encoder.base

    @property
    def proj(self) -> nn.Module:  # the reference's afterconv1
        return self.encoder.proj

    def eval_encoder(self) -> nn.Module:
        return self.encoder

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) -> ReLU(1x1 conv(layer3)) (N, D, H/8, W/8) in float32 (not normalised)."""
        return self.encoder(x).float()

    def locate(self, query_n: torch.Tensor, base_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised query maps (N, D, h, w) in normalised base maps (N, D, H, W): (affinity, the localizer's
        theta)."""
        a = affinity(query_n, base_n, self.temperature)
        return a, self.localizer(a)

    def crop(self, base: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The patch-sized crop of base features along theta (not normalised)."""
        return warp(base, theta, self.patch_hw, self.patch_hw, self.offset_factor)

    def track(self, query_n: torch.Tensor, base: torch.Tensor, base_n: torch.Tensor) -> torch.Tensor:
        """One tracking step: the crop of `base` where the query is found, normalised (the next query)."""
        return F.normalize(self.crop(base, self.locate(query_n, base_n)[1]), dim=1)

    def forward(self, batch: dict) -> dict:
        clip, theta = batch["clip"], batch["theta"].float()
        B, T = clip.shape[:2]
        frames = self.embed(clip.flatten(0, 1))  # (B*T, D, H, W)
        patch, target = self.embed(batch["patch"]), self.embed(batch["target"])
        frames_n, patch_n, target_n = (F.normalize(f, dim=1) for f in (frames, patch, target))
        if frames.shape[-1] != self.frame_hw or patch.shape[-1] != self.patch_hw:
            raise ValueError(f"timecycle: feature maps {tuple(frames.shape[-2:])} / {tuple(patch.shape[-2:])} do not "
                             f"match crop_size {self.crop_size} / patch_size {self.patch_size}")

        # skip cycle: patch -> every frame directly -> back to the target; inliers of patch -> frame affinities
        a, theta_skip = self.locate(patch_n.repeat_interleave(T, 0), frames_n)
        crops_n = F.normalize(self.crop(frames, theta_skip), dim=1)
        theta_back = self.locate(crops_n, target_n.repeat_interleave(T, 0))[1]
        loss_skip = grid_loss(theta_back, theta.repeat_interleave(T, 0))
        loss_inlier = -soft_inlier_score(a, theta_skip, (self.frame_hw, self.frame_hw), self.offset_factor).mean()

        # long cycles of length c = 1..T: back through frames T-1 .. T-c, forward through T-c+1 .. T-1, to the
        # target; the backward walks share their prefix (back[c - 1] = the query after frame T-c)
        frames, frames_n = frames.view(B, T, *frames.shape[1:]), frames_n.view(B, T, *frames_n.shape[1:])
        back, query = [], patch_n
        for t in reversed(range(T)):
            query = self.track(query, frames[:, t], frames_n[:, t])
            back.append(query)
        cycle_losses = []
        for c in range(1, T + 1):
            query = back[c - 1]
            for t in range(T - c + 1, T):
                query = self.track(query, frames[:, t], frames_n[:, t])
            cycle_losses.append(grid_loss(self.locate(query, target_n)[1], theta))
        loss_cycle = torch.stack(cycle_losses).mean()

        loss = self.lamda * self.cycle_weight * loss_cycle + loss_inlier + self.lamda * loss_skip
        z_std = target_n.detach().permute(0, 2, 3, 1).reshape(-1, target_n.shape[1]).std(0).mean()
        return {"loss": loss, "loss_cycle": loss_cycle.detach(), "loss_skip": loss_skip.detach(),
                "loss_inlier": loss_inlier.detach(), "z_std": z_std,
                **({"pos_code": position_code(target)} if B > 1 else {})}
