"""SiamMAE's and CropMAE's forward passes against the CropMAE repository's model (issue 21), in float64 on the CPU.

The reference is re-stated here from reading alexandre-eymael/CropMAE (not imported, not copied):
- models/SiamMAE.py SiameseMAE.forward: imgs (N, 2, 3, H, W); imgs[:, 0] (the past frame, or CropMAE's global
  crop: data/util/CropMAEStrategies.py GlobalToLocal._merge_views puts it first) goes through
  forward_encoder_no_masking, imgs[:, 1] (the future frame / local crop) through forward_encoder with
  random_masking; forward_decoder embeds both with the one decoder_embed, appends the mask tokens and unshuffles them
  (_append_mask_token), adds decoder_pos_embed to the masked view's sequence only, runs the DecoderBlocks with the
  embedded unmasked view as memory, decoder_norm, decoder_pred, drops the CLS row; forward_loss on imgs[:, 1].
- models/components/DecoderBlock.py DecoderBlock.forward (norm_first=False): x = norm2(x + cross-attention(x, memory));
  x = norm3(x + linear2(GELU(linear1(x)))); x = norm1(x + self-attention(x)); nn.MultiheadAttention, batch_first.
- models/components/mae/models_mae.py (MAE's): patchify, random_masking (argsort of torch.rand(N, L) from the
  global RNG), forward_encoder (pos_embed[:, 1:] added before masking, CLS + pos_embed[:, :1] prepended, timm
  pre-norm Blocks, norm), forward_loss (norm_pix_loss: per-patch mean / (unbiased var + 1e-6)**.5, MSE per patch,
  averaged over the masked patches); util/pos_embed.py get_2d_sincos_pos_embed (numpy, rounded to float32 when
  copied into the parameters).

The reference math runs on a state dict in the reference's parameter names, read from our module (`reference_state`),
so both sides use the same weights; the mask noise comes from the same seed on both sides (the reference's global
RNG, ours an explicit generator). Attention, the blocks and the position embeddings are written out by hand."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidssl.methods import build_method

CROP, PATCH, DIM, DEPTH, HEADS = 64, 8, 32, 2, 4
DEC_DIM, DEC_DEPTH, DEC_HEADS, DEC_FF = 16, 2, 4, 24


# --- the reference, re-stated ---------------------------------------------------------------------------------

def ref_2d_sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """util/pos_embed.py get_2d_sincos_pos_embed(cls_token=True), as initialize_weights stores it (float32)."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=float) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    g = np.stack(np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32)), axis=0)
    emb = np.concatenate([one_d(dim // 2, g[0]), one_d(dim // 2, g[1])], axis=1)  # w first, then h
    emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0).double()


def ref_mha(q_in, kv_in, sd, name, heads):
    """nn.MultiheadAttention(batch_first=True)(q_in, kv_in, kv_in) without dropout, written out."""
    w, b = sd[f"{name}.in_proj_weight"], sd[f"{name}.in_proj_bias"]
    d = q_in.shape[-1]
    q, k, v = q_in @ w[:d].T + b[:d], kv_in @ w[d:2 * d].T + b[d:2 * d], kv_in @ w[2 * d:].T + b[2 * d:]
    return ref_attend(q, k, v, heads) @ sd[f"{name}.out_proj.weight"].T + sd[f"{name}.out_proj.bias"]


def ref_attend(q, k, v, heads):
    n, lq, d = q.shape
    split = lambda t: t.reshape(n, t.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // heads), dim=-1)
    return (attn @ v).transpose(1, 2).reshape(n, lq, d)


def ref_ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)


def ref_linear(x, sd, name):
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def ref_vit_block(x, sd, name, heads):
    """timm's (pre-norm) Block as models_mae.py builds it: qkv_bias, LayerNorm eps 1e-6, GELU MLP."""
    h = ref_linear(ref_ln(x, sd, f"{name}.norm1"), sd, f"{name}.attn.qkv")
    q, k, v = h.chunk(3, dim=-1)  # timm reshapes qkv to (B, N, 3, heads, head_dim)
    x = x + ref_linear(ref_attend(q, k, v, heads), sd, f"{name}.attn.proj")
    h = F.gelu(ref_linear(ref_ln(x, sd, f"{name}.norm2"), sd, f"{name}.mlp.fc1"))
    return x + ref_linear(h, sd, f"{name}.mlp.fc2")


def ref_decoder_block(x, memory, sd, name, heads):
    """DecoderBlock.forward, norm_first=False (post-norm): cross-attention, feed-forward, self-attention."""
    x = ref_ln(x + ref_mha(x, memory, sd, f"{name}.multihead_attn", heads), sd, f"{name}.norm2")
    x = ref_ln(x + ref_linear(F.gelu(ref_linear(x, sd, f"{name}.linear1")), sd, f"{name}.linear2"), sd,
               f"{name}.norm3")
    return ref_ln(x + ref_mha(x, x, sd, f"{name}.self_attn", heads), sd, f"{name}.norm1")


def ref_patchify(imgs, p):
    n, _, h, w = imgs.shape
    x = torch.einsum("nchpwq->nhwpqc", imgs.reshape(n, 3, h // p, p, w // p, p))
    return x.reshape(n, (h // p) * (w // p), p * p * 3)


def ref_encoder(sd, x, pos, noise=None, mask_ratio=None):
    """forward_encoder (with random_masking on `noise`) or forward_encoder_no_masking (noise None)."""
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2) + pos[:, 1:]
    mask = ids_restore = None
    if noise is not None:
        n, length, d = x.shape
        keep = int(length * (1 - mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones(n, length, dtype=x.dtype)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
    x = torch.cat([(sd["cls_token"] + pos[:, :1]).expand(x.shape[0], -1, -1), x], dim=1)
    for i in range(DEPTH):
        x = ref_vit_block(x, sd, f"blocks.{i}", HEADS)
    return ref_ln(x, sd, "norm"), mask, ids_restore


def ref_siamese_mae(sd, imgs, mask_ratio, seed, norm_pix_loss=True):
    """SiameseMAE.forward(imgs, mask_ratio) -> (loss, pred, mask); the mask noise from the global RNG at `seed`."""
    unmasked_img, masked_img = imgs[:, 0], imgs[:, 1]
    grid = imgs.shape[-1] // PATCH
    pos, dec_pos = ref_2d_sincos_pos_embed(DIM, grid), ref_2d_sincos_pos_embed(DEC_DIM, grid)
    unmasked, _, _ = ref_encoder(sd, unmasked_img, pos)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        noise = torch.rand(imgs.shape[0], grid * grid)  # random_masking: torch.rand(N, L, device=x.device)
    latent, mask, ids_restore = ref_encoder(sd, masked_img, pos, noise, mask_ratio)
    # forward_decoder
    unmasked, latent = ref_linear(unmasked, sd, "decoder_embed"), ref_linear(latent, sd, "decoder_embed")
    n, d = latent.shape[0], latent.shape[2]
    mask_tokens = sd["mask_token"].repeat(n, ids_restore.shape[1] + 1 - latent.shape[1], 1)
    x_ = torch.cat([latent[:, 1:], mask_tokens], dim=1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, d))
    x = torch.cat([latent[:, :1], x_], dim=1) + dec_pos
    for i in range(DEC_DEPTH):
        x = ref_decoder_block(x, unmasked, sd, f"decoder_blocks.{i}", DEC_HEADS)
    pred = ref_linear(ref_ln(x, sd, "decoder_norm"), sd, "decoder_pred")[:, 1:]
    # forward_loss
    target = ref_patchify(masked_img, PATCH)
    if norm_pix_loss:
        target = (target - target.mean(dim=-1, keepdim=True)) / (target.var(dim=-1, keepdim=True) + 1.e-6) ** .5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum(), pred, mask


def reference_state(method) -> dict:
    """Our method's parameters under the reference's names (models_mae.py MaskedAutoencoderViT + SiameseMAE)."""
    sd = {}
    for k, v in method.backbone.model.state_dict().items():
        if k != "pos_embed":  # the reference computes its fixed position embedding itself
            sd[k] = v
    renames = {"embed": "decoder_embed", "blocks": "decoder_blocks", "norm": "decoder_norm", "pred": "decoder_pred",
               "mask_token": "mask_token"}
    for k, v in method.decoder.state_dict().items():
        head, _, rest = k.partition(".")
        sd[renames[head] + ("." + rest if rest else "")] = v
    return sd


# --- the checks -----------------------------------------------------------------------------------------------

def build(name: str, mask_ratio: float, norm_pix_loss: bool):
    torch.manual_seed(0)
    method = build_method(name, backbone="timm:vit_tiny_patch16_224", crop_size=CROP, mask_ratio=mask_ratio,
                          backbone_kwargs={"patch_size": PATCH, "embed_dim": DIM, "depth": DEPTH, "num_heads": HEADS},
                          decoder_dim=DEC_DIM, decoder_depth=DEC_DEPTH, decoder_heads=DEC_HEADS, decoder_ff_dim=DEC_FF,
                          norm_pix_loss=norm_pix_loss)
    with torch.no_grad():  # the zero-initialised biases and unit norms would hide a swapped weight
        for name_, p in method.named_parameters():
            if p.requires_grad and ("bias" in name_ or "norm" in name_):
                p.add_(0.1 * torch.randn_like(p))
    return method.double().eval()  # eval: the reference's DecoderBlock dropout (0.1) off on both sides


CASES = [("siammae", 0.95), ("siammae", 0.75), ("cropmae", 0.985), ("cropmae", 0.75)]
VIEWS = {"siammae": ("past", "future"), "cropmae": ("global_view", "local_view")}


@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize("name,mask_ratio", CASES)
def test_forward_matches_the_cropmae_repository(name, mask_ratio, norm_pix):
    method = build(name, mask_ratio, norm_pix)
    n, grid, seed = 3, CROP // PATCH, 7
    length = grid * grid
    imgs = torch.randn(n, 2, 3, CROP, CROP, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    # ours: the unmasked view first, the masked second, as the reference's imgs[:, 0] / imgs[:, 1]
    seen, masked = VIEWS[name]
    batch = {seen: imgs[:, 0], masked: imgs[:, 1],
             **method.draw_masks(n, method.mask_ratio, torch.Generator().manual_seed(seed), "cpu")}
    captured = {}
    hook = method.decoder.register_forward_hook(lambda mod, args, out: captured.setdefault("pred", out))
    with torch.no_grad():
        out = method(batch)
    hook.remove()
    pred, mask = captured["pred"], batch["mask"]

    sd = reference_state(method)
    with torch.no_grad():
        ref_loss, ref_pred, ref_mask = ref_siamese_mae(sd, imgs, mask_ratio, seed, norm_pix_loss=norm_pix)

    assert pred.shape == ref_pred.shape == (n, length, PATCH * PATCH * 3)
    assert mask.shape == ref_mask.shape == (n, length)
    assert torch.equal(mask.double(), ref_mask)  # the same tokens masked
    assert int(mask[0].sum()) == length - int(length * (1 - mask_ratio))
    assert pred.dtype == out["loss"].dtype == torch.float64
    assert torch.allclose(pred, ref_pred, rtol=1e-10, atol=1e-12)
    assert torch.allclose(out["loss"], ref_loss, rtol=1e-10, atol=1e-12)
    # the fixed position embeddings equal the reference's (encoder and decoder)
    assert torch.allclose(method.backbone.model.pos_embed, ref_2d_sincos_pos_embed(DIM, grid), rtol=0, atol=1e-7)
    assert torch.allclose(method.decoder.pos, ref_2d_sincos_pos_embed(DEC_DIM, grid), rtol=0, atol=1e-7)


def test_reference_names_cover_every_parameter_and_the_decoder_block_is_the_reference_one():
    """Every weight the re-stated reference reads exists in our module under the reference's name (a checkpoint of
    the CropMAE repository maps onto ours by these renames), and nothing of ours is left out of the comparison."""
    method = build("cropmae", 0.985, True)
    sd = reference_state(method)
    block = {k.split(".", 2)[2] for k in sd if k.startswith("decoder_blocks.0.")}
    ref_block = {f"{a}.{b}" for a in ("self_attn", "multihead_attn") for b in
                 ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")}
    ref_block |= {f"{a}.{b}" for a in ("linear1", "linear2", "norm1", "norm2", "norm3") for b in ("weight", "bias")}
    assert block == ref_block
    assert {"patch_embed.proj.weight", "cls_token", "norm.weight", "decoder_embed.weight", "mask_token",
            "decoder_norm.weight", "decoder_pred.weight"} <= sd.keys()
    ours = {k for k, p in method.named_parameters() if p.requires_grad}
    assert len(ours) == len(sd)  # every trained parameter of ours is one the reference reads
    # the timm ViT pieces the re-statement skips are identities in this configuration
    model = method.backbone.model
    assert isinstance(model.norm_pre, torch.nn.Identity)
    assert all(isinstance(getattr(b, m), torch.nn.Identity) for b in model.blocks for m in ("ls1", "ls2"))
    assert all(isinstance(b.attn.q_norm, torch.nn.Identity) for b in model.blocks)
