"""The benchmark loop: per size a real trainer on a temporary store of random tokens, its
steps, evaluation and sampler timed, the fast-path checks run; then the tokenizer.

What is timed (each CUDA-synchronised, warm-up excluded, median over `repeats` timings):
  train     `Trainer.train_step` (data gather, teacher-forcing input, forward, loss,
            backward, clip, AdamW) with the runtime knobs of the FastPath or the sweep's run.
  eval      `Trainer.evaluate` (teacher-forced forward + CE / error metrics), per batch.
  sample    `var_core.sample` (cfg 1.5, top-k 900, top-p 0.96).
  tokenize  `VQVAE.img_to_idx` (encoder + multi-scale quantizer, random weights) in fp32 and
            with a bf16 channels-last encoder (the quantizer always runs in fp32).
  official  with `official`: scaling.tools.bench.official's two rows beside ours.

FLOP conventions: "exact" = var_core.counting (matmuls incl. block-causal attention pairs and
the head; training per image = counting.train_flops_per_image); "6NL" = 6 * params * L per
trained image (2 * params * L per evaluated image). A sampled image costs 2 x forward_flops
(the batch is doubled for CFG; the KV cache makes the sum over scales equal to one
teacher-forced pass), VQVAE decoding not counted. MFU = achieved / a measured matmul peak.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

import torch

from scaling.core.cli import InputError
from scaling.core.rundir import RunDir
from scaling.core.runtime import resolve
from scaling.tools.bench.fast_path import Check, FastPath, fast_path_checks, fast_path_of
from scaling.tools.bench.geometry import Geometry, make_vqvae, write_random_store
from scaling.tools.bench.official import official_rows
from scaling.tools.bench.report import BenchResult, Row
from scaling.tools.bench.timing import device_name, matmul_peak_tflops, peak_memory, time_median
from scaling.training.config import (
    DataConfig,
    EvalConfig,
    LengthConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
)
from scaling.training.distributed import DistInfo
from scaling.training.trainer import Trainer
from var_core import VQVAE, counting, sample

logger = logging.getLogger(__name__)

WHATS = ("train", "eval", "sample", "tokenize")


def build_trainer(
    store: Path,
    run_dir: Path,
    *,
    depth: int,
    batch: int,
    eval_batch: int,
    eval_batches: int,
    fast: FastPath,
    device: torch.device,
    seed: int = 0,
    base: RunConfig | None = None,
) -> Trainer:
    """A real `Trainer` for `depth` on `store` (a long schedule that never ends here).

    `base`: a RunConfig (a sweep's run) whose model, optim and runtime are kept as they are
    (batch_size becomes `batch`, one process's share); None: the official recipe with the
    runtime knobs of `fast`.
    """
    data = DataConfig(store=store)
    length = LengthConfig(steps=1_000_000)  # the schedule never ends during the benchmark
    if base is not None:
        evals = dataclasses.replace(
            base.eval,
            points=1,
            subset_points=0,
            batch_size=eval_batch,
            max_images=eval_batch * eval_batches,
        )  # keeps eval.precision
        config = dataclasses.replace(
            base,
            run_id=f"bench-{base.run_id}-b{batch}",
            data=data,
            length=length,
            eval=evals,
            optim=dataclasses.replace(base.optim, batch_size=batch),
            runtime=dataclasses.replace(
                base.runtime, device=cast(Literal["cpu", "cuda"], device.type)
            ),
        )
    else:
        config = RunConfig(
            run_id=f"bench-d{depth}-b{batch}",
            data=data,
            model=ModelConfig(depth=depth),
            optim=OptimConfig(batch_size=batch),
            length=length,
            eval=EvalConfig(points=1, batch_size=eval_batch, max_images=eval_batch * eval_batches),
            runtime=fast.runtime(device),
            seed=seed,
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    dist = DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    return Trainer(config, RunDir(run_dir), dist)


def run_bench(
    *,
    depths: Sequence[int],
    batches: Sequence[int],
    what: Sequence[str],
    device: torch.device,
    geometry: Geometry,
    fast: FastPath,
    steps: int,
    repeats: int,
    warmup: int,
    eval_batch: int | None = None,
    sample_batch: int = 32,
    tok_batch: int = 64,
    check_batch: int = 4,
    official: Path | None = None,
    peak_tflops: float | None = None,
    command: str = "",
    bases: Sequence[RunConfig] | None = None,
) -> BenchResult:
    """Run the benchmark; see the module docstring. `batches[i]` goes with `depths[i]`;
    `bases[i]` (a RunConfig, e.g. a sweep's run) gives that size's model, optim and runtime
    (then `fast` is only the default for sizes without one). Each size runs inside its
    runtime policy (`scaling.core.runtime.Policy.applied`: threads, TF32; restored after).
    Raises InputError for batches that do not pair with the depths or an unknown `what`."""
    if len(batches) == 1:
        batches = list(batches) * len(depths)
    if len(batches) != len(depths):
        raise InputError(
            f"--batch: give one batch size or one per depth ({len(depths)}), got {list(batches)}"
        )
    unknown = [w for w in what if w not in WHATS]
    if unknown:
        raise InputError(f"--what: unknown {unknown}; choose from {list(WHATS)}")
    if peak_tflops is None:
        peak_tflops, peak_label = matmul_peak_tflops(device)
    else:
        peak_label = "given with --peak-tflops"

    rows: list[Row] = []
    checks: list[Check] = []
    policies: list[str] = []
    base_list: list[RunConfig | None] = list(bases) if bases is not None else [None] * len(depths)
    vqvae = make_vqvae(geometry, device)
    with tempfile.TemporaryDirectory(prefix="var-bench-") as tmp:
        tmp_path = Path(tmp)
        max_batch = max(max(batches), eval_batch or 0)
        store = write_random_store(
            tmp_path / "store",
            geometry,
            vqvae.quantize,
            n_train=max_batch * 4,
            n_val=max(eval_batch or max_batch, 1) * steps,
        )
        for depth, batch, base in zip(depths, batches, base_list):
            size_fast = fast if base is None else fast_path_of(base, device)
            policy = resolve(
                base.runtime if base is not None else size_fast.runtime(device), device=device
            )
            policies.append(
                f"d{depth}: {policy.describe()}, attention {size_fast.attn_backend}"
                f"{', activation checkpointing' if size_fast.activation_checkpointing else ''}"
            )
            logger.info("runtime policy %s", policies[-1])
            with policy.applied():
                size_rows, size_checks, train_flops = _bench_size(
                    store,
                    tmp_path / f"run-d{depth}-b{batch}",
                    vqvae,
                    geometry,
                    depth=depth,
                    batch=batch,
                    eval_batch=eval_batch or batch,
                    base=base,
                    fast=size_fast,
                    what=what,
                    device=device,
                    steps=steps,
                    repeats=repeats,
                    warmup=warmup,
                    sample_batch=sample_batch,
                    check_batch=check_batch,
                )
                if official is not None and "train" in what:
                    logger.info("d%d batch %d: official code from %s", depth, batch, official)
                    off = official_rows(
                        official,
                        geometry,
                        depth,
                        batch,
                        device,
                        warmup=warmup,
                        repeats=repeats,
                        steps=steps,
                        flops=train_flops,
                    )
                    ours = next(r for r in size_rows if r.what == "train")
                    ours.vs_official = ours.images_per_s / off[0].images_per_s
                    size_rows += off
                if size_fast.compile:
                    # compiled graphs hold the model; the next size recompiles
                    torch._dynamo.reset()
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows += size_rows
            checks += size_checks
    if "tokenize" in what:
        tokenize_policy = resolve(
            None, device=device, threads=fast.threads, tf32=fast.tf32
        )  # scaling.data.tokenize's own choices
        with tokenize_policy.applied():
            rows += _tokenize_rows(vqvae, device, tok_batch, repeats, checks, geometry.L)
    return BenchResult(
        rows,
        checks,
        peak_tflops,
        peak_label,
        device_name(device),
        torch.__version__,
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        command,
        fast,
        policies,
    )


def _bench_size(
    store: Path,
    run_dir: Path,
    vqvae: VQVAE,
    geometry: Geometry,
    *,
    depth: int,
    batch: int,
    eval_batch: int,
    base: RunConfig | None,
    fast: FastPath,
    what: Sequence[str],
    device: torch.device,
    steps: int,
    repeats: int,
    warmup: int,
    sample_batch: int,
    check_batch: int,
) -> tuple[list[Row], list[Check], tuple[float, float]]:
    """The rows and checks of one size (its trainer is gone when this returns), and its
    training FLOPs per image (exact, 6NL) for the official rows."""
    rows: list[Row] = []
    trainer = build_trainer(
        store,
        run_dir,
        depth=depth,
        batch=batch,
        eval_batch=eval_batch,
        eval_batches=steps,
        fast=fast,
        device=device,
        base=base,
    )
    var_kwargs = trainer.model.config()
    var_kwargs.pop("attn_backend")
    fwd = counting.forward_flops(**var_kwargs)
    nl = (
        trainer.params * geometry.L
    )  # the "6ND" convention: 6 NL per trained image, 2 NL per forward
    train_flops = (float(counting.train_flops_per_image(**var_kwargs)), 6.0 * nl)
    model = f"d{depth}"
    if "train" in what:
        logger.info(
            "%s batch %d: train (%s, %d warm-up steps first)", model, batch, fast.label(), warmup
        )
        with peak_memory(device) as mem:
            sec, _ = time_median(
                trainer.train_step, device, warmup=warmup, repeats=repeats, inner=steps
            )
        rows.append(
            Row(
                "train", model, batch, fast.label(), sec, batch, geometry.L, *train_flops, mem["gb"]
            )
        )
    if "eval" in what:
        logger.info("%s: eval, batch %d", model, eval_batch)
        with peak_memory(device) as mem:
            sec, _ = time_median(
                lambda: trainer.evaluate("full"), device, warmup=1, repeats=repeats
            )
        rows.append(
            Row(
                "eval",
                model,
                eval_batch,
                fast.label(),
                sec / steps,
                eval_batch,
                geometry.L,
                float(fwd),
                2.0 * nl,
                mem["gb"],
            )
        )
    if "sample" in what:
        gen = torch.Generator().manual_seed(1)
        labels = torch.randint(0, geometry.num_classes, (sample_batch,), generator=gen).to(device)
        sampler, policy = trainer.model.eval(), trainer.policy

        def run_sample() -> None:
            with policy.autocast():
                sample(sampler, vqvae, labels, cfg=1.5, top_k=900, top_p=0.96, seed=0)

        logger.info("%s: sample, batch %d", model, sample_batch)
        with peak_memory(device) as mem:
            sec, _ = time_median(run_sample, device, warmup=1, repeats=repeats)
        rows.append(
            Row(
                "sample",
                model,
                sample_batch,
                f"{policy.precision} cfg1.5 k900 p0.96",
                sec,
                sample_batch,
                geometry.L,
                2.0 * fwd,
                4.0 * nl,
                mem["gb"],
            )
        )
    logger.info("%s: fast-path checks", model)
    checks = [
        dataclasses.replace(c, name=f"{model}: {c.name}")
        for c in fast_path_checks(
            var_kwargs, geometry, fast, device, batch=check_batch, vqvae=vqvae
        )
    ]
    return rows, checks, train_flops


def _tokenize_rows(
    vqvae: VQVAE, device: torch.device, tok_batch: int, repeats: int, checks: list[Check], L: int
) -> list[Row]:
    """Time VQVAE.img_to_idx on random images [tok_batch, 3, H, W] in fp32 and with a bf16
    channels-last encoder; appends the bf16-vs-fp32 token agreement to `checks`."""
    rows: list[Row] = []
    size = vqvae.image_size
    images = (
        torch.rand(tok_batch, 3, size, size, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ).to(device)
    logger.info("tokenize, batch %d", tok_batch)
    ref = [t.cpu() for t in vqvae.img_to_idx(images)]
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        vq = vqvae.to(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )
        x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        numerics = resolve(device=device, precision=precision)

        def tokenize():
            with numerics.autocast():  # the quantizer turns autocast off itself
                return vq.img_to_idx(x)

        with peak_memory(device) as mem:
            sec, _ = time_median(tokenize, device, warmup=1, repeats=repeats)
        label = f"{precision} encoder{' channels-last' if channels_last else ''}, fp32 quantizer"
        rows.append(
            Row("tokenize", "VQVAE", tok_batch, label, sec, tok_batch, L, peak_gb=mem["gb"])
        )
        if precision == "bf16":
            got = torch.cat([t.cpu() for t in tokenize()], dim=1)
            checks.append(
                Check(
                    "tokenize: bf16 channels-last tokens equal to fp32 (fraction)",
                    float((got == torch.cat(ref, dim=1)).float().mean()),
                    None,
                    None,
                )
            )
    vqvae.to(memory_format=torch.contiguous_format)
    return rows
