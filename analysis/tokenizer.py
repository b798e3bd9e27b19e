"""Tokenizer statistics in the analysis layer (torch-free), their one home here: the codes'
use and entropy per scale, and the comparable loss across tokenizers (bits per image).

- `code_usage` / `code_entropy` / `scale_codes`: of the codes a multi-scale VQVAE gives a set
  of images (integer arrays, one per scale, [N, pn*pn]): the fraction of the vocabulary used
  and the plug-in (maximum-likelihood) entropy of the empirical code distribution, in nats
  and bits. What the entropy of scale k means for a model's loss: it is the cross-entropy of
  the best model that ignores every context (class, earlier scales, earlier tokens) -- the
  unigram baseline. A VAR's per-scale test CE that sits above it has learnt less than the
  code frequencies; the irreducible loss of scale k (the conditional entropy given the
  context) is at most this value, so it bounds the per-scale E from above, not from below.
  The plug-in estimate itself is biased low by about (used codes - 1) / (2 n) nats for n
  codes drawn (Miller-Madow), which `ScaleCodes.bias_nats` reports.
- `bits_per_image` / `add_bits_per_image`: cross-entropies over different vocabularies and
  token counts are not comparable; the total CE of an image's tokens is, as a code length:
  bits per image = sum over scales k of (per-token CE_k in nats) x (tokens of scale k) / ln 2.
  The test evaluation's ``ce_avg`` is the token-weighted mean over the L tokens of an image
  (scaling.training.evaluate), so the same sum is ``ce_avg x L / ln 2`` with
  L = tokens / images of the run's metrics line; the table column is computed that way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

LN2 = math.log(2.0)
BITS_COLUMN = "bits_per_image"


def _codes(codes: np.ndarray | Sequence[int], vocab_size: int) -> np.ndarray:
    a = np.asarray(codes)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64).ravel()
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    if a.size and (a.min() < 0 or a.max() >= vocab_size):
        raise ValueError(
            f"codes must lie in [0, {vocab_size}), got values from {a.min()} to {a.max()}"
        )
    return a


def code_counts(codes: np.ndarray | Sequence[int], vocab_size: int) -> np.ndarray:
    """How often each code occurs: codes (any shape, integers in [0, V)) -> counts [V]."""
    return np.bincount(_codes(codes, vocab_size), minlength=vocab_size)


def code_usage(codes: np.ndarray | Sequence[int], vocab_size: int) -> float:
    """Fraction of the vocabulary that occurs at least once in `codes` (any shape)."""
    return float((code_counts(codes, vocab_size) > 0).sum() / vocab_size)


def code_entropy(codes: np.ndarray | Sequence[int], vocab_size: int) -> float:
    """Plug-in entropy in nats of the empirical distribution of `codes` (any shape):
    -sum_v p_v ln p_v with p_v = count_v / n. Raises ValueError on an empty array."""
    counts = code_counts(codes, vocab_size)
    n = counts.sum()
    if n == 0:
        raise ValueError("no codes: the entropy of an empty set is undefined")
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum())


@dataclasses.dataclass(frozen=True)
class ScaleCodes:
    """The codes of one scale over a set of images."""

    scale: int  # 0-based, coarse to fine
    pn: int  # the token map is pn x pn
    count: int  # codes seen (images x pn^2)
    used: int  # distinct codes seen
    usage: float  # used / vocab_size
    entropy_nats: float  # plug-in entropy of the code distribution
    entropy_bits: float  # the same in bits (/ ln 2)
    bias_nats: float  # Miller-Madow estimate of the plug-in's low bias: (used - 1) / (2 count)


def scale_codes(
    codes: Sequence[np.ndarray], vocab_size: int, patch_nums: Sequence[int] | None = None
) -> list[ScaleCodes]:
    """Usage and entropy per scale: codes[k] holds scale k's codes of every image ([N, pn*pn]
    or any shape); patch_nums (optional) checks that scale k has pn_k^2 codes per image."""
    out = []
    for k, c in enumerate(codes):
        a = np.asarray(c)
        pn = int(round(math.sqrt(a.shape[-1]))) if a.ndim >= 2 else 1
        if patch_nums is not None:
            if len(patch_nums) != len(codes):
                raise ValueError(f"{len(codes)} scales of codes for patch_nums {list(patch_nums)}")
            pn = int(patch_nums[k])
            if a.ndim >= 2 and a.shape[-1] != pn * pn:
                raise ValueError(
                    f"scale {k}: {a.shape[-1]} codes per image, patch_nums says {pn}x{pn}"
                )
        counts = code_counts(a, vocab_size)
        n, used = int(counts.sum()), int((counts > 0).sum())
        h = code_entropy(a, vocab_size)
        out.append(
            ScaleCodes(
                scale=k,
                pn=pn,
                count=n,
                used=used,
                usage=used / vocab_size,
                entropy_nats=h,
                entropy_bits=h / LN2,
                bias_nats=(used - 1) / (2 * n),
            )
        )
    return out


def bits_per_image(ce_by_scale: Sequence[float], tokens_by_scale: Sequence[int]) -> float:
    """Total cross-entropy of an image's tokens in bits: sum_k ce_k [nats/token] x n_k / ln 2,
    with n_k = pn_k^2 the tokens of scale k."""
    if len(ce_by_scale) != len(tokens_by_scale):
        raise ValueError(
            f"{len(ce_by_scale)} per-scale CEs for {len(tokens_by_scale)} scales of tokens"
        )
    return float(sum(c * n for c, n in zip(ce_by_scale, tokens_by_scale)) / LN2)


def add_bits_per_image(table: pd.DataFrame) -> pd.DataFrame:
    """The table with a ``bits_per_image`` column (ce_avg x L / ln 2, L = tokens / images per
    row; see the module docstring) where it has ce_avg, tokens and images and no such
    column yet; otherwise unchanged. Rows without those values get NaN."""
    if BITS_COLUMN in table.columns or not {"ce_avg", "tokens", "images"} <= set(table.columns):
        return table
    images = pd.to_numeric(table["images"], errors="coerce")
    L = pd.to_numeric(table["tokens"], errors="coerce") / images.where(images > 0)
    table = table.copy()
    table[BITS_COLUMN] = pd.to_numeric(table["ce_avg"], errors="coerce") * L / LN2
    return table


def join_quality(table: pd.DataFrame, by_store: dict[str, dict]) -> pd.DataFrame:
    """The table with each run's tokenizer-quality columns (``tok_*``,
    `contracts.tokenizer.TokenizerQuality.columns`) on its rows, matched by the run's token
    store (column ``data.store``); rows of other stores get NaN. Unchanged without either."""
    if not by_store or "data.store" not in table.columns:
        return table
    rows = pd.DataFrame.from_dict(by_store, orient="index")
    rows.index.name = "data.store"
    table = table.drop(columns=[c for c in rows.columns if c in table.columns])
    store = table["data.store"].astype(str)
    joined = rows.reindex(store.to_numpy())
    joined.index = table.index
    return pd.concat([table, joined], axis=1)
