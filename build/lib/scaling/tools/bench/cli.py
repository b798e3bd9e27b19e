"""`python -m scaling.bench`: throughput, memory and correctness of the project's VAR trainer
on one device.

    python -m scaling.bench                                   # d16 b64 and d30 b16 on the GPU
    python -m scaling.bench --depths 16 30 --batch 64 16 --what train eval sample tokenize \
        --official /path/to/VAR --out docs/benchmarks.md      # side by side with the official code
    python -m scaling.bench --device cpu --tiny --depths 2 --batch 4 --steps 2 --repeats 2
    python -m scaling.bench --sweep sweeps/depth_grid.yaml --depths 16 30   # what that sweep runs

Runtime policy (scaling.core.runtime, printed with the table): without --sweep the trainer's
own defaults (RuntimeConfig(): bf16 autocast on CUDA, TF32 on CUDA, compile off), changed by
the flags; with --sweep each size runs with exactly the run config the sweep gives it (model,
runtime: precision, TF32, compile, attention backend, micro-batch, threads) at one process's
share of the global batch (batch_size / (nodes x GPUs per node)), on random tokens of the
sweep's geometry (vocab, scales, classes; its VQVAE size, else the official one).

What is timed and checked: scaling.tools.bench.runner (rows), scaling.tools.bench.fast_path
(checks), scaling.tools.bench.official (the official code's rows, with --official PATH).

Exit status (scaling.core.cli): 0 done; 1 a fast-path check failed or CUDA was asked for and
is missing; 2 bad input (an argument, the sweep file, a depth the sweep does not train, an
--official path that is not a checkout of the official code).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from scaling.core.cli import RuntimeFailure, run_cli, setup_logging
from scaling.core.runtime import pick_device, resolve
from scaling.tools.bench.fast_path import FastPath
from scaling.tools.bench.geometry import OFFICIAL, TINY
from scaling.tools.bench.official import check_checkout
from scaling.tools.bench.report import write_report
from scaling.tools.bench.runner import WHATS, run_bench
from scaling.tools.bench.sweep_mode import sweep_bases

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; an inconsistent one exits 2 with argparse's message."""
    p = argparse.ArgumentParser(
        prog="python -m scaling.bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--depths", type=int, nargs="+", default=[16, 30])
    p.add_argument(
        "--sweep",
        type=Path,
        default=None,
        help="benchmark what this sweep file runs: its run configs (model, runtime "
        "policy) at one process's batch, for the sizes given by --depths",
    )
    p.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=None,
        help="training batch, one for all depths or one per depth (default 64 16)",
    )
    p.add_argument(
        "--eval-batch", type=int, default=None, help="evaluation batch (default: --batch)"
    )
    p.add_argument("--sample-batch", type=int, default=32)
    p.add_argument("--tok-batch", type=int, default=64)
    p.add_argument("--check-batch", type=int, default=4, help="batch of the fast-path checks")
    p.add_argument("--steps", type=int, default=10, help="iterations per timing")
    p.add_argument("--repeats", type=int, default=5, help="timings (the median is reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    p.add_argument("--what", nargs="+", default=list(WHATS), choices=WHATS)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "bf16", "fp32"),
        help="auto: bf16 on CUDA, fp32 on CPU",
    )
    p.add_argument("--attn-backend", default="auto", choices=("auto", "sdpa", "flex"))
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the trainer's model (default: the trainer's, off)",
    )
    p.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="TF32 for fp32 matmuls/convolutions (default: on for CUDA)",
    )
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument(
        "--tiny",
        action="store_true",
        help=f"tiny geometry for CPU smoke runs: {dataclasses.asdict(TINY)}",
    )
    p.add_argument(
        "--official",
        type=Path,
        default=None,
        help="a checkout of the official VAR code (imported at run time, never copied)",
    )
    p.add_argument("--peak-tflops", type=float, default=None, help="skip the matmul measurement")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the runtime policy's, 1 on CPU)",
    )
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
        p.error(
            f"--batch: give one batch size or one per depth ({len(args.depths)}), got {args.batch}"
        )
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.sweep is not None:
        clash = [
            flag
            for flag, value in (
                ("--batch", args.batch),
                ("--tiny", args.tiny or None),
                ("--precision", None if args.precision == "auto" else 1),
                ("--attn-backend", None if args.attn_backend == "auto" else 1),
                ("--compile", args.compile),
                ("--tf32", args.tf32),
                ("--activation-checkpointing", args.activation_checkpointing or None),
            )
            if value is not None
        ]
        if clash:
            p.error(
                f"--sweep takes the batch, geometry and runtime policy from the sweep file; "
                f"drop {' '.join(clash)}"
            )
        if not args.sweep.is_file():
            p.error(f"--sweep {args.sweep}: no such file")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print its report (and write it into --out); the exit status of the
    module docstring."""
    args = parse_args(argv)
    setup_logging()
    return run_cli(lambda: _bench(args, argv), input_errors=(FileNotFoundError,))


def _bench(args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.official is not None:
        check_checkout(args.official)  # before minutes of our own rows, not after
    device = pick_device(args.device)  # RuntimeFailure (exit 1) for --device cuda without a GPU
    # without --sweep: the trainer's defaults (scaling.core.runtime), changed by the flags
    policy = resolve(
        None,
        device=device,
        precision=args.precision,
        compile=args.compile,
        tf32=args.tf32,
        threads=args.threads,
    )
    fast = FastPath.of(policy, args.attn_backend, args.activation_checkpointing)
    geometry, batches, bases = (TINY if args.tiny else OFFICIAL), args.batch or [64, 16], None
    if args.sweep is not None:
        bases, batches, geometry = sweep_bases(args.sweep, args.depths)
    command = "python -m scaling.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    with policy.applied():  # the matmul peak and anything outside a size's own policy
        result = run_bench(
            depths=args.depths,
            batches=batches,
            what=args.what,
            device=device,
            geometry=geometry,
            fast=fast,
            steps=args.steps,
            repeats=args.repeats,
            warmup=args.warmup,
            eval_batch=args.eval_batch,
            sample_batch=args.sample_batch,
            tok_batch=args.tok_batch,
            check_batch=args.check_batch,
            official=args.official,
            peak_tflops=args.peak_tflops,
            command=command.strip(),
            bases=bases,
        )
    print(result.markdown())
    if args.out is not None:
        write_report(args.out, result)
        logger.info("written to %s", args.out)
    failed = [c.name for c in result.checks if c.passed is False]
    if failed:
        raise RuntimeFailure(f"fast-path checks failed: {failed}")
    return 0
