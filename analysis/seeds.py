"""Seed replicates as an axis of a scaling study: averaging, spread, and the two-level bootstrap.

A sweep with ``grid: {seed: [0, 1, 2]}`` trains every model size several times. The fits
treat the *size* as the unit, not the run:

- point estimate: the seeds of one size are averaged (`average_seeds`: the mean curve at the
  evaluation steps the seeds share; `seed_points`: the mean final value per size);
- uncertainty: a two-stage bootstrap (`bootstrap_size_seed`): sizes are drawn with
  replacement, then the seeds within each drawn size. By default the second stage draws the
  seeds *without* replacement (every seed once, so a drawn size enters with its seed mean):
  the strategy Davison & Hinkley (1997, sec. 3.8) recommend for two-stage data, because the
  scatter of the size means about the law already holds the seed noise. Drawing the seeds
  with replacement as well (``within="with"``) counts the seed noise twice: measured on a
  known law with known seed noise (7 sizes x 3 seeds, 120 studies; tests/analysis/test_seeds.py)
  its 95% intervals covered 100% of the time, the default's at the nominal rate;
- reporting: the seed-to-seed standard deviation of each metric per size (`seed_spread`).

Runs are grouped by `by` (default: the parameter count). Runs of one size that differ in
anything but the seed (another learning rate, say) must be told apart by adding that column
to `by`. Torch-free; used by `analysis.powerlaw` and the planner (`analysis.simulate`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .results import ResultsError, ResultsWarning, final_rows

SEED_COLUMN = "seed"


def has_replicates(table: pd.DataFrame, by: Sequence[str] = ("params",)) -> bool:
    """Whether some group (a size, by default) holds runs with at least two distinct seeds."""
    if SEED_COLUMN not in table.columns or "run" not in table.columns:
        return False
    per_run = table.drop_duplicates("run")
    return bool((per_run.groupby(list(by), sort=False)[SEED_COLUMN].nunique() >= 2).any())


def size_label(runs: Sequence[str], fallback: str) -> str:
    """A name for a group of seed runs: the '-'-parts their ids share (d16-s0, d16-s1 -> d16)."""
    parts = [str(r).split("-") for r in runs]
    shared = [p for p in parts[0] if all(p in other for other in parts[1:])]
    return (
        "-".join(shared)
        if shared and len(runs) > 1
        else (str(runs[0]) if len(runs) == 1 else fallback)
    )


def _groups(table: pd.DataFrame, by: Sequence[str]):
    per_run = table.drop_duplicates("run")
    for key, g in per_run.groupby(list(by), sort=True):
        yield key, sorted(g["run"].astype(str))


def seed_points(table: pd.DataFrame, metric: str, by: Sequence[str] = ("params",)) -> pd.DataFrame:
    """Final evaluation of every run, grouped by size: columns run, params, seed, y, group.

    group: an integer per size (ascending params), the unit the bootstrap resamples.
    """
    final = final_rows(table)
    seeds = final[SEED_COLUMN] if SEED_COLUMN in final.columns else pd.Series(0, index=final.index)
    out = pd.DataFrame(
        {
            "run": final["run"].astype(str).to_numpy(),
            "params": final["params"].to_numpy(float),
            "seed": seeds.to_numpy(),
            "y": final[metric].to_numpy(float),
        }
    )
    keys = final[list(by)].apply(tuple, axis=1)
    order = {k: i for i, k in enumerate(sorted(set(keys)))}
    out["group"] = [order[k] for k in keys]
    return out.sort_values(["group", "run"], kind="stable").reset_index(drop=True)


def seed_spread(
    table: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = ("params",)
) -> pd.DataFrame:
    """Seed-to-seed spread of each metric's final value, per size.

    Returns one row per (size, metric): params, metric, n_seeds, mean, sd (sample standard
    deviation, ddof = 1; NaN with one seed), rel_sd = sd / mean, runs (comma list).
    """
    rows = []
    for metric in metrics:
        pts = seed_points(table, metric, by)
        for _, g in pts.groupby("group", sort=True):
            y = g["y"].to_numpy(float)
            sd = float(np.std(y, ddof=1)) if len(y) > 1 else float("nan")
            rows.append(
                {
                    "params": float(g["params"].iloc[0]),
                    "metric": metric,
                    "n_seeds": int(len(y)),
                    "mean": float(y.mean()),
                    "sd": sd,
                    "rel_sd": sd / float(y.mean()),
                    "runs": ",".join(g["run"]),
                }
            )
    return pd.DataFrame(
        rows, columns=["params", "metric", "n_seeds", "mean", "sd", "rel_sd", "runs"]
    )


def pooled_log_sd(
    table: pd.DataFrame, metric: str, E: float = 0.0, by: Sequence[str] = ("params",)
) -> tuple[float, int]:
    """Pooled seed-to-seed sd of log(final metric - E) over all sizes with >= 2 seeds.

    Returns (sd, degrees of freedom). This is the noise model of the planner: a seed
    multiplies the reducible metric by exp(sd * z). Raises ResultsError without replicates.
    """
    pts = seed_points(table, metric, by)
    red = pts["y"].to_numpy(float) - E
    if (red <= 0).any():
        raise ResultsError(
            f"{metric}: E = {E:g} is not below every final value; cannot take log(y - E)"
        )
    pts = pts.assign(ly=np.log(red))
    ss, dof = 0.0, 0
    for _, g in pts.groupby("group"):
        if len(g) >= 2:
            ss += float(((g["ly"] - g["ly"].mean()) ** 2).sum())
            dof += len(g) - 1
    if dof == 0:
        raise ResultsError(
            f"{metric}: no model size has two or more seeds; the seed noise cannot be measured "
            f"(add a seed axis to the grid: grid: {{seed: [0, 1, 2]}})"
        )
    return float(np.sqrt(ss / dof)), dof


def _group_ids(table: pd.DataFrame, by: Sequence[str]) -> tuple[np.ndarray, list[list[str]]]:
    """[rows] group id of every row (sizes ascending) and the sorted run ids of each group."""
    per_run = table.drop_duplicates("run")
    gid_run = per_run.groupby(list(by), sort=True).ngroup()
    run_to_gid = dict(zip(per_run["run"].astype(str), gid_run.to_numpy()))
    runs: list[list[str]] = [[] for _ in range(int(gid_run.max()) + 1)]
    for r, g in sorted(run_to_gid.items()):
        runs[g].append(r)
    return table["run"].astype(str).map(run_to_gid).to_numpy(), runs


def average_seeds(
    table: pd.DataFrame, metrics: Sequence[str], by: Sequence[str] = ("params",)
) -> pd.DataFrame:
    """One training curve per size: the mean over its seeds at the steps they all share.

    table: a prepared tidy table (run, params, step, compute, metrics). Returns a table of
    the same layout (run = the seeds' shared run-id parts, e.g. ``d16``; numeric columns
    averaged) with an extra ``n_seeds`` column. Evaluation steps not reached by every seed
    of a size are dropped with a warning (a seed still running).
    """
    order = "step" if "step" in table.columns else "compute"
    cols = [
        c
        for c in ("params", "compute", "flops", "flops_6nd", "tokens", *metrics)
        if c in table.columns and c != order and c not in by
    ]
    gid, runs = _group_ids(table, by)
    t = table.assign(_gid=gid)
    agg = t.groupby(["_gid", order], sort=True).agg(
        **{c: (c, "mean") for c in cols},
        _n=("run", "nunique"),
        **{f"_by{i}": (c, "first") for i, c in enumerate(by)},
    )
    agg = agg.reset_index()
    need = np.array([len(r) for r in runs])[agg["_gid"].to_numpy()]
    short = agg["_n"].to_numpy() < need
    if short.any():
        for g in sorted(set(agg.loc[short, "_gid"])):
            warnings.warn(
                f"seeds {', '.join(runs[g])}: {int((short & (agg['_gid'] == g)).sum())} "
                "evaluation steps "
                f"not reached by every seed are left out of the average",
                ResultsWarning,
                stacklevel=2,
            )
        agg = agg[~short]
    labels = [size_label(r, f"group{g}") for g, r in enumerate(runs)]
    out = agg.rename(columns={f"_by{i}": c for i, c in enumerate(by)})
    out.insert(0, "run", [labels[g] for g in out["_gid"]])
    out["n_seeds"] = [len(runs[g]) for g in out["_gid"]]
    return out.drop(columns=["_gid", "_n"]).reset_index(drop=True)


def seed_curves(
    table: pd.DataFrame, metric: str, by: Sequence[str] = ("params",)
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per size (ascending): (compute [T], values [k_seeds, T]) at the T steps all its seeds share.

    The input of the Cmin bootstrap over sizes and seeds (compute: the seeds' mean, equal
    for seeds of one config).
    """
    order = "step" if "step" in table.columns else "compute"
    gid, runs = _group_ids(table, by)
    run_ids = table["run"].astype(str).to_numpy()
    steps = table[order].to_numpy(float)
    comp = table["compute"].to_numpy(float)
    vals = table[metric].to_numpy(float)
    out = []
    for g, members in enumerate(runs):
        rows = np.flatnonzero(gid == g)
        ustep, si = np.unique(steps[rows], return_inverse=True)
        ri = np.searchsorted(np.array(members), run_ids[rows])
        mat = np.full((len(members), len(ustep)), np.nan)
        cmat = np.full_like(mat, np.nan)
        mat[ri, si] = vals[rows]
        cmat[ri, si] = comp[rows]
        ok = ~np.isnan(mat).any(axis=0)
        out.append((cmat[:, ok].mean(axis=0), mat[:, ok]))
    return out


@dataclasses.dataclass(frozen=True)
class SeedDraws:
    """Two-level bootstrap draws: `counts` [B, S] how often each size was drawn, and
    `seeds` (per size s: [B, k_s] indices of its seeds drawn, with replacement)."""

    counts: np.ndarray
    seeds: tuple[np.ndarray, ...]

    def means(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """[B, S] the mean over the drawn seeds of `values` (per size s: [k_s] one value per
        seed)."""
        return np.column_stack(
            [np.asarray(v, float)[idx].mean(axis=1) for v, idx in zip(values, self.seeds)]
        )


def bootstrap_size_seed(
    seeds_per_size: Sequence[int], draws: int, rng: np.random.Generator, within: str = "without"
) -> SeedDraws:
    """Two-stage bootstrap: sizes with replacement, then the seeds within every size.

    seeds_per_size: [S] number of seeds of each size. Returns `SeedDraws` for `draws` samples.
    A size drawn k times enters the fit with weight k. within: how the seeds of a size are
    drawn, "without" replacement (default: all of them, the calibrated choice; see the module
    docstring) or "with" replacement (conservative: counts the seed noise twice). With one
    seed per size both are the plain bootstrap over runs.
    """
    S = len(seeds_per_size)
    if S == 0:
        raise ResultsError("the bootstrap needs at least one size")
    if within not in ("with", "without"):
        raise ResultsError(f"within must be 'with' or 'without' (replacement); got {within!r}")
    counts = rng.multinomial(S, np.full(S, 1 / S), size=draws)
    if within == "with":
        seeds = tuple(rng.integers(0, k, size=(draws, k)) for k in seeds_per_size)
    else:
        seeds = tuple(np.broadcast_to(np.arange(k), (draws, k)) for k in seeds_per_size)
    return SeedDraws(counts, seeds)
