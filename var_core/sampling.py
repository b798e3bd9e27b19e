"""Class-conditional sampling with a KV cache, a CFG ramp over the scales and top-k/top-p."""

from __future__ import annotations

from typing import Sequence

import torch

from .var import VAR, KVCache
from .vqvae import VQVAE


def top_k_top_p_filter(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Mask logits [..., V] to -inf outside the top-k, then outside the nucleus of mass top_p.

    top_k <= 0 or top_p <= 0 disables that filter. The most likely token is always kept.
    """
    logits = logits.clone()
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p > 0:
        srt, order = logits.sort(dim=-1, descending=False)
        # ascending cumulative mass; drop the low tail whose mass stays <= 1 - top_p
        drop = srt.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        drop[..., -1:] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), -torch.inf)
    return logits


@torch.no_grad()
def sample(var: VAR, vqvae: VQVAE, labels, cfg: float = 1.5, top_k: int = 900,
           top_p: float = 0.96, seed: int | None = None, return_scales: bool = False):
    """Generate images for `labels` (LongTensor [B] or list of ints in [0, num_classes]).

    Batch doubled into [cond; null]; at scale k the guidance is t = cfg * k / (K-1) and
    logits = (1+t) * cond - t * uncond; then top-k, top-p, multinomial with a generator
    seeded by `seed` (None: torch's global RNG). Returns images [B, 3, H, W] in [0, 1]
    and, with return_scales, also a list of K such images (decoded after each scale).
    """
    if var.vocab_size != vqvae.vocab_size or var.z_channels != vqvae.z_channels or \
            tuple(var.patch_nums) != tuple(vqvae.patch_nums):
        raise ValueError(
            f"VAR (vocab {var.vocab_size}, z {var.z_channels}, patch_nums {var.patch_nums}) does not "
            f"match VQVAE (vocab {vqvae.vocab_size}, z {vqvae.z_channels}, patch_nums {vqvae.patch_nums})")
    device = var.lvl_1L.device
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(list(labels) if isinstance(labels, Sequence) else labels, dtype=torch.long)
    labels = labels.to(device)
    var.check_labels(labels)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))

    B, K, C = labels.shape[0], len(var.patch_nums), vqvae.z_channels
    quant = vqvae.quantize
    cond = var.class_emb(torch.cat((labels, torch.full_like(labels, var.num_classes))))
    lvl_pos = var.lvl_pos()
    x = (cond.unsqueeze(1).expand(2 * B, var.first_l, -1) + var.pos_start.expand(2 * B, -1, -1)
         + lvl_pos[:, :var.first_l])
    caches = [KVCache() for _ in var.blocks]
    H = var.patch_nums[-1]
    f_hat = torch.zeros(B, C, H, H, device=device)
    per_scale = []
    for k, pn in enumerate(var.patch_nums):
        logits = var.run_blocks(x, cond, caches=caches, masked=False)  # [2B, pn^2, V]
        t = cfg * k / (K - 1) if K > 1 else cfg
        logits = (1 + t) * logits[:B] - t * logits[B:]
        probs = top_k_top_p_filter(logits, top_k, top_p).softmax(dim=-1)
        idx = torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=gen).view(B, pn * pn)
        f_hat, nxt = quant.next_input(k, f_hat, quant.embed(idx, pn))
        if return_scales:
            per_scale.append((vqvae.fhat_to_img(f_hat) + 1) / 2)
        if k < K - 1:
            a, b = var.begin_ends[k + 1]
            x = var.word_embed(nxt.flatten(2).transpose(1, 2)) + lvl_pos[:, a:b]
            x = x.repeat(2, 1, 1)
    img = per_scale[-1] if return_scales else (vqvae.fhat_to_img(f_hat) + 1) / 2
    return (img, per_scale) if return_scales else img
