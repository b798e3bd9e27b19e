"""Attention backends behind one function, `attend`.

- "sdpa": `F.scaled_dot_product_attention` with an additive (float, -inf) or boolean
  block-causal mask; works on every device.
- "flex": `torch.nn.attention.flex_attention` with a block mask built from each token's
  scale index (`make_block_mask`); compiled on CUDA; elsewhere eager, forward only (slow, for
  tests; a backward raises a clear error).
- "math": explicit q k^T, mask, softmax, @ v (a readable reference; FLOP counters see it).
- "auto": flex on CUDA, sdpa otherwise.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "sdpa", "flex", "math")


def _flex_module():
    try:
        from torch.nn.attention import flex_attention as fa
    except ImportError as e:  # pragma: no cover - old torch
        raise RuntimeError(
            f"attention backend 'flex' needs torch.nn.attention.flex_attention "
            f"(torch >= 2.5); this torch is {torch.__version__}"
        ) from e
    return fa


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    # One compiled kernel per process: compilation is expensive, the function is pure.
    return torch.compile(_flex_module().flex_attention, dynamic=False)


def make_block_mask(levels: torch.Tensor):
    """Block-causal flex BlockMask from levels [L] (scale index of each token).

    Token i may attend token j iff levels[j] <= levels[i].
    """
    fa = _flex_module()
    lv = levels.reshape(-1)
    L = lv.numel()

    def mask_mod(b, h, q_idx, kv_idx):
        return lv[kv_idx] <= lv[q_idx]

    return fa.create_block_mask(mask_mod, B=None, H=None, Q_LEN=L, KV_LEN=L, device=lv.device)


def resolve_backend(backend: str, device: torch.device) -> str:
    """Turn "auto" into a concrete backend for `device`; validate the name."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "flex" if device.type == "cuda" else "sdpa"
    return backend


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    backend: str = "auto",
    mask: torch.Tensor | None = None,
    block_mask=None,
    scale: float = 1.0,
) -> torch.Tensor:
    """Scaled dot-product attention.

    q: [B, H, Lq, c]; k, v: [B, H, Lk, c] -> [B, H, Lq, c].
    mask: for "sdpa" and "math", an additive float or boolean (True = keep) mask
    broadcastable to [B, H, Lq, Lk]; None = attend to everything (e.g. with a KV cache).
    block_mask: a flex BlockMask (from `make_block_mask`) for "flex"; flex without a block
    mask falls back to unmasked sdpa (identical maths).
    """
    backend = resolve_backend(backend, q.device)
    if backend == "math":
        w = (q * scale) @ k.transpose(-2, -1)  # [B, H, Lq, Lk]
        if mask is not None:
            w = (
                w.masked_fill(~mask, -torch.inf)
                if mask.dtype == torch.bool
                else w + mask.to(w.dtype)
            )
        return w.softmax(dim=-1) @ v
    if backend == "flex" and block_mask is None and mask is not None:
        raise ValueError(
            "attention backend 'flex' needs block_mask (see make_block_mask), got only mask"
        )
    if backend == "sdpa" or block_mask is None:
        if mask is not None and mask.dtype != torch.bool and mask.dtype != q.dtype:
            mask = mask.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if q.device.type == "cuda":
        return _compiled_flex()(q, k, v, block_mask=block_mask, scale=scale)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        raise RuntimeError(
            f"attention backend 'flex' on {q.device.type} runs eagerly and torch does "
            f"not support its backward there; train with backend 'sdpa' (or 'auto')"
        )
    with warnings.catch_warnings():  # eager flex warns that it is unfused; expected off-GPU
        warnings.simplefilter("ignore")
        return _flex_module().flex_attention(q, k, v, block_mask=block_mask, scale=scale)
