"""Class-conditional sampling with a KV cache, a CFG ramp over the scales and top-k/top-p."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    if (
        var.vocab_size != vqvae.vocab_size
        or var.z_channels != vqvae.z_channels
        or tuple(var.patch_nums) != tuple(vqvae.patch_nums)
    ):
        raise ValueError(
            f"VAR (vocab {var.vocab_size}, z {var.z_channels}, patch_nums {var.patch_nums}) does "
            "not "
            f"match VQVAE (vocab {vqvae.vocab_size}, z {vqvae.z_channels}, patch_nums "
            f"{vqvae.patch_nums})"
        )


def _check_edit(
    var: VAR, B: int, context: Sequence[torch.Tensor], keep: Sequence[torch.Tensor]
) -> None:
    K = len(var.patch_nums)
    if len(context) != K or len(keep) != K:
        raise ValueError(
            f"context and keep need one entry per scale ({K}); got {len(context)} and {len(keep)}"
        )
    for k, pn in enumerate(var.patch_nums):
        for name, t in (("context", context[k]), ("keep", keep[k])):
            if tuple(t.shape) != (B, pn * pn):
                raise ValueError(
                    f"{name}[{k}] must be [B, pn*pn] = [{B}, {pn * pn}], got {list(t.shape)}"
                )
        if keep[k].dtype != torch.bool:
            raise ValueError(f"keep[{k}] must be a bool tensor, got {keep[k].dtype}")
        if context[k].is_floating_point():
            raise ValueError(
                f"context[{k}] must hold integer token indices, got {context[k].dtype}"
            )
        if context[k].numel() and (
            int(context[k].min()) < 0 or int(context[k].max()) >= var.vocab_size
        ):
            raise ValueError(f"context[{k}] holds tokens outside [0, {var.vocab_size})")


@torch.no_grad()
def sample_idx(
    var: VAR,
    vqvae: VQVAE,
    labels,
    cfg: float = 1.5,
    top_k: int = 900,
    top_p: float = 0.96,
    seed: int | None = None,
    on_scale: Callable[[int, torch.Tensor], None] | None = None,
    *,
    context: Sequence[torch.Tensor] | None = None,
    keep: Sequence[torch.Tensor] | None = None,
    on_logits: Callable[[int, torch.Tensor], None] | None = None,
) -> list[torch.Tensor]:
    """Sample token maps for `labels` (LongTensor [B] or ints in [0, num_classes]).

    Returns K LongTensors [B, pn_k^2] (coarse to fine). on_scale(k, f_hat [B, Cvae, H, W])
    is called after each scale; on_logits(k, logits [2B, pn_k^2, V]) with the raw logits of
    the [cond; null] batch before guidance. See `sample` for the guidance and filtering rules.

    Zero-shot editing (see `var_core.editing`): with `context` (K LongTensors [B, pn_k^2],
    the tokens of a context image) and `keep` (K bool tensors [B, pn_k^2]), every scale is
    sampled as usual and then the kept positions are replaced by the context's tokens, so
    the next scales are conditioned on them (teacher forcing). The random draws are the same
    as without editing: an all-False `keep` gives exactly the plain samples of `seed`.
    """
    _check_pair(var, vqvae)
    device = var.lvl_1L.device
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(
            list(labels) if isinstance(labels, Sequence) else [labels], dtype=torch.long
        )
    labels = labels.to(device)
    var.check_label_values(labels)  # labels enter here: one host read per call
    if (context is None) != (keep is None):
        raise ValueError("context and keep go together: give both (editing) or neither")
    if context is not None and keep is not None:
        _check_edit(var, labels.shape[0], context, keep)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))

    B, K, C = labels.shape[0], len(var.patch_nums), vqvae.z_channels
    quant = vqvae.quantize
    cond = var.class_emb(torch.cat((labels, torch.full_like(labels, var.num_classes))))
    lvl_pos = var.lvl_pos()
    x = (
        cond.unsqueeze(1).expand(2 * B, var.first_l, -1)
        + var.pos_start.expand(2 * B, -1, -1)
        + lvl_pos[:, : var.first_l]
    )
    caches = [KVCache() for _ in var.blocks]  # keys/values of every scale so far: no mask needed
    H = var.patch_nums[-1]
    f_hat = torch.zeros(B, C, H, H, device=device)
    out = []
    for k, pn in enumerate(var.patch_nums):
        logits = var.run_blocks(x, cond, caches=caches, masked=False)  # [2B, pn^2, V]
        if on_logits is not None:
            on_logits(k, logits)
        t = cfg * k / (K - 1) if K > 1 else cfg
        logits = (1 + t) * logits[:B] - t * logits[B:]
        probs = top_k_top_p_filter(logits, top_k, top_p).softmax(dim=-1)
        idx = torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=gen).view(B, pn * pn)
        if context is not None and keep is not None:  # teacher forcing of the kept region
            idx = torch.where(keep[k].to(device), context[k].to(device), idx)
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
def sample(
    var: VAR,
    vqvae: VQVAE,
    labels,
    cfg: float = 1.5,
    top_k: int = 900,
    top_p: float = 0.96,
    seed: int | None = None,
    return_scales: bool = False,
):
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
