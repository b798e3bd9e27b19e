"""What a launch writes into the sweep's output folder: each run's resolved `config.yaml`,
`fit.yaml` (the sweep's fit defaults), `grid.yaml` (every run's axis values, for the tidy
table) and `sweep.yaml` (the sweep file as launched), all under one lock per folder so that
two launchers never race."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from contracts import grid as grid_file
from contracts.atomic import atomic_write_text
from contracts.grid import GridFile
from scaling.core.cli import RuntimeFailure
from scaling.core.config_io import ConfigError, dump_yaml, to_dict
from scaling.study.run.checks import check_output, output_is_a_file
from scaling.study.sweep.expand import Run, axis_label, axis_value
from scaling.study.sweep.sweep import SWEEP_COPY, Sweep


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Exclusive lock on the sweep's output folder for the duration of a launch."""
    check_output(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(output_is_a_file(output)) from None
    except OSError as e:
        raise RuntimeFailure(
            f"cannot create the output folder {output}: {e.strerror or e}"
        ) from None
    with open(output / ".launch.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeFailure(f"another launch is running on {output}") from None
        yield


def write_run_config(run: Run) -> None:
    """Write run.config to `<run_dir>/config.yaml` (when it changed), headed by a comment per
    command-line set that changed it (the key, its resolved value, the --set as typed)."""
    path = run.run_dir / "config.yaml"
    text = "".join(
        f"# {key}: {value!r} from the command line (--set {typed})\n"
        for key, (value, typed) in run.sets.items()
    ) + dump_yaml(run.config)
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text)


def write_fit_defaults(sweep: Sweep) -> Path | None:
    """`<output>/fit.yaml`: the sweep's `fit:` section (the keys it gives), the defaults of
    `python -m scaling.fit <output>`."""
    if not sweep.spec.fit:
        return None
    path = sweep.output / "fit.yaml"
    atomic_write_text(path, dump_yaml(sweep.spec.fit))
    return path


def write_grid(sweep: Sweep, runs: list[Run]) -> Path:
    """`<output>/grid.yaml`: the axes and every run's axis values, for the tidy table's
    ``grid.<axis>`` columns (`contracts.grid`, its one reader and writer), and
    `<output>/sweep.yaml`, the sweep file as launched (so that launch, status and fit accept
    the output folder).

    Runs of earlier launches are kept (another --set makes other runs in the same folder);
    a command-line set key that changed runs becomes an axis, its value read from each
    run's config.yaml for the runs that did not set it.
    """
    path = sweep.output / grid_file.FILE
    old = grid_file.read_grid(path)  # a damaged grid.yaml stops the launch, named
    axes = list(dict.fromkeys([*sweep.spec.grid, *old.axes, *(k for r in runs for k in r.sets)]))
    # an axis without a run-id label (the tokenizer's: d4-v128) is named by itself
    labels = {**old.labels, **{a: axis_label(a, sweep.spec.labels) or a for a in axes}}
    entries: dict[str, dict] = {k: dict(v) for k, v in old.runs.items()}
    for run in runs:  # this launch's runs: every axis from the resolved config
        config = to_dict(run.config)
        entries[run.run_id] = {
            **{a: axis_value(config, a) for a in axes},
            **run.axes,
            **{k: v for k, (v, _) in run.sets.items()},
        }
    for run_id, point in entries.items():  # earlier runs: a new axis from their config.yaml
        for axis in axes:
            if axis not in point:
                point[axis] = _config_value(sweep.output / run_id / "config.yaml", axis)
    sweep.output.mkdir(parents=True, exist_ok=True)
    grid_file.write_grid(
        path,
        GridFile(
            axes=tuple(axes),
            labels=labels,
            runs={k: to_dict(v) for k, v in entries.items()},
            sweep=sweep.spec.name,
        ),
    )
    source = Path(sweep.source)
    if source.resolve() != (sweep.output / SWEEP_COPY).resolve():
        atomic_write_text(sweep.output / SWEEP_COPY, source.read_text())
    return path


def _config_value(config_yaml: Path, axis: str) -> Any:
    """An axis value read from a run's config.yaml; None when it cannot be read."""
    try:
        data = yaml.safe_load(config_yaml.read_text())
    except (OSError, ValueError):
        return None
    return axis_value(data, axis)
