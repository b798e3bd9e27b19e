"""The fast path (the chosen precision, attention backend, compile) and the checks that it
computes what the plain path does.

The plain path is fp32 SDPA with full logits and F.cross_entropy. Checked on the same
weights and batch: the loss and the gradients of the fast path against the plain one, and
the KV-cache sampler (top_k=1, fp32) against the teacher-forced, block-masked forward of the
chosen backend on the tokens it drew (FlexAttention really runs there with its block mask;
the cached sampler itself needs no mask).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings
from collections.abc import Iterator
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F

from scaling.core.runtime import Policy, resolve
from scaling.tools.bench.geometry import Geometry, make_vqvae
from scaling.training.config import RuntimeConfig
from scaling.training.inputs import split_scales
from var_core import VAR, make_block_mask, sample
from var_core.attention import resolve_backend

# A stronger initialisation than the official one for the checks: with the official AdaLN
# gamma of 1e-5 every block is nearly the identity and the logits nearly uniform, so an error
# in attention or in the head would barely move the loss.
CHECK_INIT = dict(init_head=1.0, init_adaln_gamma=0.5)


@dataclasses.dataclass(frozen=True)
class FastPath:
    """The runtime knobs of the trainer being benchmarked (a RuntimeConfig's, resolved)."""

    precision: str = "bf16"  # "bf16" (autocast, fp32 master weights) or "fp32"
    attn_backend: str = "auto"
    compile: bool = False
    activation_checkpointing: bool = False
    tf32: bool | None = None  # None: the runtime policy's choice (on for CUDA)
    threads: int | None = None  # None: the runtime policy's choice

    @staticmethod
    def of(policy: Policy, attn_backend: str, activation_checkpointing: bool) -> FastPath:
        """The fast path of a resolved runtime policy, its attention backend resolved too."""
        return FastPath(
            precision=policy.precision,
            attn_backend=resolve_backend(attn_backend, policy.device),
            compile=policy.compile,
            activation_checkpointing=activation_checkpointing,
            tf32=policy.tf32,
            threads=policy.threads,
        )

    def runtime(self, device: torch.device) -> RuntimeConfig:
        """The RuntimeConfig a trainer on `device` gets for this fast path."""
        # the names come from a resolved Policy and resolve_backend, which validate them
        return RuntimeConfig(
            device=cast(Literal["cpu", "cuda"], device.type),
            precision=cast(Literal["fp32", "bf16"], self.precision),
            attn_backend=cast(Literal["sdpa", "flex", "math"], self.attn_backend),
            compile=self.compile,
            tf32=self.tf32,
            num_threads=self.threads,
            activation_checkpointing=self.activation_checkpointing,
        )

    def label(self) -> str:
        """Short name for the table, e.g. "bf16+flex+compile"."""
        parts = [self.precision, self.attn_backend]
        if self.compile:
            parts.append("compile")
        if self.activation_checkpointing:
            parts.append("ckpt")
        return "+".join(parts)


def fast_path_of(config: Any, device: torch.device) -> FastPath:
    """The FastPath (table label, checks) of a run config's runtime, resolved for `device`."""
    return FastPath.of(
        resolve(config.runtime, device=device),
        config.runtime.attn_backend,
        config.runtime.activation_checkpointing,
    )


@dataclasses.dataclass
class Check:
    """One fast-path correctness check."""

    name: str
    value: float
    tolerance: float | None  # None: informational
    passed: bool | None

    @staticmethod
    def at_most(name: str, value: float, tolerance: float) -> Check:
        """A check that passes when `value <= tolerance`."""
        return Check(name, value, tolerance, bool(value <= tolerance))


def _got(grads: list[torch.Tensor] | None) -> list[torch.Tensor]:
    """The gradients of a `loss_and_grads(..., grads=True)` call (never None there)."""
    assert grads is not None
    return grads


def loss_and_grads(
    model,
    labels,
    x_in,
    tokens,
    precision: str,
    device: torch.device,
    grads: bool = True,
    chunked: bool = False,
) -> tuple[float, list[torch.Tensor] | None]:
    """Mean CE over all tokens of labels [B], x_in [B, L - first, Cvae], tokens [B, L] and,
    with `grads`, the fp32 gradients (one per parameter, zeros where none).

    chunked=False: the plain path (full logits, F.cross_entropy); True: the trainer's
    (model(labels, x_in, tokens), var_core.loss). `precision` through the runtime policy.
    """
    numerics = resolve(device=device, precision=precision)
    model.zero_grad(set_to_none=True)
    with contextlib.nullcontext() if grads else torch.no_grad():
        with numerics.autocast():
            if chunked:
                loss = model(labels, x_in, tokens)
            else:
                logits = model(labels, x_in)
        if not chunked:
            loss = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
        if not grads:
            return loss.item(), None
        loss.backward()
    return loss.item(), [
        (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().clone()
        for p in model.parameters()
    ]


def grad_rel(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    """||got - ref|| / ||ref|| over all parameters together (L2)."""
    num = math.sqrt(sum(float((g - r).double().square().sum()) for g, r in zip(got, ref)))
    den = math.sqrt(sum(float(r.double().square().sum()) for r in ref))
    return num / den


@contextlib.contextmanager
def record_sampled_tokens(vqvae) -> Iterator[list[torch.Tensor]]:
    """Collect the token maps [B, pn^2] that `var_core.sample` draws (via quantize.embed)."""
    quant = vqvae.quantize
    original = quant.embed
    seen: list[torch.Tensor] = []

    def embed(idx, pn):
        seen.append(idx.detach().cpu())
        return original(idx, pn)

    quant.embed = embed  # instance attribute shadows the method, removed below
    try:
        yield seen
    finally:
        del quant.embed


def sampled_tokens(
    var, vqvae, labels: torch.Tensor, precision: str, device: torch.device, top_k: int = 1
) -> torch.Tensor:
    """Tokens [B, L] drawn by var_core.sample (cfg 1.5, top_p 0 so that top_k=1 is argmax)."""
    with (
        record_sampled_tokens(vqvae) as seen,
        resolve(device=device, precision=precision).autocast(),
    ):
        sample(var, vqvae, labels, cfg=1.5, top_k=top_k, top_p=0.0, seed=0)
    return torch.cat(seen, dim=1)


@torch.no_grad()
def sampler_vs_teacher_forced(var, vqvae, labels: torch.Tensor, device: torch.device) -> float:
    """Relative max error between the logits the KV-cache sampler computes (fp32, top_k=1,
    scale by scale through its cache, no mask) and the logits of `var`'s teacher-forced,
    block-masked forward on the tokens the sampler drew (both halves: class and null).

    Both sides share the weights and nothing else: the sampler attends through its cache,
    the forward through the attention backend's block mask (FlexAttention's BlockMask for
    "flex"), so the check fails if either the cache or the backend's masking is wrong.
    Returns max |sampler - forward| / max |forward| over all tokens and classes.
    """
    var = var.eval()
    seen: list[torch.Tensor] = []
    original = var.run_blocks

    def run_blocks(*a, **k):
        out = original(*a, **k)
        seen.append(out.float())
        return out

    var.run_blocks = run_blocks  # instance attribute shadows the method, removed below
    try:
        drawn = sampled_tokens(var, vqvae, labels, "fp32", device)  # [B, L]
    finally:
        del var.run_blocks
    cached = torch.cat(seen, dim=1)  # [2B, L, V]: class half then null half
    x_in = vqvae.quantize.idx_to_var_input(split_scales(drawn.to(device), var.patch_nums))
    null = torch.full_like(labels, var.num_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forced = var(torch.cat((labels, null)), x_in.repeat(2, 1, 1))  # [2B, L, V]
    return float((cached - forced).abs().max() / forced.abs().max())


@functools.cache
def flex_supported(device: torch.device) -> tuple[bool, bool, str]:
    """(forward works, backward works, reason if not) for FlexAttention on `device`.

    Probed with a 16-token block-causal attention (eager; the result is cached per device).
    """
    try:  # not in every torch build
        from torch.nn.attention import flex_attention as fa
    except ImportError:
        return False, False, f"torch {torch.__version__} has no torch.nn.attention.flex_attention"

    levels = torch.arange(16, device=device) // 4
    gen = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(1, 1, 16, 16, generator=gen).to(device).requires_grad_() for _ in range(3)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            block_mask = make_block_mask(levels)
            fa.flex_attention(q.detach(), k.detach(), v.detach(), block_mask=block_mask)
        except Exception as e:  # noqa: BLE001 - any failure means "not on this device"
            return (
                False,
                False,
                (f"FlexAttention forward fails on {device.type} in torch {torch.__version__}: {e}"),
            )
        try:
            fa.flex_attention(q, k, v, block_mask=block_mask).sum().backward()
        except Exception as e:  # noqa: BLE001
            return (
                True,
                False,
                (
                    f"FlexAttention backward fails on {device.type} in torch "
                    f"{torch.__version__}: {type(e).__name__}: {str(e).splitlines()[0]}"
                ),
            )
    return True, True, ""


def _twin(var_kwargs: dict, attn_backend: str, plain: VAR, device: torch.device) -> VAR:
    """A VAR with `plain`'s weights and another attention backend, eval mode, on `device`."""
    model = VAR(**var_kwargs, attn_backend=attn_backend).to(device).eval()
    model.load_state_dict(plain.state_dict())
    return model


def fast_path_checks(
    var_kwargs: dict,
    geometry: Geometry,
    fast: FastPath,
    device: torch.device,
    *,
    batch: int,
    vqvae=None,
    quantizer=None,
    seed: int = 0,
) -> list[Check]:
    """Fast path vs plain fp32 SDPA on the same weights and batch (eval mode: no dropout).

    The fast path computes its loss as the trainer does (chunked, var_core.loss); the plain
    path from full fp32 logits with F.cross_entropy.

    Checks: loss relative difference, gradient relative L2 error (all parameters), and
    sampler tokens with top_k=1 (fraction equal; must be 1 when both run in fp32, reported
    for bf16, where near-ties of random-weight logits may legitimately flip an argmax).
    FlexAttention is also compared with SDPA at fp32 when it runs on `device`.
    Tolerances: fp32 loss 1e-5 / grads 1e-4; bf16 loss 1e-2 / grads 5e-2.
    The models get CHECK_INIT; their weights come from `seed` on a forked RNG (the caller's
    torch RNG is left as it was).
    """
    var_kwargs = {**var_kwargs, **CHECK_INIT}

    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, geometry.vocab_size, (batch, geometry.L), generator=gen).to(device)
    labels = torch.randint(0, geometry.num_classes, (batch,), generator=gen).to(device)
    if quantizer is None:
        quantizer = vqvae.quantize if vqvae is not None else make_vqvae(geometry, device).quantize
    with torch.no_grad():
        x_in = quantizer.idx_to_var_input(split_scales(tokens, geometry.patch_nums))

    flex_fwd, flex_bwd, _ = flex_supported(device)
    backend = resolve_backend(fast.attn_backend, device)
    uses_flex = backend == "flex"
    can_grad = not uses_flex or flex_bwd
    with torch.random.fork_rng(devices=[]):  # built on the CPU (then moved) from `seed`
        torch.manual_seed(seed)
        plain = VAR(**var_kwargs, attn_backend="sdpa").to(device).eval()
        fast_model = _twin(var_kwargs, fast.attn_backend, plain, device)
        flex_model = (
            _twin(var_kwargs, "flex", plain, device) if flex_fwd and not uses_flex else None
        )
    run_fast = torch.compile(fast_model) if fast.compile else fast_model

    checks: list[Check] = []
    bf16 = fast.precision == "bf16"
    loss_tol, grad_tol = (1e-2, 5e-2) if bf16 else (1e-5, 1e-4)
    ref_loss, ref_grads = loss_and_grads(plain, labels, x_in, tokens, "fp32", device)
    if can_grad:
        loss, grads = loss_and_grads(
            run_fast, labels, x_in, tokens, fast.precision, device, chunked=True
        )
        checks.append(
            Check.at_most(
                f"loss rel diff, {fast.label()} vs fp32 sdpa",
                abs(loss - ref_loss) / abs(ref_loss),
                loss_tol,
            )
        )
        checks.append(
            Check.at_most(
                f"grad rel L2 error, {fast.label()} vs fp32 sdpa",
                grad_rel(_got(grads), _got(ref_grads)),
                grad_tol,
            )
        )
    else:
        loss, _ = loss_and_grads(
            run_fast, labels, x_in, tokens, fast.precision, device, grads=False, chunked=True
        )
        checks.append(
            Check.at_most(
                f"loss rel diff (no grad: flex backward unsupported), {fast.label()} vs fp32 sdpa",
                abs(loss - ref_loss) / abs(ref_loss),
                loss_tol,
            )
        )
    if bf16 and can_grad:  # the same backend at fp32: isolates the kernel from the precision
        loss32, grads32 = loss_and_grads(
            run_fast, labels, x_in, tokens, "fp32", device, chunked=True
        )
        checks.append(
            Check.at_most(
                f"loss rel diff, fp32+{backend} vs fp32 sdpa",
                abs(loss32 - ref_loss) / abs(ref_loss),
                1e-5,
            )
        )
        checks.append(
            Check.at_most(
                f"grad rel L2 error, fp32+{backend} vs fp32 sdpa",
                grad_rel(_got(grads32), _got(ref_grads)),
                1e-4,
            )
        )
    if flex_model is not None:
        fl, _ = loss_and_grads(flex_model, labels, x_in, tokens, "fp32", device, grads=flex_bwd)
        checks.append(
            Check.at_most(
                "loss rel diff, fp32 flex vs fp32 sdpa", abs(fl - ref_loss) / abs(ref_loss), 1e-5
            )
        )

    if vqvae is not None:
        sample_labels = labels[: min(batch, 8)]
        checks.append(
            Check.at_most(
                f"sampler (KV cache) logits vs teacher-forced fp32 {backend}, rel max error",
                sampler_vs_teacher_forced(fast_model, vqvae, sample_labels, device),
                1e-4,
            )
        )
        if bf16:
            ref_tok = sampled_tokens(plain, vqvae, sample_labels, "fp32", device)
            got = sampled_tokens(fast_model, vqvae, sample_labels, "bf16", device)
            checks.append(
                Check(
                    "sampler top_k=1 tokens equal, bf16 vs fp32 (fraction)",
                    float((got == ref_tok).float().mean()),
                    None,
                    None,
                )
            )
    return checks
