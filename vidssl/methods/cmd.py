"""CMD: context and motion decoupling (Huang et al., "Self-supervised Video Representation Learning by Context
and Motion Decoupling", CVPR 2021; official code foolwood/DRL Context-Motion-Decoupling/pretrain.py,
dataset/dataset.py, dataset/transforms.py, models/transformer.py).

A 3D clip encoder learns from two supervision sources that compressed videos carry for free:
- context matching: the clip's pooled feature -> head `iq` must pick the embedding `ik` of an I-frame of its own
  window (a 2D ResNet-10 context encoder -> head) among the batch's I-frames;
- motion prediction: a transformer (2 encoder + 4 decoder layers, DETR-style learned positions) reads the
  clip's last feature map and predicts, for every space-time position of the near future, the feature `mk` of
  the motion vectors there (a 3D ResNet-10 motion encoder on 2-channel vector maps -> head); each predicted
  position must pick its own target among all positions of the batch and of `neg_num` other motion windows
  of each video (the hard negatives of the same scene).
Both: L2-normalised 512-d embeddings, temperature 0.1, cross-entropy (vidssl.losses.cmd.cmd_nce_loss); loss =
motion_weight * L_motion + context_weight * L_context (1 and 1 in the official code). Only the clip encoder is
kept (eval_encoder).

Data (the official loader): a clip of `clip_len` frames every `data.frame_skip` frames (16 x 4); the motion
window is `future_frames` (8) consecutive frames starting `future_interval` (2) frames after the clip's last
one; negatives are `neg_num` (3) windows of the same video that do not overlap it; the I-frame is a random
keyframe within `iframe_margin` (5) frames of the clip (any frame of that range when the video has none there,
e.g. a video not re-encoded with a short GOP). The worker transform reads the vectors (vidssl.io.motion_vectors,
4 px cells) and the I-frame by "path" and `clip_index`, cuts them with `clip_box` onto the clip's square canvas.
On the device the clip and its positive motion window share one random resized crop (scale 0.2-1) and flip;
each negative window and the I-frame get their own; clip and I-frame then get the official colour recipe
(blur 0.5, jitter 0.5 with 0.4/0.4/0.4/0.1, grayscale 0.2); vectors are clamped to +-10 px and divided by 10.

Deviations, on purpose:
- clip encoder: any vidssl video backbone (default torchvision r3d_18; the paper's are R(2+1)D-26, R3D-26,
  C3D). The official code fuses layer3 (time steps stacked as channels) into the upsampled layer4 because its
  ResNets reach layer4 at 1/32; torchvision's have no max-pool and give layer4 at 1/16 x 1/8 in time, which is
  the official token grid (2 x 7 x 7 for 16 frames at 112 px), so the last layer is read as is.
- a horizontal flip negates the x component of the vectors (the official code mirrors the map only).
- the I-frame is cut from the clip's square canvas (its own random crop on the device), not the whole frame.
- gradients: keys are gathered with vidssl.dist.gather_with_grad, so a torchrun run has exactly the
  gradients of one process on the global batch; the official code's manual reduction leaves the keys' share
  1/world_size smaller (identical on one GPU).
- vectors are read at 4 px cells (exact for MPEG-4 / H.264 blocks) from the same re-encoded file as the RGB
  clip (the official code reads RGB from the original video, frame-aligned).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.ops import roi_align

from vidssl.data.augment import FrameCrop, sample_rrc_boxes
from vidssl.data.spec import ClipRequest, DataSpec, PlacementMiss
from vidssl.data.views import ViewRecipe, apply_view_params, augment_views, draw_view_params
from vidssl.dist import gather_with_grad, get_rank
from vidssl.io import open_video
from vidssl.io.motion_vectors import MotionVectorReader
from vidssl.losses.cmd import cmd_nce_loss
from vidssl.methods.base import Method, embedding_std, register
from vidssl.models.backbones import build_backbone

# --- worker side: motion vectors and I-frame --------------------------------------------------------------------

def crop_motion(mv: torch.Tensor, box, size: int, cell: int) -> torch.Tensor:
    """(T, h, w, 2) vectors on a `cell`-px grid -> (T, size, size, 2): the source-pixel box (top, left, h, w)
    resampled bilinearly (roi_align, as the clip's crop); values stay in source pixels."""
    t, l, h, w = (float(v) for v in box)
    x = mv.permute(0, 3, 1, 2).float()
    rois = torch.tensor([[i, l, t, l + w, t + h] for i in range(len(x))], dtype=torch.float32)
    out = roi_align(x, rois, output_size=size, spatial_scale=1.0 / cell, sampling_ratio=-1, aligned=True)
    return out.permute(0, 2, 3, 1).contiguous()


@dataclass
class CMDSideData:
    """DataSpec.transform: adds "motion" (1 + neg_num, future_frames, size, size, 2) float32 (positive window
    first), "iframe" (size, size, 3) uint8 and "iframe_index". Raises VideoDecodeError for videos without
    motion vectors, PlacementMiss (another draw may fit) when the windows fall outside the video."""
    size: int
    future_frames: int = 8
    future_interval: int = 2
    neg_num: int = 3
    neg_interval: int = 0
    iframe_margin: int = 5
    cell: int = 4

    def __call__(self, sample: dict, generator: torch.Generator) -> dict:
        path, idx = sample["path"], sample["clip_index"].reshape(-1).tolist()
        box = sample["clip_box"].reshape(-1, 4)[0]
        Fm = self.future_frames
        with MotionVectorReader(path) as reader:
            n = reader.num_frames
            m0 = idx[-1] + self.future_interval + 1
            if m0 + Fm > n:
                raise PlacementMiss(path, f"too short for the motion window after the clip ({n} frames, window "
                                          f"{m0}..{m0 + Fm - 1})")
            starts = [m0]
            if self.neg_num:
                gap = self.neg_interval
                cands = [*range(0, m0 - gap - Fm + 1), *range(m0 + Fm + gap, n - Fm + 1)]
                if not cands:
                    raise PlacementMiss(path, f"no room for negative motion windows ({n} frames)")
                pick = (torch.randperm(len(cands), generator=generator)[:self.neg_num] if len(cands) >= self.neg_num
                        else torch.randint(len(cands), (self.neg_num,), generator=generator))
                starts += [cands[int(k)] for k in pick]
            motion = [crop_motion(torch.from_numpy(reader.read(range(s, s + Fm), self.cell)), box, self.size, self.cell)
                      for s in starts]
            lo, hi = max(0, idx[0] - self.iframe_margin), min(n - 1, idx[-1] + self.iframe_margin)
            cands = [k for k in reader.keyframes if lo <= k <= hi] or list(range(lo, hi + 1))
        j = cands[int(torch.randint(len(cands), (1,), generator=generator))]
        with open_video(path) as video:
            frame = video.get_frames([j])
        iframe, _ = FrameCrop(self.size, policy="square").crop(frame, generator, box[None])
        return {**sample, "motion": torch.stack(motion), "iframe": iframe[0], "iframe_index": j}


# --- networks ----------------------------------------------------------------------------------------------------

class MotionEncoder(nn.Module):
    """The official motion encoder: a 3D ResNet-10 (one BasicBlock per stage) on 2-channel vector maps, stem
    at spatial stride 2 (the official conv stride 1 + max-pool 2), time strided by layer2-4 (8 frames -> 1)."""

    def __init__(self, layers=(1, 1, 1, 1)):
        super().__init__()
        v = torchvision.models.video.resnet
        net = v.VideoResNet(v.BasicBlock, [v.Conv3DSimple] * 4, list(layers), v.BasicStem)
        net.stem[0] = nn.Conv3d(2, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        self.body = nn.Sequential(net.stem, net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ContextEncoder(nn.Module):
    """The official I-frame encoder: a 2D ResNet-10 with global average pooling (512-d)."""

    def __init__(self, layers=(1, 1, 1, 1)):
        super().__init__()
        self.net = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, list(layers))
        self.net.fc = nn.Identity()
        self.out_channels = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _Layer(nn.Module):
    """Post-norm transformer layer of the official models/transformer.py (DETR style: positions added to queries
    and keys, not values; feed-forward width = model width): self-attention, [cross-attention], feed-forward."""

    def __init__(self, dim: int, heads: int, dropout: float, cross: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True) if cross else None
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3 if cross else 2))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pos, memory=None, mem_pos=None):
        q = x + pos
        x = self.norms[0](x + self.drop(self.self_attn(q, q, x, need_weights=False)[0]))
        if self.cross_attn is not None:
            x = self.norms[1](x + self.drop(self.cross_attn(x + pos, memory + mem_pos, memory, need_weights=False)[0]))
        return self.norms[-1](x + self.drop(self.ffn(x)))


class MotionPredictor(nn.Module):
    """Clip tokens (B, L, D) -> predicted motion tokens (B, P, D): encoder over the clip tokens, decoder with P
    learned queries starting from zeros (official models/transformer.py)."""

    def __init__(self, src_len: int, tgt_len: int, dim: int = 512, heads: int = 8, enc_layers: int = 2,
                 dec_layers: int = 4, dropout: float = 0.1):
        super().__init__()
        self.encoder = nn.ModuleList(_Layer(dim, heads, dropout, cross=False) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(_Layer(dim, heads, dropout, cross=True) for _ in range(dec_layers))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.k_pos = nn.Parameter(torch.rand(src_len, dim))  # the official nn.Embedding with uniform_ init
        self.q_pos = nn.Parameter(torch.rand(tgt_len, dim))

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        if memory.shape[1] != self.k_pos.shape[0]:
            raise ValueError(f"the clip gives {memory.shape[1]} tokens, the predictor was built for "
                             f"{self.k_pos.shape[0]} (method.clip_len / method.crop_size changed?)")
        k_pos, q_pos = self.k_pos.unsqueeze(0), self.q_pos.unsqueeze(0)
        for layer in self.encoder:
            memory = layer(memory, k_pos)
        x = torch.zeros_like(q_pos).expand(memory.shape[0], -1, -1)
        for layer in self.decoder:
            x = layer(x, q_pos, memory, k_pos)
        return x


def cmd_head(in_dim: int, hidden: int = 2048, out: int = 512) -> nn.Sequential:
    """The official heads (1x1 Conv1d = Linear): Linear-BN-ReLU-Linear(no bias)-BN."""
    head = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out, bias=False), nn.BatchNorm1d(out))
    for m in head:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return head


def _grid(make, shape) -> tuple[int, ...]:
    """Output (C, t, h, w...) of a network for an input shape, measured on the meta device (no weights)."""
    with torch.device("meta"):
        net = make()
        return tuple(net(torch.empty(1, *shape)).shape[1:])


@register("cmd")
class CMD(Method):
    def __init__(self, backbone: str = "r3d_18", backbone_kwargs: dict | None = None, clip_len: int = 16,
                 crop_size: int = 112, min_scale: float = 0.2, future_frames: int = 8, future_interval: int = 2,
                 neg_num: int = 3, neg_interval: int = 0, iframe_margin: int = 5, mv_clamp: float = 10.0,
                 hidden_dim: int = 512, num_heads: int = 8, num_encoder_layers: int = 2, num_decoder_layers: int = 4,
                 dropout: float = 0.1, head_hidden: int = 2048, head_dim: int = 512, temperature: float = 0.1,
                 motion_weight: float = 1.0, context_weight: float = 1.0):
        super().__init__()
        for name, v in (("clip_len", clip_len), ("future_frames", future_frames), ("crop_size", crop_size)):
            if v < 1:
                raise ValueError(f"cmd: method.{name} must be >= 1, got {v}")
        if future_interval < 0 or neg_num < 0 or neg_interval < 0 or iframe_margin < 0:
            raise ValueError("cmd: method.future_interval, neg_num, neg_interval, iframe_margin must be >= 0")
        kwargs = backbone_kwargs or {}
        self.backbone = build_backbone(backbone, **kwargs)
        if not self.backbone.is_video:
            raise ValueError(f"cmd needs a video backbone (r3d_18, r2plus1d_18, mc3_18, s3d), not {backbone!r}")
        self.motion_encoder = MotionEncoder()
        self.context_encoder = ContextEncoder()
        src = _grid(lambda: build_backbone(backbone, **kwargs).forward_dense, (3, clip_len, crop_size, crop_size))
        tgt = _grid(MotionEncoder, (2, future_frames, crop_size, crop_size))
        self.src_len, self.tgt_len = int(torch.tensor(src[1:]).prod()), int(torch.tensor(tgt[1:]).prod())
        self.fc = nn.Linear(self.backbone.out_channels, hidden_dim, bias=False)
        nn.init.normal_(self.fc.weight, std=0.01)
        self.predictor = MotionPredictor(self.src_len, self.tgt_len, hidden_dim, num_heads, num_encoder_layers,
                                         num_decoder_layers, dropout)
        self.mq_head = cmd_head(hidden_dim, head_hidden, head_dim)
        self.mk_head = cmd_head(self.motion_encoder.out_channels, head_hidden, head_dim)
        self.iq_head = cmd_head(self.backbone.out_channels, head_hidden, head_dim)
        self.ik_head = cmd_head(self.context_encoder.out_channels, head_hidden, head_dim)
        self.clip_len, self.min_scale, self.mv_clamp, self.temperature = clip_len, min_scale, mv_clamp, temperature
        self.motion_weight, self.context_weight = motion_weight, context_weight
        self.side = dict(future_frames=future_frames, future_interval=future_interval, neg_num=neg_num,
                         neg_interval=neg_interval, iframe_margin=iframe_margin)
        # dataset/transforms.py of the official code, for the clip and (independently) the I-frame
        self.view = ViewRecipe(size=crop_size, scale=(min_scale, 1.0), flip_p=0.5, jitter_p=0.5, brightness=0.4,
                               contrast=0.4, saturation=0.4, hue=0.1, grayscale_p=0.2, blur_p=0.5, solarize_p=0.0)

    def data_spec(self, d) -> DataSpec:
        if d.clip_len != self.clip_len:
            raise ValueError(f"cmd: data.clip_len ({d.clip_len}) must equal method.clip_len ({self.clip_len}), "
                             f"which sizes the motion predictor's positions")
        return DataSpec([ClipRequest("clip", self.clip_len, d.img_size, "square", frame_rate=d.frame_rate,
                                     frame_skip=d.frame_skip)],
                        transform=CMDSideData(d.img_size, **self.side))

    def _motion_views(self, mv: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """(N, T, H, W, 2) vectors + CPU boxes (N, 4), flips (N,) -> (N, 2, T, s, s), clamped and scaled."""
        N, T, H, W, _ = mv.shape
        x = mv.reshape(N * T, H, W, 2).permute(0, 3, 1, 2).float()
        top, left, h, w = boxes.repeat_interleave(T, dim=0).unbind(1)
        rois = torch.stack([torch.arange(N * T), left, top, left + w, top + h], dim=1).float().to(x.device)
        x = roi_align(x, rois, output_size=self.view.size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        sign = torch.where(flip.repeat_interleave(T), -1.0, 1.0).to(x.device)  # flipped: mirror, negate x
        x = torch.where(flip.repeat_interleave(T).to(x.device)[:, None, None, None], x.flip(-1), x)
        x = torch.stack([x[:, 0] * sign[:, None, None], x[:, 1]], dim=1)
        x = x.clamp(-self.mv_clamp, self.mv_clamp) / self.mv_clamp
        return x.view(N, T, 2, self.view.size, self.view.size).transpose(1, 2)

    def device_augment(self, batch: dict, generator: torch.Generator) -> dict:
        clip, motion = batch["clip"], batch["motion"]  # (B, T, H, W, 3) uint8, (B, 1 + neg, F, H, W, 2)
        B, _, H, W, _ = clip.shape
        n = motion.shape[1]
        p = draw_view_params(self.view, B, H, W, generator)
        clip_view = apply_view_params(clip, p, self.view).transpose(1, 2)  # (B, 3, T, s, s)
        boxes = sample_rrc_boxes(H, W, B * (n - 1), self.view.scale, self.view.ratio, generator).view(B, n - 1, 4)
        flips = (torch.rand(B, n - 1, generator=generator) < self.view.flip_p)
        boxes = torch.cat([p.boxes[:, None], boxes], 1).flatten(0, 1)  # the positive window shares the clip's crop
        flips = torch.cat([p.flip[:, None], flips], 1).flatten(0, 1)
        mv = self._motion_views(motion.flatten(0, 1), boxes, flips).unflatten(0, (B, n))  # (B, n, 2, F, s, s)
        iframe = augment_views(batch["iframe"], self.view, generator)  # (B, 3, s, s)
        return {**batch, "clip_view": clip_view, "motion_view": mv, "iframe_view": iframe}

    def forward(self, batch: dict) -> dict:
        feats = self.backbone.forward_dense(batch["clip_view"])  # (B, C, t, h, w)
        B = feats.shape[0]
        # motion: predicted tokens of every future position vs the motion encoder's tokens
        mq = self.predictor(self.fc(feats.flatten(2).transpose(1, 2)))  # (B, P, D)
        mq = self.mq_head(mq.reshape(-1, mq.shape[-1]))
        mv = batch["motion_view"].transpose(0, 1).flatten(0, 1)  # window-major: the B positives come first
        mk = self.motion_encoder(mv)
        if mk[0, 0].numel() != self.tgt_len:
            raise ValueError(f"the motion encoder gives {mk[0, 0].numel()} positions, the predictor {self.tgt_len} "
                             f"(method.future_frames / method.crop_size changed?)")
        mk = self.mk_head(mk.flatten(2).transpose(1, 2).reshape(-1, mk.shape[1]))  # rows (window, b, position)
        # context: pooled clip feature vs the I-frame's
        iq = self.iq_head(feats.mean(dim=(2, 3, 4)))
        ik = self.ik_head(self.context_encoder(batch["iframe_view"]))

        keys_m, keys_i = gather_with_grad(mk), gather_with_grad(ik)
        rank = get_rank()
        loss_m = cmd_nce_loss(mq, keys_m, self.temperature, offset=rank * mk.shape[0])
        loss_i = cmd_nce_loss(iq, keys_i, self.temperature, offset=rank * ik.shape[0])
        loss = self.motion_weight * loss_m + self.context_weight * loss_i
        with torch.no_grad():
            zq = F.normalize(iq.float(), dim=1)
            acc_m = (F.normalize(mq.float(), dim=1) @ F.normalize(keys_m.float(), dim=1).t()).argmax(1)
            acc_i = (zq @ F.normalize(keys_i.float(), dim=1).t()).argmax(1)
            logs = {"loss_motion": loss_m.detach(), "loss_context": loss_i.detach(),
                    "acc_motion": (acc_m == torch.arange(len(mq), device=mq.device) + rank * mk.shape[0]).float().mean(),
                    "acc_context": (acc_i == torch.arange(B, device=iq.device) + rank * B).float().mean(),
                    "z_std": embedding_std(zq)}
        return {"loss": loss, **logs}
