"""Tidy results table: one row per evaluation, read from run directories or a user's file.

A run directory ``<runs_dir>/<run_id>/`` holds ``config.yaml`` and ``metrics.jsonl`` (one
JSON object per evaluation). `read_runs` turns a folder of them into the tidy table:
columns run, params, step, tokens, flops, flops_6nd, ce_avg, ce_last, err_avg, err_last,
the other metric fields (among them the run's resolved key settings, written by the trainer:
width, batch, peak_lr, epochs, seed), the config's scalars flattened (``model.depth``),
per-scale columns (``ce_s0``, ``err_s0``, ...), ``bits_per_image`` (the loss comparable
across tokenizers, `analysis.tokenizer`), ``finished`` (the run's status.json says
done) and, for a sweep's output folder, one column
per grid axis, ``grid.<axis>`` (from ``<runs_dir>/grid.yaml``, written by the launcher; see
`analysis.axes`). The run folder's files are read through their contracts (`contracts.metrics`,
`contracts.status`, `contracts.grid`). `read_table` reads the same table from CSV or Parquet.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from contracts import ContractError
from contracts.grid import FILE as GRID_FILE
from contracts.grid import read_grid
from contracts.metrics import BY_SCALE, read_metrics
from contracts.status import read_status

from .sample_metrics import join_sample_evals
from .tokenizer import add_bits_per_image

COMPUTE_COLUMNS = {"exact": "flops", "6nd": "flops_6nd"}


class ResultsError(ValueError):
    """The results cannot be used as asked; the message says what is wrong and what is needed."""


class ResultsWarning(UserWarning):
    """Something in the results was skipped (a corrupt line, NaN rows)."""


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    # scalars only: lists (e.g. patch_nums) do not make useful table columns
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is None or isinstance(value, (bool, int, float, str)):
        out[prefix] = value


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        warnings.warn(
            f"{path}: unreadable config.yaml, config columns left out ({e})",
            ResultsWarning,
            stacklevel=3,
        )
        return {}
    flat: dict[str, Any] = {}
    if isinstance(data, dict):
        _flatten("", data, flat)
    return flat


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's lines as table rows (`contracts.metrics`: a torn last line is skipped
    with a warning, any other unreadable line is an error naming file and line); the
    per-scale lists become columns ``ce_s0``, ``err_s0``, ...; other lists and mappings
    (no table cells) are left out."""
    rows = []
    for record in read_metrics(path):
        row = record.columns()
        for key in BY_SCALE:
            values = row.pop(key, None)
            if values is not None:
                short = key.split("_")[0]
                row.update({f"{short}_s{i}": v for i, v in enumerate(values)})
        rows.append({k: v for k, v in row.items() if not isinstance(v, (list, dict))})
    return rows


def read_runs(runs_dir: str | Path, include_subset: bool = False) -> pd.DataFrame:
    """Read every ``<runs_dir>/<run_id>/metrics.jsonl`` (and config.yaml) into the tidy table.

    Rows with ``eval == "subset"`` (cheap evaluations on part of the test set) are left out
    unless `include_subset`. Returns one row per evaluation, sorted by run then step, with a
    ``grid.<axis>`` column per axis of ``grid.yaml`` (runs it does not list get none).
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ResultsError(f"{runs_dir}: not a directory of runs")
    try:
        return _read_runs(runs_dir, include_subset)
    except ContractError as e:  # a damaged run file: the analysis API raises ResultsError
        raise ResultsError(str(e)) from None


def _read_runs(runs_dir: Path, include_subset: bool) -> pd.DataFrame:
    grid = read_grid(runs_dir / GRID_FILE)
    frames = []
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        metrics = run_dir / "metrics.jsonl"
        rows = _read_metrics(metrics) if metrics.exists() else []
        if not rows:
            if metrics.exists() or (run_dir / "status.json").exists():
                # a run of the study with nothing to fit: say which and why
                warnings.warn(
                    f"{run_dir.name}: left out, no evaluations ({run_state(run_dir)})",
                    ResultsWarning,
                    stacklevel=2,
                )
            continue
        df = pd.DataFrame(rows)
        if "run" not in df.columns:
            df["run"] = run_dir.name
        df["run"] = df["run"].fillna(run_dir.name).astype(str)
        for key, value in _read_config(run_dir / "config.yaml").items():
            if key not in df.columns:
                df[key] = value
        df["finished"] = _finished(run_dir)
        df["run_state"] = run_state(run_dir)
        point = grid.runs.get(run_dir.name, {})
        for axis in grid.axes:
            df[f"grid.{axis}"] = point.get(axis)
        frames.append(df)
    if not frames:
        raise ResultsError(
            f"{runs_dir}: no run directories with a metrics.jsonl "
            f"(expected <runs_dir>/<run_id>/metrics.jsonl)"
        )
    table = pd.concat(frames, ignore_index=True, sort=False)
    table, orphans = join_sample_evals(table)
    if orphans:
        warnings.warn(
            f"{runs_dir}: sample evaluations without a test evaluation at the same step left "
            f"out ({', '.join(orphans[:5])})",
            ResultsWarning,
            stacklevel=2,
        )
    return _select_evals(add_bits_per_image(table), include_subset, str(runs_dir))


def _finished(run_dir: Path) -> bool:
    """Whether a run has trained to its last step: its status.json says "done" (a run without
    status.json, e.g. copied metrics only, counts as finished: nothing says otherwise)."""
    path = run_dir / "status.json"
    return read_status(path).finished if path.exists() else True


def run_state(run_dir: Path) -> str:
    """What a run's status.json says of it, in words: 'done', 'running', 'failed: <the first
    line of its error>', 'no status.json', 'unreadable status.json'."""
    path = run_dir / "status.json"
    if not path.exists():
        return "no status.json"
    try:
        status = read_status(path)
    except ContractError:  # named in words here; `_finished` raises it for the table
        return "unreadable status.json"
    error = (status.error or "").strip()
    if status.state == "failed" and error:
        return f"{status.state}: {error.splitlines()[0][:120]}"
    return status.state


def read_table(path: str | Path, include_subset: bool = False) -> pd.DataFrame:
    """Read a tidy table from CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``)."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            table = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz", ".tsv")):
            table = pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",")
        else:
            raise ResultsError(f"{path}: unknown table format; use .csv or .parquet")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (OSError, ValueError, ImportError) as e:
        if isinstance(e, ResultsError):
            raise
        raise ResultsError(f"{path}: cannot read the table: {e}") from None
    if "run" in table.columns:
        table["run"] = table["run"].astype(str)
    return _select_evals(add_bits_per_image(table), include_subset, str(path))


def load_results(source: str | Path, include_subset: bool = False) -> pd.DataFrame:
    """A runs directory (`read_runs`) or a table file (`read_table`)."""
    source = Path(source)
    if source.is_dir():
        return read_runs(source, include_subset)
    return read_table(source, include_subset)


def _select_evals(table: pd.DataFrame, include_subset: bool, source: str) -> pd.DataFrame:
    if "eval" in table.columns and not include_subset:
        table = table[table["eval"].fillna("full") != "subset"]
        if table.empty:
            raise ResultsError(
                f"{source}: only subset evaluations; pass include_subset "
                f"(--set include_subset=true) to fit on them"
            )
    sort = [c for c in ("run", "step", "tokens", "flops") if c in table.columns]
    return table.sort_values(sort, kind="stable").reset_index(drop=True)


def require_columns(
    table: pd.DataFrame, columns: Iterable[str], what: str, source: str = "table"
) -> None:
    """Raise `ResultsError` naming every column of `columns` missing from `table`."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ResultsError(
            f"{source}: column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} "
            f"missing; {what} needs columns {', '.join(columns)} (has: "
            f"{', '.join(map(str, table.columns))})"
        )


def prepare(
    table: pd.DataFrame, metrics: Iterable[str], compute: str = "exact", source: str = "table"
) -> pd.DataFrame:
    """Check and clean a tidy table for fitting; returns a copy with a ``compute`` column.

    Needs run, params, step (or tokens), the compute column (``flops`` for "exact",
    ``flops_6nd`` for "6nd"; the latter is derived as 6*params*tokens when only tokens are
    given) and the metric columns. Rows with NaN in any of these are dropped with a warning
    that counts them; a non-positive value is an error naming the column and the run.
    """
    metrics = list(metrics)
    if compute not in COMPUTE_COLUMNS:
        raise ResultsError(f"compute must be one of {', '.join(COMPUTE_COLUMNS)}; got {compute!r}")
    column = COMPUTE_COLUMNS[compute]
    table = table.copy()
    if (
        column == "flops_6nd"
        and column not in table.columns
        and {"tokens", "params"} <= set(table.columns)
    ):
        table[column] = 6.0 * table["params"].astype(float) * table["tokens"].astype(float)
    order = "step" if "step" in table.columns else "tokens"
    require_columns(table, ["run", "params", order, column, *metrics], "fitting", source)
    needed = ["params", column, *metrics]
    for c in needed:
        table[c] = pd.to_numeric(table[c], errors="coerce")
    bad = table[needed].isna().any(axis=1)
    if bad.any():
        warnings.warn(
            f"{source}: dropped {int(bad.sum())} of {len(table)} rows with NaN in "
            f"{', '.join(c for c in needed if table[c].isna().any())}",
            ResultsWarning,
            stacklevel=2,
        )
        table = table[~bad]
    if table.empty:
        raise ResultsError(f"{source}: no rows left to fit")
    for c in needed:
        nonpos = table[c] <= 0
        if nonpos.any():
            runs = sorted(set(table.loc[nonpos, "run"].astype(str)))
            raise ResultsError(
                f"{source}: column {c!r} has {int(nonpos.sum())} non-positive values "
                f"(runs {', '.join(runs[:5])}{'...' if len(runs) > 5 else ''}); "
                f"power laws need positive values"
            )
        if not np.isfinite(table[c].to_numpy(float)).all():
            raise ResultsError(f"{source}: column {c!r} has infinite values")
    table["compute"] = table[column].astype(float)
    return table.sort_values(["run", order], kind="stable").reset_index(drop=True)


def final_rows(table: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The last evaluation of every run (largest step, else tokens, else compute), or with
    `metric` the evaluation where that metric is lowest (the run's best)."""
    if metric is not None:
        idx = table.groupby("run", sort=False)[metric].idxmin()
        return table.loc[idx.to_numpy()].sort_values("params", kind="stable").reset_index(drop=True)
    order = next(c for c in ("step", "tokens", "compute", "flops") if c in table.columns)
    idx = table.groupby("run", sort=False)[order].idxmax()
    return table.loc[idx.to_numpy()].sort_values("params", kind="stable").reset_index(drop=True)
