"""How the benchmark measures: synchronised median timings, peak memory, the matmul peak."""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_median(
    fn: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int, inner: int = 1
) -> tuple[float, list[float]]:
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


def matmul_peak_tflops(
    device: torch.device, n: int | None = None, repeats: int = 10
) -> tuple[float, str]:
    """Measured dense matmul throughput in TFLOP/s and a label of what was measured.

    CUDA: bf16 [n, n] @ [n, n] with n = 8192; CPU: fp32 with n = 1024 (a reference only).
    """
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sec, _ = time_median(lambda: a @ b, device, warmup=3, repeats=repeats, inner=5)
    return 2 * n**3 / sec / 1e12, f"{str(dtype).removeprefix('torch.')} {n}^3 matmul"


def device_name(device: torch.device) -> str:
    """Human-readable device name (GPU model, or CPU with its thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
