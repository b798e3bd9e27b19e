"""The runtime policy: device, precision (autocast), TF32, torch.compile and CPU threads.

One home for these choices, used by the trainer, the evaluator, the tokenizer, the VQVAE
trainer and the benchmark, so that the benchmark runs exactly what a study runs:

    policy = resolve(config.runtime)          # a RuntimeConfig (or the same fields by hand)
    with policy.applied():                    # threads and TF32 set here, restored on exit
        with policy.autocast():
            ...

Library code never changes process-wide settings (torch threads, TF32 flags) on its own:
entry points and jobs (`scaling.train`, `scaling.tokenize`, `scaling.train_vqvae`,
`scaling.launch` stage jobs, `scaling.bench`) enter `policy.applied()`, which restores the
previous values when it exits.

Choices when the config says "auto" (each with its reason):
  device     CUDA when present, else CPU.
  precision  bf16 autocast on CUDA (fp32 master weights; the official code uses fp16 AMP,
             bf16 needs no loss scaling); fp32 on CPU (bf16 matmuls are slower there).
  tf32       on for CUDA: the fp32 parts (the head's softmax inputs are fp32 anyway, the
             tokenizer's convolutions, anything outside autocast) run TF32 matmuls, as the
             official trainer does; irrelevant on CPU.
  compile    off unless asked: compilation costs minutes per model size and is only worth it
             on a GPU; `sweeps/depth_grid.yaml` turns it on.
  collective timeout  with several processes, a collective (all-reduce, barrier) that waits
             longer than COLLECTIVE_TIMEOUT_S_AUTO fails the job instead of hanging it: a
             crashed or lost rank ends the job within that bound. 30 min, torch's own gloo
             default: every rank waits in a barrier while rank 0 writes a checkpoint, which
             for the paper's largest sizes takes minutes.
  threads    on CPU, 1 per process (`CPU_THREADS_AUTO`): the demo's operations are tiny, and
             on a shared machine intra-op threads spin at barriers while another process
             holds the core (measured in docs/benchmarks.md, "CPU threads"); a process
             that gets a CPU to itself can set `num_threads`. On CUDA torch's default.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch

from scaling.core.cli import InputError, RuntimeFailure

PRECISIONS = ("auto", "fp32", "bf16")
CPU_THREADS_AUTO = 1
COLLECTIVE_TIMEOUT_S_AUTO = 1800.0


@dataclasses.dataclass(frozen=True)
class Policy:
    """How one process runs: resolved choices, no "auto" left."""

    device: torch.device
    precision: str  # "fp32" or "bf16" (autocast, fp32 master weights)
    tf32: bool  # TF32 for fp32 matmuls/convolutions (CUDA only)
    compile: bool  # torch.compile the model (and loss)
    threads: int | None  # torch intra-op CPU threads; None = leave torch's setting

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the policy's device, or a no-op for fp32."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def applied(self) -> Iterator[Policy]:
        """Set torch's CPU threads and the TF32 flags for the duration; restore them after."""
        saved = (
            torch.get_num_threads(),
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
        )
        try:
            if self.threads:
                torch.set_num_threads(self.threads)
            if self.device.type == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = self.tf32
                torch.backends.cudnn.allow_tf32 = self.tf32
            yield self
        finally:
            if torch.get_num_threads() != saved[0]:
                torch.set_num_threads(saved[0])
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1:]

    def eval_numerics(self, precision: str) -> contextlib.AbstractContextManager:
        """Evaluation numerics (`eval.precision`), a context manager that may be entered
        once per batch: "bf16" autocast, or "fp32" with TF32 matmuls on CUDA (float32
        matmul precision "high", as the official evaluation; restored on exit)."""
        if precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        if self.device.type == "cuda":
            return _MatmulPrecision("high")
        return contextlib.nullcontext()

    def maybe_compile(self, module: Any) -> Any:
        """torch.compile(module) when the policy says so, else the module itself."""
        return torch.compile(module) if self.compile else module

    def describe(self) -> str:
        """One line: e.g. "cuda:0 bf16 autocast, tf32 on, compile on, threads torch default"."""
        threads = "torch default" if self.threads is None else str(self.threads)
        prec = "bf16 autocast" if self.precision == "bf16" else "fp32"
        tf32 = f", tf32 {'on' if self.tf32 else 'off'}" if self.device.type == "cuda" else ""
        return (
            f"{self.device} {prec}{tf32}, compile {'on' if self.compile else 'off'}, "
            f"threads {threads}"
        )


class _MatmulPrecision:
    """torch.set_float32_matmul_precision for a `with` block (re-enterable); restores it."""

    def __init__(self, precision: str):
        self.precision, self.previous = precision, "highest"  # torch's default

    def __enter__(self) -> None:
        self.previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(self.precision)

    def __exit__(self, *exc) -> None:
        torch.set_float32_matmul_precision(self.previous)


def collective_timeout_s(runtime: Any = None) -> float:
    """Seconds a collective may wait before it fails the job: the config's
    `collective_timeout_s`, else COLLECTIVE_TIMEOUT_S_AUTO."""
    given = getattr(runtime, "collective_timeout_s", None) if runtime is not None else None
    if given is not None and given <= 0:
        raise InputError(f"collective_timeout_s must be > 0, got {given}")
    return float(given) if given is not None else COLLECTIVE_TIMEOUT_S_AUTO


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """'auto' -> this rank's CUDA device when there is one, else CPU; 'cuda'/'cpu' as asked."""
    if preference not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, got {preference!r}")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeFailure("device 'cuda' was asked for but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def resolve(
    runtime: Any = None,
    *,
    device: torch.device | str | None = None,
    precision: str | None = None,
    tf32: bool | None = None,
    compile: bool | None = None,
    threads: int | None = None,
) -> Policy:
    """The policy for a `RuntimeConfig` (or any object with its fields), keywords overriding.

    `device` may be a torch.device already chosen (e.g. by scaling.distributed) or a
    preference ("auto", "cpu", "cuda"). Unset fields take the "auto" choices of the module
    docstring.
    """

    def field(name: str, given: Any, default: Any) -> Any:
        if given is not None:
            return given
        return getattr(runtime, name, default) if runtime is not None else default

    dev = field("device", device, "auto")
    dev = dev if isinstance(dev, torch.device) else pick_device(str(dev))
    prec = field("precision", precision, "auto")
    if prec not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {prec!r}")
    if prec == "auto":
        prec = "bf16" if dev.type == "cuda" else "fp32"
    tf = field("tf32", tf32, None)
    tf = dev.type == "cuda" if tf is None else bool(tf)
    comp = bool(field("compile", compile, False))
    thr = field("num_threads", threads, None)
    if thr is not None and thr < 1:
        raise InputError(f"threads must be >= 1, got {thr}")
    if thr is None and dev.type == "cpu":
        thr = CPU_THREADS_AUTO
    return Policy(device=dev, precision=prec, tf32=tf, compile=comp, threads=thr)
