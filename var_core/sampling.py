"""Class-conditional sampling with a KV cache, a CFG ramp over the scales and top-k/top-p."""

from __future__ import annotations

from typing import Callable, Sequence

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


def _check_pair(var: VAR, vqvae: VQVAE) -> None:
    if var.vocab_size != vqvae.vocab_size or var.z_channels != vqvae.z_channels or \
            tuple(var.patch_nums) != tuple(vqvae.patch_nums):
        raise ValueError(
            f"VAR (vocab {var.vocab_size}, z {var.z_channels}, patch_nums {var.patch_nums}) does not "
            f"match VQVAE (vocab {vqvae.vocab_size}, z {vqvae.z_channels}, patch_nums {vqvae.patch_nums})")


@torch.no_grad()
def sample_idx(var: VAR, vqvae: VQVAE, labels, cfg: float = 1.5, top_k: int = 900,
               top_p: float = 0.96, seed: int | None = None,
               on_scale: Callable[[int, torch.Tensor], None] | None = None) -> list[torch.Tensor]:
    """Sample token maps for `labels` (LongTensor [B] or ints in [0, num_classes]).

    Returns K LongTensors [B, pn_k^2] (coarse to fine). on_scale(k, f_hat [B, Cvae, H, W])
    is called after each scale. See `sample` for the guidance and filtering rules.
    """
    _check_pair(var, vqvae)
    device = var.lvl_1L.device
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(list(labels) if isinstance(labels, Sequence) else [labels],
                                 dtype=torch.long)
    labels = labels.to(device)
    var.check_label_values(labels)  # labels enter here: one host read per call
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
    caches = [KVCache() for _ in var.blocks]  # keys/values of every scale so far: no mask needed
    H = var.patch_nums[-1]
    f_hat = torch.zeros(B, C, H, H, device=device)
    out = []
    for k, pn in enumerate(var.patch_nums):
        logits = var.run_blocks(x, cond, caches=caches, masked=False)  # [2B, pn^2, V]
        t = cfg * k / (K - 1) if K > 1 else cfg
        logits = (1 + t) * logits[:B] - t * logits[B:]
        probs = top_k_top_p_filter(logits, top_k, top_p).softmax(dim=-1)
        idx = torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=gen).view(B, pn * pn)
        out.append(idx)
        f_hat, nxt = quant.next_input(k, f_hat, quant.embed(idx, pn))
        if on_scale is not None:
            on_scale(k, f_hat)
        if k < K - 1:
            a, b = var.begin_ends[k + 1]
            x = var.word_embed(nxt.flatten(2).transpose(1, 2)) + lvl_pos[:, a:b]
            x = x.repeat(2, 1, 1)  # same next input for the cond and the null half
    return out


@torch.no_grad()
def sample(var: VAR, vqvae: VQVAE, labels, cfg: float = 1.5, top_k: int = 900,
           top_p: float = 0.96, seed: int | None = None, return_scales: bool = False):
    """Generate images for `labels` (LongTensor [B] or list of ints in [0, num_classes]).

    Batch doubled into [cond; null]; at scale k the guidance is t = cfg * k / (K-1) and
    logits = (1+t) * cond - t * uncond; then top-k, top-p, multinomial with a generator
    seeded by `seed` (None: torch's global RNG). Returns images [B, 3, H, W] in [0, 1]
    and, with return_scales, (images, list of K images decoded after each scale).
    """
    f_hats: list[torch.Tensor] = []
    per_scale: list[torch.Tensor] = []

    def keep(k: int, f_hat: torch.Tensor) -> None:
        if return_scales:
            per_scale.append((vqvae.fhat_to_img(f_hat) + 1) / 2)
        f_hats[:] = [f_hat]

    sample_idx(var, vqvae, labels, cfg, top_k, top_p, seed, on_scale=keep)
    img = per_scale[-1] if return_scales else (vqvae.fhat_to_img(f_hats[0]) + 1) / 2
    return (img, per_scale) if return_scales else img
