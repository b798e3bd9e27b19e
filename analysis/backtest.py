"""Leave-future-out backtests of the power laws: how far do they extrapolate?

Two backtests on a prepared tidy table (`results.prepare`), each a list of predictions of
points the fit did not see, with the extrapolation factor of each:

- over sizes (`backtest_sizes`): for k = 3 .. n-1 sizes, fit ``metric - E = (beta N)^alpha``
  on the finished runs of the k smallest sizes and predict the final metric of every larger
  size; factor = N_target / N_k (the largest fitted size).
- over compute (`backtest_compute`): for cuts C_cut = C_max / 2, / 4, ... (while >= 3
  frontier points lie below), fit the law vs Cmin on the Pareto frontier of every curve
  truncated at C_cut and predict the full frontier's points above the cut; factor =
  C / C_cut.

E is chosen as the study's fit would (a number, or fitted): a fitted E is refitted on the
data below the cut, never taken from the whole study (that would leak the future into the
backtest). `summary` bins the errors by factor (x1-2, x2-4, x4-8, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .paper import X_SCALE
from .powerlaw import Irreducible, Method, fit_vs_cmin, fit_vs_n, irreducible_value
from .results import ResultsError, final_rows

# factor bins of the summary table: [1, 2), [2, 4), ... [64, inf)
BIN_EDGES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, math.inf)


def _E_spec(metric: str, irreducible: Irreducible) -> tuple[Irreducible, str]:
    E = irreducible_value(metric, irreducible)
    return ("fit", "refitted below the cut") if E is None else (E, f"fixed at {E:g}")


def backtest_sizes(
    table: pd.DataFrame,
    metrics: Sequence[str],
    irreducible: Irreducible = "none",
    method: Method = "ols",
    final: str = "last",
    min_sizes: int = 3,
) -> list[dict[str, Any]]:
    """Leave-future-out over sizes on the finished runs of `table` (one row per prediction):
    against "N", metric, k (sizes fitted), fit_max (N of the largest fitted size, params),
    target (the run), x (its params), factor, observed, predicted, rel_error (predicted /
    observed - 1), E (the value used) and E_choice. Sizes whose fit fails are skipped."""
    if "finished" in table.columns:
        table = table[table["finished"].astype(bool)]
    sizes = sorted(set(float(p) for p in table["params"]))
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        spec, choice = _E_spec(metric, irreducible)
        finals = final_rows(table, None if final == "last" else metric)
        for k in range(min_sizes, len(sizes)):
            top = sizes[k - 1]
            sub = table[table["params"].astype(float) <= top]
            try:
                res = fit_vs_n(
                    sub, metric, irreducible=spec, method=method, bootstrap=0, final=final
                )
            except ResultsError:
                continue
            for r in finals[finals["params"].astype(float) > top].itertuples():
                obs = float(getattr(r, metric))
                pred = float(res.law.predict(float(r.params) / X_SCALE["N"]))
                rows.append(
                    {
                        "against": "N",
                        "metric": metric,
                        "k": k,
                        "fit_max": top,
                        "target": str(r.run),
                        "x": float(r.params),
                        "factor": float(r.params) / top,
                        "observed": obs,
                        "predicted": pred,
                        "rel_error": pred / obs - 1,
                        "E": res.law.E,
                        "E_choice": choice,
                        "alpha": res.law.alpha,
                        "beta": res.law.beta,
                    }
                )
    return rows


def backtest_compute(
    table: pd.DataFrame,
    metrics: Sequence[str],
    irreducible: Irreducible = "none",
    method: Method = "ols",
    min_points: int = 3,
    max_cuts: int = 6,
) -> list[dict[str, Any]]:
    """Leave-future-out over compute (one row per predicted frontier point): against "Cmin",
    metric, cut (FLOPs), target ("run@step" of the frontier point), x (its compute, FLOPs),
    factor = x / cut, observed, predicted, rel_error, E, E_choice. `table` needs the
    ``compute`` column (FLOPs)."""
    rows: list[dict[str, Any]] = []
    for metric in metrics:
        spec, choice = _E_spec(metric, irreducible)
        try:
            full = fit_vs_cmin(table, metric, irreducible=spec, method=method, bootstrap=0)
        except ResultsError:
            continue
        pts = full.points  # run, step, x (PFLOPs), y on the frontier of every curve
        c_max = float(table["compute"].max())
        for j in range(1, max_cuts + 1):
            cut = c_max / 2**j
            below = table[table["compute"].astype(float) <= cut]
            try:
                res = fit_vs_cmin(below, metric, irreducible=spec, method=method, bootstrap=0)
            except ResultsError:
                break
            if len(res.points) < min_points:
                break
            above = pts[pts["x"].astype(float) * X_SCALE["Cmin"] > cut]
            for r in above.itertuples():
                x = float(r.x) * X_SCALE["Cmin"]
                pred = float(res.law.predict(float(r.x)))
                rows.append(
                    {
                        "against": "Cmin",
                        "metric": metric,
                        "cut": cut,
                        "fit_max": cut,
                        "target": f"{r.run}@{int(r.step)}" if hasattr(r, "step") else str(r.run),
                        "x": x,
                        "factor": x / cut,
                        "observed": float(r.y),
                        "predicted": pred,
                        "rel_error": pred / float(r.y) - 1,
                        "E": res.law.E,
                        "E_choice": choice,
                        "alpha": res.law.alpha,
                        "beta": res.law.beta,
                    }
                )
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Errors binned by extrapolation factor, per (against, metric, bin): n, median and max
    |rel_error| (as fractions), the bin's bounds."""
    if not rows:
        return []
    df = pd.DataFrame(rows)
    df["abs"] = df["rel_error"].abs()
    edges = np.asarray(BIN_EDGES)
    df["bin"] = np.searchsorted(edges, df["factor"].to_numpy(float), side="right") - 1
    out = []
    for (against, metric, b), g in df.groupby(["against", "metric", "bin"], sort=True):
        out.append(
            {
                "against": against,
                "metric": metric,
                "factor_lo": float(edges[b]),
                "factor_hi": float(edges[b + 1]),
                "n": int(len(g)),
                "median_abs_rel_error": float(g["abs"].median()),
                "max_abs_rel_error": float(g["abs"].max()),
            }
        )
    order = {"N": 0, "Cmin": 1}
    return sorted(out, key=lambda r: (order.get(r["against"], 2), r["metric"], r["factor_lo"]))


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as a Markdown table: prediction error against extrapolation factor."""
    lines = [
        "| vs | metric | factor | predictions | median abs. rel. error | max abs. rel. error |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary(rows):
        hi = "" if math.isinf(r["factor_hi"]) else f"{r['factor_hi']:g}"
        lines.append(
            f"| {r['against']} | {r['metric']} | x{r['factor_lo']:g}-{hi} | {r['n']} "
            f"| {100 * r['median_abs_rel_error']:.2f}% | {100 * r['max_abs_rel_error']:.2f}% |"
        )
    return "\n".join(lines) + "\n"
