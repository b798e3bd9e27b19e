"""Exact parameter counts and forward FLOPs of a VAR model, from its configuration alone.

FLOP convention (`forward_flops`): per image, teacher-forced forward over all L tokens,
2 FLOPs per multiply-add, matrix multiplications only (no norms, softmax, activations,
embedding look-ups, biases or residual adds). With C = width, Cv = z_channels, V = vocab,
F = round(C * mlp_ratio), L = sum n_k (n_k = pn_k^2) and
P = sum_k n_k * (n_1 + ... + n_k) = number of (query, key) pairs the block-causal mask allows:

    word_embed           2 (L - n_1) Cv C
    per block  ada_lin   2 C 6C            (once per image; shared AdaLN: once per model)
               qkv       2 L C 3C
               scores    2 P C             (q.k over allowed pairs only)
               values    2 P C             (attention-weighted sum of v)
               proj      2 L C^2
               fc1, fc2  2 L C F each
    head_nm ada_lin      2 C 2C
    head                 2 L C V

`train_flops_per_image` = 3 x forward (backward costs twice the forward): the one place this
convention is written; trainer, estimates, planner and benchmark call it. `tokens_per_image`
= L, and `flops_6nd` = 6 N D, the usual approximation the records carry next to the exact count.

This module is torch-free (`import var_core.counting` does not import torch), so planning
and fitting tools can count FLOPs without it.
"""

from __future__ import annotations

from .scales import DEFAULT_PATCH_NUMS  # torch-free: counting never imports torch

# VAR kwargs that change neither parameter count nor FLOPs
_NO_EFFECT = {
    "drop_path",
    "cond_drop",
    "norm_eps",
    "init_adaln",
    "init_adaln_gamma",
    "init_head",
    "init_std",
    "attn_backend",
}


def _resolve(
    depth: int,
    width=None,
    heads=None,
    num_classes=1000,
    vocab_size=4096,
    z_channels=32,
    patch_nums=DEFAULT_PATCH_NUMS,
    mlp_ratio=4.0,
    attn_l2_norm=True,
    shared_aln=False,
    **rest,
) -> dict:
    unknown = set(rest) - _NO_EFFECT
    if unknown:
        raise TypeError(f"unknown VAR kwargs {sorted(unknown)}")
    width = 64 * depth if width is None else width
    heads = depth if heads is None else heads
    return dict(
        depth=depth,
        C=width,
        H=heads,
        num_classes=num_classes,
        V=vocab_size,
        Cv=z_channels,
        pns=tuple(patch_nums),
        F=round(width * mlp_ratio),
        l2=attn_l2_norm,
        shared=shared_aln,
    )


def params(depth: int, **var_kwargs) -> int:
    """Exact number of parameters (buffers excluded) of VAR(depth, **var_kwargs).

    Defaults: N(d) = 18 d C^2 + 14 d C + d^2 + 2 C^2 + 5823 C + 4096 with C = 64 d.
    """
    c = _resolve(depth, **var_kwargs)
    C, F, d = c["C"], c["F"], c["depth"]
    L, first_l, K = tokens_per_image(c["pns"]), c["pns"][0] ** 2, len(c["pns"])
    n = c["Cv"] * C + C  # word_embed
    n += (c["num_classes"] + 1) * C  # class_emb (+ null class)
    n += first_l * C + L * C + K * C  # pos_start, pos_1LC, lvl_embed
    block = 3 * C * C + 2 * C  # mat_qkv (no bias) + q_bias, v_bias
    block += c["H"] if c["l2"] else 0  # scale_mul_1H11
    block += C * C + C  # proj
    block += C * F + F + F * C + C  # fc1, fc2
    block += 6 * C if c["shared"] else 6 * C * C + 6 * C  # ada_gss or ada_lin
    n += d * block
    n += (6 * C * C + 6 * C) if c["shared"] else 0  # shared_ada_lin
    n += 2 * C * C + 2 * C  # head_nm
    n += C * c["V"] + c["V"]  # head
    return n


def main_params(depth: int) -> int:
    """The paper's 'main' parameter count 18 d w^2 with w = 64 d, i.e. 73728 d^3."""
    return 73728 * depth**3


def attention_pairs(patch_nums=DEFAULT_PATCH_NUMS) -> int:
    """P = sum_k n_k (n_1 + ... + n_k): (query, key) pairs allowed by the block-causal mask."""
    total, seen = 0, 0
    for p in patch_nums:
        seen += p * p
        total += p * p * seen
    return total


def forward_flops(**var_kwargs) -> int:
    """Teacher-forced forward FLOPs per image (matmuls only; see the module docstring).

    Takes the VAR constructor kwargs; `depth` is required.
    """
    if "depth" not in var_kwargs:
        raise TypeError("forward_flops needs depth=... (and optionally other VAR kwargs)")
    c = _resolve(**var_kwargs)
    C, F, d, V = c["C"], c["F"], c["depth"], c["V"]
    L, first_l = tokens_per_image(c["pns"]), c["pns"][0] ** 2
    P = attention_pairs(c["pns"])
    f = 2 * (L - first_l) * c["Cv"] * C
    per_block = 2 * L * C * 3 * C + 4 * P * C + 2 * L * C * C + 4 * L * C * F
    f += d * per_block
    f += (1 if c["shared"] else d) * 2 * C * 6 * C
    f += 2 * C * 2 * C + 2 * L * C * V
    return f


def train_flops_per_image(**var_kwargs) -> int:
    """Training FLOPs per image: 3 x forward_flops (forward + backward)."""
    return 3 * forward_flops(**var_kwargs)


def tokens_per_image(patch_nums=DEFAULT_PATCH_NUMS) -> int:
    """L = sum pn^2: the tokens of one image over all scales (680 at 256px)."""
    return sum(p * p for p in patch_nums)


def flops_6nd(params: int, tokens: int) -> int:
    """The usual approximation of training FLOPs: 6 x parameters x tokens trained on."""
    return 6 * params * tokens
