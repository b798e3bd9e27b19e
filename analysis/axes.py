"""Grid axes of a study in the tidy table: laws per axis value, and each size's best run.

A study crosses the model size (the ``depth`` axis, N = ``params``) with other axes: a
learning rate, a tokenizer, a training length, seeds. The tidy table names every grid axis
in a column ``grid.<axis>`` (``grid.depth``, ``grid.optim.base_lr``, ``grid.seed``: written by
`results.read_runs` from the sweep's ``grid.yaml``, or by the user in their own table). Here:

- `axis_columns` / `resolve_axis`: which columns are axes, and an axis named by the user
  (``lr``, ``base_lr``, ``optim.base_lr`` or ``grid.optim.base_lr``);
- `split_axes`: size axes (they change N; a law is *along* them), replicate axes (seeds:
  averaged per size by the fits themselves, `analysis.seeds`, the one home of seed
  statistics) and the other axes (one law per value, or the best value per size);
- `groups`: the sub-tables with one value of every other axis, one law each;
- `best_over`: each size's best value of one axis by a metric (its final evaluation,
  seed-averaged), and which run was picked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .results import ResultsError, final_rows

AXIS_PREFIX = "grid."
SIZE_AXES = ("depth", "model.depth", "model.width", "params")  # axes a law runs along
SEED_AXES = ("seed",)  # replicate axes: averaged, never one law per value


def axis_columns(table: pd.DataFrame) -> list[str]:
    """The table's grid-axis columns (``grid.<axis>``), in table order."""
    return [c for c in table.columns if str(c).startswith(AXIS_PREFIX)]


def axis_name(column: str) -> str:
    """``grid.optim.base_lr`` -> ``optim.base_lr``."""
    return column[len(AXIS_PREFIX) :] if column.startswith(AXIS_PREFIX) else column


def resolve_axis(table: pd.DataFrame, name: str, labels: dict[str, str] | None = None) -> str:
    """The ``grid.*`` column an axis name means; `labels` maps run-id labels to axes.

    Accepts the column itself, the axis (``optim.base_lr``), its last part (``base_lr``) or its
    run-id label (``lr``); raises `ResultsError` listing the axes when none or two match.
    """
    columns = axis_columns(table)
    if not columns:
        raise ResultsError(
            f"axis {name!r}: the table has no grid-axis columns (grid.<axis>); "
            "results of a sweep launched by this version have them, a table of "
            "your own needs a column per axis named grid.<axis>"
        )
    target = (labels or {}).get(name, name)
    for candidates in (
        [c for c in columns if c in (name, AXIS_PREFIX + target)],
        [c for c in columns if axis_name(c).split(".")[-1] == target.split(".")[-1]],
    ):
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise ResultsError(
                f"axis {name!r} is ambiguous: {', '.join(map(axis_name, candidates))}"
            )
    raise ResultsError(
        f"axis {name!r} is not a grid axis of this table; its axes: "
        f"{', '.join(axis_name(c) for c in columns)}"
        + (f" (labels: {', '.join(f'{k}={v}' for k, v in labels.items())})" if labels else "")
    )


@dataclasses.dataclass(frozen=True)
class Axes:
    """The table's axes by role (column names)."""

    size: tuple[str, ...]
    seed: tuple[str, ...]
    other: tuple[str, ...]  # one law per value (or best over one of them)


def split_axes(table: pd.DataFrame) -> Axes:
    """Size axes (named in SIZE_AXES, or changing N within one value of every other axis),
    seed axes, and the others; axes with a single value are left out."""
    size, seed, other = [], [], []
    for col in axis_columns(table):
        if table[col].nunique(dropna=False) < 2:
            continue
        name = axis_name(col)
        if name in SIZE_AXES:
            size.append(col)
        elif name in SEED_AXES or name.endswith(".seed"):
            seed.append(col)
        else:
            other.append(col)
    return Axes(tuple(size), tuple(seed), tuple(other))


def _key(value: Any) -> Any:
    return "<missing>" if value is None or (isinstance(value, float) and np.isnan(value)) else value


def groups(
    table: pd.DataFrame, axes: Sequence[str]
) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """(value of each axis, sub-table) for every combination present; one group when no axes."""
    if not axes:
        yield {}, table
        return
    for values, df in table.groupby([table[a].map(_key) for a in axes], sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        yield {axis_name(a): _plain(v) for a, v in zip(axes, values)}, df


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def group_label(group: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """{'optim.base_lr': 0.024} -> 'lr=0.024'; `labels`: axis -> run-id label (grid.yaml's),
    else the last part of the axis name."""
    labels = labels or {}

    def text(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{labels.get(k, k.split('.')[-1])}={text(v)}" for k, v in group.items())


def best_over(
    table: pd.DataFrame,
    axis: str,
    metric: str,
    within: Sequence[str] = (),
    sizes: Sequence[str] = ("params",),
) -> tuple[pd.DataFrame, list[dict]]:
    """Each size's best value of `axis` by `metric` at the runs' final evaluations (lowest).

    table: a prepared tidy table; seed replicates (runs of one size and value) are compared
    by their mean final value, and all of the picked value's runs are kept. `within`: other
    axes whose values are kept apart (best per size and per value of each). `sizes`: the
    columns that say which runs are one size: N itself, or the size axes (``grid.depth``)
    when the axis changes N (a tokenizer's vocabulary changes the head). Returns the rows
    of the picked runs and one record per size: params, picked value, its run(s) and mean
    final metric, and every candidate value with its runs and mean final metric (best first).
    """
    final = final_rows(table)
    keep: list[str] = []
    picks: list[dict] = []
    keys = [*sizes, *within]
    for _, df in final.groupby([final[k].map(_key) for k in keys], sort=True, dropna=False):
        candidates = []
        for _, runs in df.groupby(df[axis].map(_key), sort=True, dropna=False):
            candidates.append(
                {
                    "value": _plain(runs[axis].iloc[0]),
                    "runs": sorted(runs["run"].astype(str)),
                    metric: float(runs[metric].mean()),
                }
            )
        candidates.sort(key=lambda c: (c[metric], str(c["value"])))
        best = candidates[0]
        keep += best["runs"]
        first = df[df["run"].astype(str) == best["runs"][0]].iloc[0]
        picks.append(
            {
                "params": int(first["params"]),
                "axis": axis_name(axis),
                "by": metric,
                "value": best["value"],
                "run": ", ".join(best["runs"]),
                "n_runs": len(best["runs"]),
                metric: best[metric],
                **{axis_name(w): _plain(first[w]) for w in within},
                "candidates": [
                    {"value": c["value"], "run": ", ".join(c["runs"]), metric: c[metric]}
                    for c in candidates
                ],
            }
        )
    return table[table["run"].astype(str).isin(keep)].copy(), picks
