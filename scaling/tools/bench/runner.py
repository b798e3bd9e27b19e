"""Throughput, memory and correctness benchmark of the project's VAR trainer on one device.

    python -m scaling.bench                                   # d16 b64 and d30 b16 on the GPU
    python -m scaling.bench --depths 16 30 --batch 64 16 --what train eval sample tokenize \
        --official /path/to/VAR --out docs/benchmarks.md      # side by side with the official code
    python -m scaling.bench --device cpu --tiny --depths 2 --batch 4 --steps 2 --repeats 2
    python -m scaling.bench --sweep sweeps/depth_grid.yaml --depths 16 30   # what that sweep runs

Runtime policy (scaling.runtime, printed with the table): without --sweep the trainer's own
defaults (RuntimeConfig(): bf16 autocast on CUDA, TF32 on CUDA, compile off), changed by the
flags; with --sweep each size runs with exactly the run config the sweep gives it (model,
runtime: precision, TF32, compile, attention backend, micro-batch, threads) at one process's
share of the global batch (batch_size / (nodes x GPUs per node)), on random tokens of the
sweep's geometry (vocab, scales, classes; official VQVAE size).

What is timed (each CUDA-synchronised, warm-up excluded, median over `--repeats` timings):
  train     `scaling.training.trainer.Trainer.train_step` on a temporary token store of random tokens
            (data gather, teacher-forcing input, forward, loss, backward, clip, AdamW);
            the RunConfig knobs precision / attn_backend / compile / activation_checkpointing
            come from the command line.
  eval      `Trainer.evaluate` (teacher-forced forward + CE / error metrics), batch --eval-batch.
  sample    `var_core.sample` (cfg 1.5, top-k 900, top-p 0.96), batch --sample-batch.
  tokenize  `VQVAE.img_to_idx` (encoder + multi-scale quantizer, random weights, official size)
            in fp32 and with a bf16 channels-last encoder (the quantizer always runs in fp32).
  official  with --official PATH: the official VAR code imported from PATH at run time (never
            copied), its trainer's step (VQVAE encode each step, fp16 AMP + GradScaler on
            CUDA) and the same step on pre-tokenised data.
Fast-path checks (always run): the fast path (the chosen precision / backend / compile) against
the plain fp32 SDPA path on the same weights and batch: loss and gradient relative errors;
and the KV-cache sampler (top_k=1, fp32) against the teacher-forced, block-masked forward of
the chosen backend on the tokens it drew (FlexAttention really runs there with its block
mask; the cached sampler itself needs no mask).

FLOP conventions: "exact" = var_core.counting (matmuls incl. block-causal attention pairs and
the head; training = 3 x forward); "6NL" = 6 * params * L per trained image (2 * params * L per
evaluated image). A sampled image costs 2 x forward_flops (the batch is doubled for CFG; the
KV cache makes the sum over scales equal to one teacher-forced pass), VQVAE decoding not counted.
MFU = achieved / a measured dense matmul peak (bf16 8192^3 on CUDA, fp32 on CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import datetime
import gc
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from scaling.core.atomic import atomic_write_text

WHATS = ("train", "eval", "sample", "tokenize")


# ----------------------------------------------------------------------------- geometry

@dataclasses.dataclass(frozen=True)
class Geometry:
    """Token geometry and VQVAE size of the benchmark (default: the official 256px release)."""

    vocab_size: int = 4096
    z_channels: int = 32
    vqvae_ch: int = 160
    vqvae_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # downsample 2^(len - 1)
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    num_classes: int = 1000

    @property
    def L(self) -> int:
        return sum(p * p for p in self.patch_nums)


OFFICIAL = Geometry()
# small enough for a CPU test: 30 tokens, 8px images (VQVAE downsample 2)
TINY = Geometry(vocab_size=64, z_channels=8, vqvae_ch=32, vqvae_ch_mult=(1, 2),
                patch_nums=(1, 2, 3, 4), num_classes=10)


@dataclasses.dataclass(frozen=True)
class FastPath:
    """The runtime knobs of the trainer being benchmarked (scaling.training.config.RuntimeConfig)."""

    precision: str = "bf16"  # "bf16" (autocast, fp32 master weights) or "fp32"
    attn_backend: str = "auto"
    compile: bool = False
    activation_checkpointing: bool = False
    tf32: bool | None = None  # None: the runtime policy's choice (on for CUDA)
    threads: int | None = None  # None: the runtime policy's choice

    def label(self) -> str:
        parts = [self.precision, self.attn_backend]
        if self.compile:
            parts.append("compile")
        if self.activation_checkpointing:
            parts.append("ckpt")
        return "+".join(parts)


def make_vqvae(geometry: Geometry, device: torch.device, seed: int = 0):
    """A randomly initialised VQVAE of the geometry's size, eval mode, frozen, on `device`."""
    from var_core import VQVAE

    torch.manual_seed(seed)
    vqvae = VQVAE(vocab_size=geometry.vocab_size, z_channels=geometry.z_channels,
                  ch=geometry.vqvae_ch, ch_mult=geometry.vqvae_ch_mult, patch_nums=geometry.patch_nums)
    return vqvae.to(device).eval().requires_grad_(False)


def write_random_store(path: Path, geometry: Geometry, quantizer: torch.nn.Module, *,
                       n_train: int, n_val: int, seed: int = 0) -> Path:
    """A complete token store (scaling.token_store layout) of uniformly random tokens/labels.

    Tokens [n, L] uint16 and labels [n] int32 per split; `quantizer` is saved with it (the
    trainer builds its teacher-forcing input from it).
    """
    from scaling.data.token_store import FORMAT, save_quantizer

    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", n_train), ("val", n_val)):
        (path / split).mkdir(parents=True, exist_ok=True)
        np.save(path / split / "tokens.npy",
                rng.integers(0, geometry.vocab_size, size=(n, geometry.L)).astype(np.uint16))
        np.save(path / split / "labels.npy",
                rng.integers(0, geometry.num_classes, size=n).astype(np.int32))
        splits[split] = {"count": n, "flip": False}
    save_quantizer(path, quantizer)
    meta = {
        "format": FORMAT, "vqvae_sha256": "0" * 64,
        "vqvae_config": {"vocab_size": geometry.vocab_size, "z_channels": geometry.z_channels,
                         "patch_nums": list(geometry.patch_nums)},
        "vocab_size": geometry.vocab_size, "patch_nums": list(geometry.patch_nums), "L": geometry.L,
        "image_size": geometry.patch_nums[-1] * 2 ** (len(geometry.vqvae_ch_mult) - 1),
        "classes": [f"class{i}" for i in range(geometry.num_classes)],
        "num_classes": geometry.num_classes, "splits": splits,
    }
    atomic_write_text(path / "meta.json", json.dumps(meta))
    return path


# ----------------------------------------------------------------------------- timing

def log(message: str) -> None:
    """A progress line on stderr (the table itself goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_median(fn: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int,
                inner: int = 1) -> tuple[float, list[float]]:
    """Median seconds per call of `fn` over `repeats` timings of `inner` calls each.

    `warmup` calls first (compilation, autotuning, allocator growth are excluded).
    Returns (median seconds per call, all per-call timings).
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times), times


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Yields a dict; on exit its "gb" holds max_memory_allocated in GB (None off CUDA)."""
    out: dict = {"gb": None}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield out
    finally:
        if device.type == "cuda":
            synchronize(device)
            out["gb"] = torch.cuda.max_memory_allocated(device) / 1e9


def matmul_peak_tflops(device: torch.device, n: int | None = None, repeats: int = 10) -> tuple[float, str]:
    """Measured dense matmul throughput in TFLOP/s and a label of what was measured.

    CUDA: bf16 [n, n] @ [n, n] with n = 8192; CPU: fp32 with n = 1024 (a reference only).
    """
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec, _ = time_median(lambda: a @ b, device, warmup=3, repeats=repeats, inner=5)
    return 2 * n ** 3 / sec / 1e12, f"{str(dtype).removeprefix('torch.')} {n}^3 matmul"


# ----------------------------------------------------------------------------- results

@dataclasses.dataclass
class Row:
    """One timed measurement: `images` per `seconds` (median per iteration)."""

    what: str
    model: str
    batch: int
    path: str
    seconds: float
    images: int
    L: int
    flops_exact: float | None = None  # per image
    flops_6nl: float | None = None  # per image
    peak_gb: float | None = None
    vs_official: float | None = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.images_per_s * self.L

    def tflops(self, which: str) -> float | None:
        per_image = self.flops_exact if which == "exact" else self.flops_6nl
        return None if per_image is None else per_image * self.images_per_s / 1e12


@dataclasses.dataclass
class Check:
    """One fast-path correctness check."""

    name: str
    value: float
    tolerance: float | None  # None: informational
    passed: bool | None

    @staticmethod
    def at_most(name: str, value: float, tolerance: float) -> "Check":
        return Check(name, value, tolerance, bool(value <= tolerance))


COLUMNS = ("what", "model", "batch", "path", "ms/iter", "images/s", "tokens/s", "TFLOP/s exact",
           "TFLOP/s 6NL", "MFU exact", "MFU 6NL", "peak mem GB", "x official")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: Sequence[Row], peak_tflops: float) -> str:
    """Markdown table of `rows` (columns: COLUMNS)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        te, t6 = r.tflops("exact"), r.tflops("6nl")
        cells = [r.what, r.model, str(r.batch), r.path, _fmt(1e3 * r.seconds, ".2f"),
                 _fmt(r.images_per_s, ".1f"), _fmt(r.tokens_per_s, ".0f"), _fmt(te, ".3g"),
                 _fmt(t6, ".3g"), _fmt(None if te is None else 100 * te / peak_tflops, ".1f") + "%" * (te is not None),
                 _fmt(None if t6 is None else 100 * t6 / peak_tflops, ".1f") + "%" * (t6 is not None),
                 _fmt(r.peak_gb, ".2f"), _fmt(r.vs_official, ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_checks(checks: Sequence[Check]) -> str:
    """Markdown table of the fast-path checks."""
    lines = ["| check | value | tolerance | pass |", "|---|---|---|---|"]
    for c in checks:
        tol = "info" if c.tolerance is None else f"<= {c.tolerance:.0e}"
        ok = "-" if c.passed is None else ("yes" if c.passed else "NO")
        lines.append(f"| {c.name} | {c.value:.3g} | {tol} | {ok} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the trainer

def build_trainer(store: Path, run_dir: Path, *, depth: int, batch: int, eval_batch: int,
                  eval_batches: int, fast: FastPath, device: torch.device, seed: int = 0,
                  base=None):
    """A real `scaling.training.trainer.Trainer` for `depth` on `store` (long schedule, never ends here).

    `base`: a RunConfig (a sweep's run) whose model, optim and runtime are kept as they are
    (batch_size becomes `batch`, one process's share); None: the official recipe with the
    runtime knobs of `fast`.
    """
    from scaling.training.config import (DataConfig, EvalConfig, LengthConfig, ModelConfig, OptimConfig,
                                RunConfig, RuntimeConfig)
    from scaling.training.distributed import DistInfo
    from scaling.core.rundir import RunDir
    from scaling.training.trainer import Trainer

    data = DataConfig(store=store)
    length = LengthConfig(steps=1_000_000)  # the schedule never ends during the benchmark
    evals = EvalConfig(points=1, batch_size=eval_batch, max_images=eval_batch * eval_batches)
    if base is not None:
        evals = dataclasses.replace(base.eval, points=1, subset_points=0, batch_size=eval_batch,
                                    max_images=eval_batch * eval_batches)  # keeps eval.precision
        config = dataclasses.replace(
            base, run_id=f"bench-{base.run_id}-b{batch}", data=data, length=length, eval=evals,
            optim=dataclasses.replace(base.optim, batch_size=batch),
            runtime=dataclasses.replace(base.runtime, device=device.type))
    else:
        config = RunConfig(
            run_id=f"bench-d{depth}-b{batch}", data=data,
            model=ModelConfig(depth=depth), optim=OptimConfig(batch_size=batch),
            length=length, eval=evals,
            runtime=RuntimeConfig(device=device.type, precision=fast.precision,
                                  attn_backend=fast.attn_backend, compile=fast.compile,
                                  tf32=fast.tf32, num_threads=fast.threads,
                                  activation_checkpointing=fast.activation_checkpointing),
            seed=seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    dist = DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    return Trainer(config, RunDir(run_dir), dist)


def fast_path_of(config, device: torch.device) -> FastPath:
    """The FastPath (table label, checks) of a run config's runtime, resolved for `device`."""
    from scaling.core.runtime import resolve
    from var_core.attention import resolve_backend

    policy = resolve(config.runtime, device=device)
    return FastPath(precision=policy.precision,
                    attn_backend=resolve_backend(config.runtime.attn_backend, device),
                    compile=policy.compile,
                    activation_checkpointing=config.runtime.activation_checkpointing,
                    tf32=policy.tf32, threads=policy.threads)


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- fast-path checks

def _loss_and_grads(model, labels, x_in, tokens, precision: str, device: torch.device,
                    grads: bool = True, chunked: bool = False) -> tuple[float, list[torch.Tensor] | None]:
    """Mean CE over all tokens and, with `grads`, the fp32 gradients. chunked=False: the
    plain path (full logits, F.cross_entropy); True: the trainer's (model(labels, x_in,
    tokens), var_core.loss)."""
    model.zero_grad(set_to_none=True)
    with (contextlib.nullcontext() if grads else torch.no_grad()):
        with _autocast(precision, device):
            if chunked:
                loss = model(labels, x_in, tokens)
            else:
                logits = model(labels, x_in)
        if not chunked:
            loss = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
        if not grads:
            return loss.item(), None
        loss.backward()
    return loss.item(), [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().clone()
                         for p in model.parameters()]


def _grad_rel(got: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
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


def sampled_tokens(var, vqvae, labels: torch.Tensor, precision: str, device: torch.device,
                   top_k: int = 1) -> torch.Tensor:
    """Tokens [B, L] drawn by var_core.sample (cfg 1.5, top_p 0 so that top_k=1 is argmax)."""
    from var_core import sample

    with record_sampled_tokens(vqvae) as seen, _autocast(precision, device):
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
    from scaling.training.inputs import split_scales

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


@functools.lru_cache(maxsize=None)
def flex_supported(device: torch.device) -> tuple[bool, bool, str]:
    """(forward works, backward works, reason if not) for FlexAttention on `device`.

    Probed with a 16-token block-causal attention (eager; the result is cached per device).
    """
    try:
        from torch.nn.attention import flex_attention as fa
    except ImportError:
        return False, False, f"torch {torch.__version__} has no torch.nn.attention.flex_attention"
    from var_core import make_block_mask

    levels = torch.arange(16, device=device) // 4
    q, k, v = (torch.randn(1, 1, 16, 16, device=device, requires_grad=True) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            block_mask = make_block_mask(levels)
            fa.flex_attention(q.detach(), k.detach(), v.detach(), block_mask=block_mask)
        except Exception as e:  # noqa: BLE001 - any failure means "not on this device"
            return False, False, f"FlexAttention forward fails on {device.type} in torch {torch.__version__}: {e}"
        try:
            fa.flex_attention(q, k, v, block_mask=block_mask).sum().backward()
        except Exception as e:  # noqa: BLE001
            return True, False, (f"FlexAttention backward fails on {device.type} in torch "
                                 f"{torch.__version__}: {type(e).__name__}: {str(e).splitlines()[0]}")
    return True, True, ""


CHECK_INIT = dict(init_head=1.0, init_adaln_gamma=0.5)


def fast_path_checks(var_kwargs: dict, geometry: Geometry, fast: FastPath, device: torch.device, *,
                     batch: int, vqvae=None, quantizer=None, seed: int = 0) -> list[Check]:
    """Fast path vs plain fp32 SDPA on the same weights and batch (eval mode: no dropout).

    The fast path computes its loss as the trainer does (chunked, var_core.loss); the plain
    path from full fp32 logits with F.cross_entropy.

    Checks: loss relative difference, gradient relative L2 error (all parameters), and
    sampler tokens with top_k=1 (fraction equal; must be 1 when both run in fp32, reported
    for bf16, where near-ties of random-weight logits may legitimately flip an argmax).
    FlexAttention is also compared with SDPA at fp32 when it runs on `device`.
    Tolerances: fp32 loss 1e-5 / grads 1e-4; bf16 loss 1e-2 / grads 5e-2.
    The models get a stronger initialisation than the official one (CHECK_INIT): with the
    official AdaLN gamma of 1e-5 every block is nearly the identity and the logits are nearly
    uniform, so an error in attention or in the head would barely move the loss.
    """
    from var_core import VAR

    var_kwargs = {**var_kwargs, **CHECK_INIT}

    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, geometry.vocab_size, (batch, geometry.L), generator=gen).to(device)
    labels = torch.randint(0, geometry.num_classes, (batch,), generator=gen).to(device)
    if quantizer is None:
        quantizer = (vqvae.quantize if vqvae is not None else make_vqvae(geometry, device).quantize)
    from scaling.training.inputs import split_scales

    with torch.no_grad():
        x_in = quantizer.idx_to_var_input(split_scales(tokens, geometry.patch_nums))

    torch.manual_seed(seed)
    plain = VAR(**var_kwargs, attn_backend="sdpa").to(device).eval()
    fast_model = VAR(**var_kwargs, attn_backend=fast.attn_backend).to(device).eval()
    fast_model.load_state_dict(plain.state_dict())
    run_fast = torch.compile(fast_model) if fast.compile else fast_model

    checks: list[Check] = []
    bf16 = fast.precision == "bf16"
    loss_tol, grad_tol = (1e-2, 5e-2) if bf16 else (1e-5, 1e-4)
    flex_fwd, flex_bwd, _ = flex_supported(device)
    from var_core.attention import resolve_backend

    backend = resolve_backend(fast.attn_backend, device)
    uses_flex = backend == "flex"
    can_grad = not uses_flex or flex_bwd
    ref_loss, ref_grads = _loss_and_grads(plain, labels, x_in, tokens, "fp32", device)
    if can_grad:
        loss, grads = _loss_and_grads(run_fast, labels, x_in, tokens, fast.precision, device,
                                      chunked=True)
        checks.append(Check.at_most(f"loss rel diff, {fast.label()} vs fp32 sdpa",
                                    abs(loss - ref_loss) / abs(ref_loss), loss_tol))
        checks.append(Check.at_most(f"grad rel L2 error, {fast.label()} vs fp32 sdpa",
                                    _grad_rel(grads, ref_grads), grad_tol))
    else:
        loss, _ = _loss_and_grads(run_fast, labels, x_in, tokens, fast.precision, device, grads=False,
                                  chunked=True)
        checks.append(Check.at_most(f"loss rel diff (no grad: flex backward unsupported), "
                                    f"{fast.label()} vs fp32 sdpa", abs(loss - ref_loss) / abs(ref_loss),
                                    loss_tol))
    if bf16 and can_grad:  # the same backend at fp32: isolates the kernel from the precision
        loss32, grads32 = _loss_and_grads(run_fast, labels, x_in, tokens, "fp32", device, chunked=True)
        checks.append(Check.at_most(f"loss rel diff, fp32+{backend} vs fp32 sdpa",
                                    abs(loss32 - ref_loss) / abs(ref_loss), 1e-5))
        checks.append(Check.at_most(f"grad rel L2 error, fp32+{backend} vs fp32 sdpa",
                                    _grad_rel(grads32, ref_grads), 1e-4))
    if flex_fwd and not uses_flex:
        flex_model = VAR(**var_kwargs, attn_backend="flex").to(device).eval()
        flex_model.load_state_dict(plain.state_dict())
        fl, _ = _loss_and_grads(flex_model, labels, x_in, tokens, "fp32", device, grads=flex_bwd)
        checks.append(Check.at_most("loss rel diff, fp32 flex vs fp32 sdpa",
                                    abs(fl - ref_loss) / abs(ref_loss), 1e-5))

    if vqvae is not None:
        n = min(batch, 8)
        sample_labels = labels[:n]
        checks.append(Check.at_most(
            f"sampler (KV cache) logits vs teacher-forced fp32 {backend}, rel max error",
            sampler_vs_teacher_forced(fast_model, vqvae, sample_labels, device), 1e-4))
        if bf16:
            ref_tok = sampled_tokens(plain, vqvae, sample_labels, "fp32", device)
            got = sampled_tokens(fast_model, vqvae, sample_labels, "bf16", device)
            checks.append(Check(f"sampler top_k=1 tokens equal, bf16 vs fp32 (fraction)",
                                float((got == ref_tok).float().mean()), None, None))
    return checks


# ----------------------------------------------------------------------------- the official code

@contextlib.contextmanager
def _official_import_path(path: Path) -> Iterator[None]:
    """Make the official checkout importable; its build function patches torch.nn classes'
    reset_parameters globally, so those are restored on exit (our models need them)."""
    import torch.nn as nn

    classes = (nn.Linear, nn.LayerNorm, nn.BatchNorm2d, nn.SyncBatchNorm, nn.Conv1d, nn.Conv2d,
               nn.ConvTranspose1d, nn.ConvTranspose2d)
    saved = {c: c.__dict__.get("reset_parameters") for c in classes}
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path.remove(str(path))
        for c, fn in saved.items():
            if fn is not None:
                c.reset_parameters = fn
            elif "reset_parameters" in c.__dict__:  # inherited before (Conv2d from _ConvNd)
                delattr(c, "reset_parameters")


def official_rows(path: Path, geometry: Geometry, depth: int, batch: int, device: torch.device, *,
                  warmup: int, repeats: int, steps: int, flops: tuple[float, float]) -> list[Row]:
    """Time the official VAR code's training step, imported from the checkout at `path`.

    Two rows: the official trainer's step (VQVAE encodes the images every step, fp16 autocast
    with GradScaler on CUDA, fp32 elsewhere) and the same step on pre-tokenised data.
    """
    path = Path(path)
    if not (path / "models" / "__init__.py").exists():
        raise FileNotFoundError(f"--official {path}: not a checkout of the official VAR code "
                                f"(no models/__init__.py)")
    with _official_import_path(path):
        try:
            from models import build_vae_var  # the official package, from `path`
        except ImportError as e:
            raise ImportError(f"--official {path}: importing the official code failed ({e}); install "
                              f"its requirements (pip install -r {path / 'requirements.txt'})") from e

        torch.manual_seed(0)
        vae, var = build_vae_var(
            device=device, patch_nums=geometry.patch_nums, V=geometry.vocab_size,
            Cvae=geometry.z_channels, ch=geometry.vqvae_ch, share_quant_resi=4,
            num_classes=geometry.num_classes, depth=depth, shared_aln=False, attn_l2_norm=True)
    vae.eval().requires_grad_(False)
    var.train()
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(var.parameters(), lr=1e-4 * batch / 256, betas=(0.9, 0.95),
                            weight_decay=0.05, fused=cuda or None)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 11) if cuda else None
    amp = torch.autocast("cuda", dtype=torch.float16) if cuda else contextlib.nullcontext()
    size = geometry.patch_nums[-1] * 16
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)
    labels = torch.randint(0, geometry.num_classes, (batch,), generator=gen).to(device)
    with torch.no_grad():
        fixed_idx = vae.img_to_idxBl(images)

    def step(encode: bool) -> None:
        with torch.no_grad():
            idx = vae.img_to_idxBl(images) if encode else fixed_idx
            x_in = vae.quantize.idxBl_to_var_input(idx)
        with amp:
            logits = var(labels, x_in)
            loss = F.cross_entropy(logits.view(-1, geometry.vocab_size), torch.cat(idx, 1).view(-1))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(var.parameters(), 2.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(var.parameters(), 2.0)
            opt.step()
        opt.zero_grad(set_to_none=True)

    rows = []
    for encode, label in ((True, "official trainer (fp16 AMP, VQVAE encode)" if cuda else
                           "official trainer (fp32, VQVAE encode)"),
                          (False, "official, pre-tokenised")):
        with peak_memory(device) as mem:
            sec, _ = time_median(lambda: step(encode), device, warmup=warmup, repeats=repeats, inner=steps)
        rows.append(Row("train", f"d{depth}", batch, label, sec, batch, geometry.L,
                        flops[0], flops[1], mem["gb"]))
    del vae, var, opt
    return rows


# ----------------------------------------------------------------------------- the benchmark

@dataclasses.dataclass
class BenchResult:
    """Everything one benchmark run measured."""

    rows: list[Row]
    checks: list[Check]
    peak_tflops: float
    peak_label: str
    device_name: str
    torch_version: str
    date: str
    command: str
    fast: FastPath
    policies: list[str] = dataclasses.field(default_factory=list)  # "d16: <policy>" per size

    def markdown(self) -> str:
        """The report: header, the runtime policy, the timing table and the check table."""
        return "\n".join([
            f"Measured {self.date} on {self.device_name}, torch {self.torch_version}; "
            f"matmul peak {self.peak_tflops:.4g} TFLOP/s ({self.peak_label}); fast path "
            f"{self.fast.label()}.",
            "",
            f"Command: `{self.command}`",
            "",
            *[f"Runtime policy (scaling.runtime) {p}" + "  " for p in self.policies],
            *([""] if self.policies else []),
            format_table(self.rows, self.peak_tflops),
            "",
            "Fast-path correctness (same weights and batch, eval mode):",
            "",
            format_checks(self.checks),
        ])


def device_name(device: torch.device) -> str:
    """Human-readable device name (GPU model, or CPU with its thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_bench(*, depths: Sequence[int], batches: Sequence[int], what: Sequence[str],
              device: torch.device, geometry: Geometry, fast: FastPath, steps: int, repeats: int,
              warmup: int, eval_batch: int | None = None, sample_batch: int = 32,
              tok_batch: int = 64, check_batch: int = 4, official: Path | None = None,
              peak_tflops: float | None = None, command: str = "",
              bases: Sequence[Any] | None = None) -> BenchResult:
    """Run the benchmark; see the module docstring. `batches[i]` goes with `depths[i]`;
    `bases[i]` (a RunConfig, e.g. a sweep's run) gives that size's model, optim and runtime
    (then `fast` is only the default for sizes without one). Each size runs inside its
    runtime policy (`scaling.core.runtime.Policy.applied`: threads, TF32; restored after)."""
    from scaling.training.config import RuntimeConfig
    from scaling.core.runtime import resolve
    from var_core import counting, sample

    if len(batches) == 1:
        batches = list(batches) * len(depths)
    if len(batches) != len(depths):
        raise ValueError(f"--batch: give one batch size or one per depth ({len(depths)}), got {list(batches)}")
    unknown = [w for w in what if w not in WHATS]
    if unknown:
        raise ValueError(f"--what: unknown {unknown}; choose from {list(WHATS)}")
    if peak_tflops is None:
        peak_tflops, peak_label = matmul_peak_tflops(device)
    else:
        peak_label = "given with --peak-tflops"

    rows: list[Row] = []
    checks: list[Check] = []
    policies: list[str] = []
    bases = list(bases) if bases is not None else [None] * len(depths)
    default_fast = fast
    vqvae = make_vqvae(geometry, device)
    with tempfile.TemporaryDirectory(prefix="var-bench-") as tmp:
        tmp_path = Path(tmp)
        max_batch = max(max(batches), eval_batch or 0)
        store = write_random_store(tmp_path / "store", geometry, vqvae.quantize,
                                   n_train=max_batch * 4, n_val=max(eval_batch or max_batch, 1) * steps)
        for depth, batch, base in zip(depths, batches, bases):
            fast = default_fast if base is None else fast_path_of(base, device)
            runtime = base.runtime if base is not None else RuntimeConfig(
                precision=fast.precision, compile=fast.compile, tf32=fast.tf32,
                num_threads=fast.threads)
            policy = resolve(runtime, device=device)
            policies.append(f"d{depth}: {policy.describe()}, attention {fast.attn_backend}"
                            f"{', activation checkpointing' if fast.activation_checkpointing else ''}")
            log(f"d{depth}: runtime policy {policies[-1]}")
            with policy.applied():
                ebatch = eval_batch or batch
                trainer = build_trainer(store, tmp_path / f"run-d{depth}-b{batch}", depth=depth,
                                        batch=batch, eval_batch=ebatch, eval_batches=steps,
                                        fast=fast, device=device, base=base)
                var_kwargs = trainer.model.config()
                var_kwargs.pop("attn_backend")
                fwd = counting.forward_flops(**var_kwargs)
                n_params = trainer.params
                model = f"d{depth}"
                train_flops = (3.0 * fwd, 6.0 * n_params * geometry.L)
                if "train" in what:
                    log(f"{model} batch {batch}: train ({fast.label()}, {warmup} warm-up steps first)")
                    with peak_memory(device) as mem:
                        sec, _ = time_median(trainer.train_step, device, warmup=warmup, repeats=repeats,
                                             inner=steps)
                    rows.append(Row("train", model, batch, fast.label(), sec, batch, geometry.L,
                                    *train_flops, mem["gb"]))
                if "eval" in what:
                    log(f"{model}: eval, batch {ebatch}")
                    with peak_memory(device) as mem:
                        sec, _ = time_median(lambda: trainer.evaluate("full"), device, warmup=1,
                                             repeats=repeats)
                    rows.append(Row("eval", model, ebatch, fast.label(), sec / steps, ebatch, geometry.L,
                                    float(fwd), 2.0 * n_params * geometry.L, mem["gb"]))
                if "sample" in what:
                    gen = torch.Generator().manual_seed(1)
                    labels = torch.randint(0, geometry.num_classes, (sample_batch,), generator=gen).to(device)
                    model_ = trainer.model.eval()

                    def run_sample():
                        with _autocast(trainer.policy.precision, device):
                            sample(model_, vqvae, labels, cfg=1.5, top_k=900, top_p=0.96, seed=0)

                    log(f"{model}: sample, batch {sample_batch}")
                    with peak_memory(device) as mem:
                        sec, _ = time_median(run_sample, device, warmup=1, repeats=repeats)
                    rows.append(Row("sample", model, sample_batch, f"{trainer.policy.precision} cfg1.5 k900 p0.96",
                                    sec, sample_batch, geometry.L, 2.0 * fwd, 4.0 * n_params * geometry.L,
                                    mem["gb"]))
                log(f"{model}: fast-path checks")
                checks += [dataclasses.replace(c, name=f"{model}: {c.name}") for c in fast_path_checks(
                    var_kwargs, geometry, fast, device, batch=check_batch, vqvae=vqvae)]
                del trainer
                model_ = run_sample = None  # drop every reference to this depth's model
                if official is not None and "train" in what:
                    log(f"{model} batch {batch}: official code from {official}")
                    off = official_rows(official, geometry, depth, batch, device, warmup=warmup,
                                        repeats=repeats, steps=steps, flops=train_flops)
                    ours = next(r for r in rows if r.what == "train" and r.model == model and r.batch == batch)
                    ours.vs_official = ours.images_per_s / off[0].images_per_s
                    rows += off
                if fast.compile:
                    torch._dynamo.reset()  # compiled graphs hold the model; the next depth recompiles
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    tokenize_policy = resolve(None, device=device, threads=default_fast.threads,
                              tf32=default_fast.tf32)  # scaling.tokenize's own choices
    with tokenize_policy.applied():
        if "tokenize" in what:
            rows += _tokenize_rows(vqvae, device, tok_batch, repeats, checks, geometry.L)
    return BenchResult(rows, checks, peak_tflops, peak_label, device_name(device), torch.__version__,
                       datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       command, default_fast, policies)


def _tokenize_rows(vqvae, device: torch.device, tok_batch: int, repeats: int,
                   checks: list[Check], L: int) -> list[Row]:
    """Time VQVAE.img_to_idx in fp32 and with a bf16 channels-last encoder; appends the
    bf16-vs-fp32 token agreement to `checks`."""
    rows: list[Row] = []
    size = vqvae.image_size
    images = (torch.rand(tok_batch, 3, size, size, generator=torch.Generator().manual_seed(2)) * 2 - 1
              ).to(device)
    log(f"tokenize, batch {tok_batch}")
    ref = [t.cpu() for t in vqvae.img_to_idx(images)]
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        vq = vqvae.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        x = images.contiguous(memory_format=torch.channels_last) if channels_last else images

        def tokenize():
            with _autocast(precision, device):  # the quantizer turns autocast off itself
                return vq.img_to_idx(x)

        with peak_memory(device) as mem:
            sec, _ = time_median(tokenize, device, warmup=1, repeats=repeats)
        label = f"{precision} encoder{' channels-last' if channels_last else ''}, fp32 quantizer"
        rows.append(Row("tokenize", "VQVAE", tok_batch, label, sec, tok_batch, L,
                        peak_gb=mem["gb"]))
        if precision == "bf16":
            got = torch.cat([t.cpu() for t in tokenize()], dim=1)
            checks.append(Check("tokenize: bf16 channels-last tokens equal to fp32 (fraction)",
                                float((got == torch.cat(ref, dim=1)).float().mean()), None, None))
    vqvae.to(memory_format=torch.contiguous_format)
    return rows


# ----------------------------------------------------------------------------- CLI

def write_report(path: Path, result: BenchResult) -> None:
    """Put the result between the BENCH markers of `path` (the rest of the file is kept);
    a file without markers gets them appended; a missing file is created."""
    start, end = "<!-- BENCH:START -->", "<!-- BENCH:END -->"
    block = f"{start}\n{result.markdown()}\n{end}"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + block + "\n"
    atomic_write_text(path, text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scaling.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", type=int, nargs="+", default=[16, 30])
    p.add_argument("--sweep", type=Path, default=None,
                   help="benchmark what this sweep file runs: its run configs (model, runtime "
                        "policy) at one process's batch, for the sizes given by --depths")
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="training batch, one for all depths or one per depth (default 64 16)")
    p.add_argument("--eval-batch", type=int, default=None, help="evaluation batch (default: --batch)")
    p.add_argument("--sample-batch", type=int, default=32)
    p.add_argument("--tok-batch", type=int, default=64)
    p.add_argument("--check-batch", type=int, default=4, help="batch of the fast-path checks")
    p.add_argument("--steps", type=int, default=10, help="iterations per timing")
    p.add_argument("--repeats", type=int, default=5, help="timings (the median is reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    p.add_argument("--what", nargs="+", default=list(WHATS), choices=WHATS)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"),
                   help="auto: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--attn-backend", default="auto", choices=("auto", "sdpa", "flex"))
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the trainer's model (default: the trainer's, off)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=None,
                   help="TF32 for fp32 matmuls/convolutions (default: on for CUDA)")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--tiny", action="store_true",
                   help=f"tiny geometry for CPU smoke runs: {dataclasses.asdict(TINY)}")
    p.add_argument("--official", type=Path, default=None,
                   help="a checkout of the official VAR code (imported at run time, never copied)")
    p.add_argument("--peak-tflops", type=float, default=None, help="skip the matmul measurement")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the runtime policy's, 1 on CPU)")
    p.add_argument("--out", type=Path, default=None, help="write the table into this Markdown file")
    args = p.parse_args(argv)
    for name in ("steps", "repeats", "sample_batch", "tok_batch", "check_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if any(b < 1 for b in args.batch or []) or any(d < 1 for d in args.depths):
        p.error("--depths and --batch must be positive")
    if args.batch is not None and len(args.batch) not in (1, len(args.depths)):
        p.error(f"--batch: give one batch size or one per depth ({len(args.depths)}), got {args.batch}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.sweep is not None:
        clash = [flag for flag, value in (("--batch", args.batch), ("--tiny", args.tiny or None),
                                          ("--precision", None if args.precision == "auto" else 1),
                                          ("--attn-backend", None if args.attn_backend == "auto" else 1),
                                          ("--compile", args.compile), ("--tf32", args.tf32),
                                          ("--activation-checkpointing",
                                           args.activation_checkpointing or None))
                 if value is not None]
        if clash:
            p.error(f"--sweep takes the batch, geometry and runtime policy from the sweep file; "
                    f"drop {' '.join(clash)}")
        if not args.sweep.is_file():
            p.error(f"--sweep {args.sweep}: no such file")
    return args


def sweep_bases(path: Path, depths: Sequence[int]) -> tuple[list[Any], list[int], Geometry]:
    """What `--sweep path --depths ...` benchmarks: per depth the sweep's run config, one
    process's batch (batch_size / (nodes x tasks per node)) and the sweep's token geometry.
    Raises ConfigError for a bad sweep file or a depth the sweep does not train."""
    from scaling.core.config_io import ConfigError
    from scaling.study.sweep import load_sweep

    sweep = load_sweep(path)
    by_depth: dict[int, Any] = {}
    for run in sweep.runs:
        by_depth.setdefault(run.depth, run)  # the first run of that depth (other axes: --only)
    missing = [d for d in depths if d not in by_depth]
    if missing:
        raise ConfigError(f"{path}: --depths {missing} not in the sweep's grid "
                          f"(it trains depths {sorted(by_depth)})")
    bases, batches = [], []
    for d in depths:
        run = by_depth[d]
        procs = run.resources.nodes * run.resources.tasks_per_node
        if run.config.optim.batch_size % procs:
            raise ConfigError(f"{path}: d{d}: batch_size {run.config.optim.batch_size} is not "
                              f"divisible by its {procs} processes")
        bases.append(run.config)
        batches.append(run.config.optim.batch_size // procs)
    meta = sweep.expected_meta()
    vq = dict(sweep.spec.prepare.vqvae or {}) if sweep.spec.prepare is not None else {}
    geometry = Geometry(
        vocab_size=int(meta["vocab_size"]), patch_nums=tuple(meta["patch_nums"]),
        num_classes=int(meta["num_classes"]),
        z_channels=int(vq.get("z_channels", OFFICIAL.z_channels)),
        vqvae_ch=int(vq.get("ch", OFFICIAL.vqvae_ch)),
        vqvae_ch_mult=tuple(vq.get("ch_mult", OFFICIAL.vqvae_ch_mult)))
    return bases, batches, geometry


def main(argv: list[str] | None = None) -> int:
    from scaling.core.config_io import ConfigError
    from scaling.core.runtime import resolve
    from var_core.attention import resolve_backend

    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 1
    device = torch.device("cuda" if args.device == "cuda" or
                          (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    # without --sweep: the trainer's defaults (scaling.runtime), changed by the flags
    policy = resolve(None, device=device, precision=args.precision, compile=args.compile,
                     tf32=args.tf32, threads=args.threads)
    fast = FastPath(precision=policy.precision,
                    attn_backend=resolve_backend(args.attn_backend, device),  # named in the table
                    compile=policy.compile, activation_checkpointing=args.activation_checkpointing,
                    tf32=policy.tf32, threads=policy.threads)
    geometry, batches, bases = (TINY if args.tiny else OFFICIAL), args.batch or [64, 16], None
    if args.sweep is not None:
        try:
            bases, batches, geometry = sweep_bases(args.sweep, args.depths)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    command = "python -m scaling.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    with policy.applied():  # the matmul peak and anything outside a size's own policy
        result = run_bench(depths=args.depths, batches=batches, what=args.what, device=device,
                           geometry=geometry, fast=fast, steps=args.steps,
                           repeats=args.repeats, warmup=args.warmup, eval_batch=args.eval_batch,
                           sample_batch=args.sample_batch, tok_batch=args.tok_batch,
                           check_batch=args.check_batch, official=args.official,
                           peak_tflops=args.peak_tflops, command=command.strip(), bases=bases)
    print(result.markdown())
    if args.out is not None:
        write_report(args.out, result)
        print(f"\nwritten to {args.out}", file=sys.stderr)
    failed = [c.name for c in result.checks if c.passed is False]
    if failed:
        print(f"error: fast-path checks failed: {failed}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
