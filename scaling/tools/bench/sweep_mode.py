"""`python -m scaling.bench --sweep FILE --depths ...`: time what a study runs, i.e. each
size with the run config the sweep gives it, at one process's share of the global batch, on
random tokens of the sweep's geometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scaling.core.config_io import ConfigError
from scaling.study.sweep.expand import Run
from scaling.study.sweep.sweep import load_sweep
from scaling.tools.bench.geometry import OFFICIAL, Geometry
from scaling.training.config import RunConfig


def sweep_bases(path: Path, depths: Sequence[int]) -> tuple[list[RunConfig], list[int], Geometry]:
    """What `--sweep path --depths ...` benchmarks: per depth the sweep's run config, one
    process's batch (batch_size / (nodes x tasks per node)) and the sweep's token geometry
    (VQVAE size from its `prepare.vqvae` section, else the official one).
    Raises ConfigError for a bad sweep file or a depth the sweep does not train."""
    sweep = load_sweep(path)
    by_depth: dict[int, Run] = {}
    for run in sweep.runs:
        by_depth.setdefault(run.depth, run)  # the first run of that depth (other axes: --only)
    missing = [d for d in depths if d not in by_depth]
    if missing:
        raise ConfigError(
            f"{path}: --depths {missing} not in the sweep's grid "
            f"(it trains depths {sorted(by_depth)})"
        )
    bases, batches = [], []
    for d in depths:
        run = by_depth[d]
        procs = run.resources.processes
        if run.config.optim.batch_size % procs:
            raise ConfigError(
                f"{path}: d{d}: batch_size {run.config.optim.batch_size} is not "
                f"divisible by its {procs} processes"
            )
        bases.append(run.config)
        batches.append(run.config.optim.batch_size // procs)
    meta = sweep.expected_meta()
    vq = dict(sweep.spec.prepare.vqvae or {}) if sweep.spec.prepare is not None else {}
    geometry = Geometry(
        vocab_size=int(meta["vocab_size"]),
        patch_nums=tuple(meta["patch_nums"]),
        num_classes=int(meta["num_classes"]),
        z_channels=int(vq.get("z_channels", OFFICIAL.z_channels)),
        vqvae_ch=int(vq.get("ch", OFFICIAL.vqvae_ch)),
        vqvae_ch_mult=tuple(vq.get("ch_mult", OFFICIAL.vqvae_ch_mult)),
    )
    return bases, batches, geometry
