"""The Pareto frontier of training curves: the lowest metric reached with at most C compute.

Each run contributes its evaluation points (compute, metric). Between two evaluations a run's
curve is interpolated linearly in log-log. The frontier value at compute level c is the
lowest metric any run reached at or below c:

    F(c) = min over runs r with c_r,first <= c of
               min( y_r,i for c_r,i <= c ,  y_r(c) if c <= c_r,last )

(on a piecewise-linear curve the minimum up to c is at an evaluation or at c itself).
The points used to fit the Cmin law are the evaluations that lie on the frontier and improve
on it: ``y_i == F(c_i)`` and ``y_i < F(c_prev)`` (the frontier at the previous compute
level), so flat stretches and points beaten by another run's interpolated curve are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .results import ResultsError

_TOL = 1e-12  # relative tolerance for "on the frontier" (values are compared after log/exp)


@dataclasses.dataclass(frozen=True)
class Frontier:
    """Frontier of one metric.

    curve: DataFrame with columns compute, value, run: F at every evaluation compute level
        (sorted ascending; `run` is the run whose curve gives the minimum there).
    points: DataFrame with columns compute, value, run, step: the evaluations on the frontier
        (the points a Cmin law is fitted to).
    """

    metric: str
    curve: pd.DataFrame
    points: pd.DataFrame


def run_curves(
    table: pd.DataFrame, metric: str
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Per run (sorted by name): (run, compute [n], metric [n], step [n]), ascending compute."""
    out = []
    order = "step" if "step" in table.columns else "compute"
    for run, df in table.groupby("run", sort=True):
        df = df.sort_values(["compute", order], kind="stable")
        c = df["compute"].to_numpy(float)
        y = df[metric].to_numpy(float)
        step = df[order].to_numpy(float)
        out.append((str(run), c, y, step))
    return out


def smooth_curves(table: pd.DataFrame, metric: str, window: int) -> pd.DataFrame:
    """Copy of `table` with each run's `metric` smoothed in log-log before taking a frontier.

    Every evaluation is replaced by the value at its compute of a least-squares line in
    (log compute, log metric) through it and its `window` neighbours on each side (fewer at
    the ends). The frontier takes minima, so on noisy, nearly flat curves (error rates) it
    picks the noise's low points and sits below the true envelope; smoothing first removes
    most of that bias. window 0 returns the table unchanged (the paper's raw frontier).
    """
    if window <= 0:
        return table
    table = table.copy()
    order = "step" if "step" in table.columns else "compute"
    for _, idx in table.groupby("run", sort=False).groups.items():
        df = table.loc[idx].sort_values(["compute", order], kind="stable")
        u = np.log(df["compute"].to_numpy(float))
        ly = np.log(df[metric].to_numpy(float))
        out = ly.copy()
        for i in range(len(u)):
            lo, hi = max(0, i - window), min(len(u), i + window + 1)
            uu, yy = u[lo:hi], ly[lo:hi]
            if hi - lo >= 3 and np.ptp(uu) > 0:
                slope = np.sum((uu - uu.mean()) * (yy - yy.mean())) / np.sum((uu - uu.mean()) ** 2)
                out[i] = yy.mean() + slope * (u[i] - uu.mean())
        table.loc[df.index, metric] = np.exp(out)
    return table


def frontier_values(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """F at each compute level; returns (values [M], index of the best curve [M], -1 if none).

    curves: list of (compute [n_r] ascending, metric [n_r]) per run; levels: [M] computes.
    """
    levels = np.asarray(levels, dtype=float)
    best = np.full(levels.shape, np.inf)
    who = np.full(levels.shape, -1, dtype=int)
    log_levels = np.log(levels)
    for k, (c, y) in enumerate(curves):
        started = levels >= c[0]
        # lowest evaluation at or below each level: running minimum, looked up by position
        pos = np.searchsorted(c, levels, side="right") - 1
        running = np.minimum.accumulate(y)
        value = np.where(pos >= 0, running[np.clip(pos, 0, None)], np.inf)
        # the interpolated curve itself, inside the run's range
        inside = started & (levels <= c[-1])
        if len(c) > 1:
            interp = np.exp(np.interp(log_levels, np.log(c), np.log(y)))
            value = np.where(inside, np.minimum(value, interp), value)
        value = np.where(started, value, np.inf)
        better = value < best
        best = np.where(better, value, best)
        who = np.where(better, k, who)
    return best, who


def _frontier_at_evaluations(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`frontier_values` at `levels` = the union of the curves' computes, for all curves at once.

    Same definition (running minimum of the evaluations, and the log-log interpolation inside
    a run's range), as [K, M] array operations: the bootstrap calls this thousands of times.
    """
    K, M = len(curves), len(levels)
    Y = np.full((K, M), np.inf)
    for k, (c, y) in enumerate(curves):
        np.minimum.at(Y[k], np.searchsorted(levels, c), y)
    has = np.isfinite(Y)
    running = np.minimum.accumulate(Y, axis=1)
    cols = np.arange(M)
    prev = np.maximum.accumulate(np.where(has, cols, -1), axis=1)  # last evaluation <= level
    nxt = np.minimum.accumulate(np.where(has, cols, M)[:, ::-1], axis=1)[:, ::-1]  # first >= level
    inside = (prev >= 0) & (nxt < M)
    ll = np.log(levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.log(Y)
        p, q = np.clip(prev, 0, M - 1), np.clip(nxt, 0, M - 1)
        lp, lq = np.take_along_axis(ly, p, 1), np.take_along_axis(ly, q, 1)
        span = ll[q] - ll[p]
        interp = np.where(
            span > 0, lp + (ll[None, :] - ll[p]) * (lq - lp) / np.where(span > 0, span, 1), lp
        )
    value = np.where(inside, np.minimum(running, np.exp(interp)), running)
    best = value.min(axis=0)
    who = np.where(np.isfinite(best), value.argmin(axis=0), -1)
    return best, who


def frontier_mask(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Frontier of a list of curves.

    curves: list of (compute [n_r] ascending, metric [n_r]) per run.
    Returns (levels [M], F [M], best curve index [M], per curve a bool mask [n_r] of its
    evaluations that are frontier points).
    """
    levels = np.unique(np.concatenate([c for c, _ in curves]))
    value, who = _frontier_at_evaluations(curves, levels)
    prev = np.concatenate([[np.inf], value[:-1]])  # F at the previous compute level
    masks = []
    for c, y in curves:
        at = np.searchsorted(levels, c)
        masks.append((y <= value[at] * (1 + _TOL)) & (y < prev[at] * (1 - _TOL)))
    return levels, value, who, masks


def pareto_frontier(table: pd.DataFrame, metric: str, min_runs: int = 2) -> Frontier:
    """Frontier of `metric` over all runs of a prepared table (needs columns run, compute, metric).

    Raises `ResultsError` when fewer than `min_runs` runs are given: the frontier of one
    training curve is just that curve and says nothing about the best model size.
    """
    curves = run_curves(table, metric)
    if len(curves) < min_runs:
        raise ResultsError(
            f"the Cmin frontier needs training curves from at least {min_runs} runs "
            f"(several model sizes, each with several evaluations); got {len(curves)}"
        )
    levels, value, who, masks = frontier_mask([(c, y) for _, c, y, _ in curves])
    names = [name for name, *_ in curves]
    curve = pd.DataFrame({"compute": levels, "value": value, "run": [names[k] for k in who]})
    rows = []
    for (name, c, y, step), on in zip(curves, masks):
        for i in np.flatnonzero(on):
            rows.append((c[i], y[i], name, step[i]))
    points = pd.DataFrame(rows, columns=["compute", "value", "run", "step"])
    # two runs tying at one level: keep one point per level (the first run by name)
    points = points.sort_values(["compute", "run"], kind="stable").drop_duplicates("compute")
    return Frontier(metric, curve, points.reset_index(drop=True))


def frontier_rows(table: pd.DataFrame, cmin_from: str | float) -> np.ndarray:
    """[rows] bool: the evaluations of a prepared table the Cmin frontier may use.

    cmin_from 0: all of them (the paper's raw frontier); a fraction f: each run's evaluations
    at >= f of its largest compute (its final one when finished); "warmup_end": those after
    the learning-rate warm-up, whose length is the table's ``optim.warmup_steps`` when set,
    else ``optim.warmup_frac`` x the run's length (``length.steps`` when set, else its last
    step). Raises ValueError (a `ResultsError` upstream) when the columns are missing.
    """
    if cmin_from == "warmup_end":
        if "step" not in table.columns or not {
            "optim.warmup_frac",
            "optim.warmup_steps",
        } & set(table.columns):
            raise ValueError(
                "cmin_from: warmup_end needs the runs' step and optim.warmup_frac or "
                "optim.warmup_steps (a runs directory has them); give a fraction instead"
            )
        steps = table["step"].to_numpy(float)
        last = table.groupby("run")["step"].transform("max").to_numpy(float)
        total = (
            pd.to_numeric(table["length.steps"], errors="coerce").to_numpy(float)
            if "length.steps" in table.columns
            else np.full(len(table), np.nan)
        )
        total = np.where(np.isfinite(total), total, last)
        fixed = (
            pd.to_numeric(table["optim.warmup_steps"], errors="coerce").to_numpy(float)
            if "optim.warmup_steps" in table.columns
            else np.full(len(table), np.nan)
        )
        frac = (
            pd.to_numeric(table["optim.warmup_frac"], errors="coerce").to_numpy(float)
            if "optim.warmup_frac" in table.columns
            else np.full(len(table), np.nan)
        )
        warm = np.where(np.isfinite(fixed), fixed, frac * total)
        if not np.isfinite(warm).all():
            raise ValueError("cmin_from: warmup_end: some runs record no warm-up length")
        return steps >= warm
    f = float(cmin_from)
    if f <= 0:
        return np.ones(len(table), dtype=bool)
    top = table.groupby("run")["compute"].transform("max").to_numpy(float)
    return table["compute"].to_numpy(float) >= f * top * (1 - 1e-12)
