"""Power-law fits ``y = E + (beta * x)^alpha`` with bootstrap intervals and a hold-out check.

Conventions (the paper's): x is N in billions of parameters or Cmin in PFLOPs; E is the
irreducible loss subtracted from cross-entropy (0 for error rates); the fit is done on
``log(y - E) = alpha * log(x) + alpha * log(beta)``.

Methods:
- ``ols``: closed-form least squares in log-log.
- ``robust``: Huber loss on the log residuals (scipy least_squares), started from several
  points (the OLS solution, the Theil-Sen line, OLS on the middle half); the Huber scale is
  1.345 robust standard deviations of the OLS residuals.
- E = "fit": y = E + (beta*x)^alpha fitted jointly on log(y) with 0 <= E < min(y), from
  several starting E (least squares, or Huber when robust).

Uncertainty: bootstrap over runs (a run drawn k times counts k times). For Cmin the frontier
is recomputed from the drawn runs. With seed replicates (a ``seed`` column holding two or more
seeds for some size; `analysis.seeds`) the unit is the size instead: the seeds of a size are
averaged for the point estimate, and the bootstrap draws sizes and, within each, seeds. Intervals
are percentile intervals, by default with
Hesterberg's small-sample expansion (``expanded``): the tail probability is taken as
Phi(-sqrt(n/(n-1)) t_{n-1, 1-a/2}) for n runs, which corrects the known under-coverage of
plain percentiles with a dozen points; ``percentile`` gives the plain ones.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import optimize, stats
from tqdm import tqdm  # plain: tqdm.auto warns in a notebook without ipywidgets

from .frontier import Frontier, frontier_mask, pareto_frontier, run_curves, smooth_curves
from .paper import PAPER_IRREDUCIBLE, X_SCALE, X_UNIT
from .results import ResultsError, final_rows
from .seeds import (
    average_seeds,
    bootstrap_size_seed,
    has_replicates,
    seed_curves,
    seed_points,
    seed_spread,
    size_label,
)
from .tokenizer import BITS_COLUMN

Irreducible = Literal["paper", "none", "fit"] | float
Method = Literal["ols", "robust"]
CIMethod = Literal["expanded", "percentile"]


@dataclasses.dataclass(frozen=True)
class Law:
    """``y = E + (beta * x)^alpha``."""

    alpha: float
    beta: float
    E: float = 0.0

    def predict(self, x) -> np.ndarray:
        """The metric at x (law units); shape of x."""
        return self.E + (self.beta * np.asarray(x, dtype=float)) ** self.alpha


def is_loss(metric: str) -> bool:
    """Whether `metric` is a loss with an irreducible term E (the cross-entropies and bits per
    image, their sum over an image's tokens); error rates and sample metrics are not."""
    return metric.startswith("ce") or metric == BITS_COLUMN


def irreducible_value(metric: str, spec: Irreducible | str) -> float | None:
    """E for `metric` under `spec`: a number, or None meaning "fit it jointly".

    Error rates and sample metrics (fid, sample_fd, sample_err) are fitted directly (E = 0)
    whatever the spec; losses (`is_loss`) take the paper's value (E_avg = 5, E_last = 4.5), 0
    (``none``), a user number, or ``fit``.
    """
    if not is_loss(metric):
        return 0.0
    if spec == "paper":
        if metric not in PAPER_IRREDUCIBLE:
            raise ResultsError(f"no paper irreducible term for {metric!r}")
        return PAPER_IRREDUCIBLE[metric]
    if spec == "none":
        return 0.0
    if spec == "fit":
        return None
    try:
        value = float(spec)
    except (TypeError, ValueError):
        raise ResultsError(
            f"irreducible must be 'paper', 'none', 'fit' or a number; got {spec!r}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ResultsError(f"irreducible must be a non-negative number; got {spec!r}")
    return value


# ---------------------------------------------------------------------------- single fits


def _ols_line(lx: np.ndarray, ly: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """Weighted least-squares line ly = a*lx + b; returns (a, b)."""
    w = np.ones_like(lx) if w is None else w
    sw = w.sum()
    mx, my = (w * lx).sum() / sw, (w * ly).sum() / sw
    sxx = (w * (lx - mx) ** 2).sum()
    if sxx <= 0:
        raise ResultsError("the fit needs at least two distinct x values")
    a = (w * (lx - mx) * (ly - my)).sum() / sxx
    return float(a), float(my - a * mx)


def _huber_line(
    lx: np.ndarray, ly: np.ndarray, w: np.ndarray | None, start: tuple[float, float] | None = None
) -> tuple[float, float]:
    w = np.ones_like(lx) if w is None else w
    a0, b0 = _ols_line(lx, ly, w)
    resid = ly - (a0 * lx + b0)
    scale = 1.345 * max(1.4826 * float(np.median(np.abs(resid - np.median(resid)))), 1e-4)
    starts = [(a0, b0)]
    if start is not None:  # the bootstrap: the full data's solution and OLS suffice
        starts.append(start)
    else:
        ts = stats.theilslopes(ly, lx)
        starts.append((float(ts.slope), float(ts.intercept)))
        keep = np.abs(resid) <= np.quantile(np.abs(resid), 0.5) if len(lx) >= 6 else None
        if keep is not None and np.ptp(lx[keep]) > 0:
            starts.append(_ols_line(lx[keep], ly[keep], w[keep]))
    sw = np.sqrt(w)

    def residual(p):
        return sw * (ly - (p[0] * lx + p[1]))

    jac = -np.column_stack([sw * lx, sw])  # constant: the model is linear in (a, b)
    best = None
    for start in starts:
        res = optimize.least_squares(
            residual, np.array(start), jac=lambda p: jac, loss="huber", f_scale=scale, method="trf"
        )
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None, "no starting point"
    return float(best.x[0]), float(best.x[1])


def _joint(
    lx: np.ndarray, y: np.ndarray, w: np.ndarray | None, robust: bool, start: Law | None = None
) -> Law:
    w = np.ones_like(lx) if w is None else w
    ly = np.log(y)
    ymin = float(y.min())
    sw = np.sqrt(w)

    def residual(p):
        alpha, lb, E = p
        return sw * (ly - np.log(E + np.exp(alpha * (lb + lx))))

    def jac(p):
        alpha, lb, E = p
        z = np.exp(alpha * (lb + lx))
        d = sw / (E + z)
        return -np.column_stack([d * z * (lb + lx), d * z * alpha, d])

    lo = np.array([-np.inf, -np.inf, 0.0])
    hi = np.array([np.inf, np.inf, ymin * (1 - 1e-9)])
    starts = []
    if start is not None:  # the bootstrap starts from the full data's solution
        starts.append(np.array([start.alpha, np.log(start.beta), start.E]))
    else:
        for frac in (0.0, 0.5, 0.9):
            E0 = frac * ymin
            a0, b0 = _ols_line(lx, np.log(y - E0), w)
            if a0 != 0:
                starts.append(np.array([a0, b0 / a0, E0]))
    best = None
    for p0 in starts:
        p0[2] = min(max(p0[2], 0.0), hi[2] * (1 - 1e-6))
        res = optimize.least_squares(
            residual,
            p0,
            jac=jac,
            bounds=(lo, hi),
            method="trf",
            loss="huber" if robust else "linear",
            f_scale=0.01 if robust else 1.0,
        )
        if best is None or res.cost < best.cost:
            best = res
    if best is None:
        raise ResultsError("the joint fit of E found no slope in the data")
    alpha, lb, E = best.x
    return Law(float(alpha), float(np.exp(lb)), float(E))


def fit_law(
    x, y, E: float | None = 0.0, method: Method = "ols", weights=None, start: Law | None = None
) -> Law:
    """Fit ``y = E + (beta*x)^alpha``; x, y: positive arrays [n]; E None = fit E jointly.

    weights: optional [n] non-negative multiplicities (the bootstrap's counts).
    start: a solution to start from instead of several starting points (the bootstrap
        passes the full data's fit; used by the robust and joint fits).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    w = None if weights is None else np.asarray(weights, dtype=float)
    lx = np.log(x)
    if E is None:
        return _joint(lx, y, w, robust=(method == "robust"), start=start)
    red = y - E
    if (red <= 0).any():
        raise ResultsError(
            f"irreducible term E={E:g} is not below every value (smallest {y.min():.6g}); "
            f"the reducible loss y - E must be positive: choose a smaller E, 'none' or 'fit'"
        )
    ly = np.log(red)
    if method == "robust":
        a, b = _huber_line(
            lx, ly, w, None if start is None else (start.alpha, start.alpha * np.log(start.beta))
        )
    else:
        a, b = _ols_line(lx, ly, w)
    if a == 0:
        raise ResultsError("fitted exponent is exactly 0: the data has no trend")
    return Law(a, float(np.exp(b / a)), float(E))


def pearson_loglog(x, y, E: float = 0.0) -> float:
    """Pearson r between log(x) and log(y - E); x, y: arrays [n]."""
    lx = np.log(np.asarray(x, float))
    ly = np.log(np.asarray(y, float) - E)
    if np.ptp(lx) == 0 or np.ptp(ly) == 0:
        return float("nan")
    return float(np.corrcoef(lx, ly)[0, 1])


def interval_quantiles(n_units: int, level: float, ci_method: CIMethod) -> tuple[float, float]:
    """Lower/upper quantiles of the bootstrap distribution for a `level` interval."""
    tail = (1 - level) / 2
    if ci_method == "expanded" and n_units > 2:
        t = stats.t.ppf(1 - tail, n_units - 1)
        tail = float(stats.norm.cdf(-math.sqrt(n_units / (n_units - 1)) * t))
    elif ci_method not in ("expanded", "percentile"):
        raise ResultsError(f"ci method must be 'expanded' or 'percentile'; got {ci_method!r}")
    return tail, 1 - tail


# ---------------------------------------------------------------------------- results


@dataclasses.dataclass
class Holdout:
    """Fit without the k largest models; prediction error on their points."""

    k: int
    runs: list[str]
    law: Law
    points: pd.DataFrame  # run, x, y, predicted, rel_error

    @property
    def max_abs_rel_error(self) -> float:
        return float(self.points["rel_error"].abs().max()) if len(self.points) else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "held_out_runs": self.runs,
            "alpha": self.law.alpha,
            "beta": self.law.beta,
            "E": self.law.E,
            "points": [
                {
                    "run": str(r.run),
                    "x": float(r.x),
                    "y": float(r.y),
                    "predicted": float(r.predicted),
                    "rel_error": float(r.rel_error),
                }
                for r in self.points.itertuples()
            ],
            "max_abs_rel_error": _num(self.max_abs_rel_error),
            "mean_abs_rel_error": _num(float(self.points["rel_error"].abs().mean()))
            if len(self.points)
            else None,
        }


@dataclasses.dataclass
class FitResult:
    """A fitted law with its data, uncertainty and hold-out check."""

    metric: str
    against: Literal["N", "Cmin"]
    law: Law
    E_mode: str  # "fixed" (given) or "fit" (joint)
    method: str
    r: float
    points: pd.DataFrame  # run, x (law units), y: the points fitted
    n_runs: int
    alpha_ci: tuple[float, float] | None = None
    beta_ci: tuple[float, float] | None = None
    E_ci: tuple[float, float] | None = None
    level: float = 0.95
    ci_method: CIMethod = "expanded"
    bootstrap: int = 0
    bootstrap_valid: int = 0
    holdout: Holdout | None = None
    frontier: Frontier | None = None  # Cmin only
    smooth: int = 0  # Cmin only: smoothing window applied to each run's curve
    samples: np.ndarray | None = None  # [B_valid, 3] bootstrap (alpha, beta, E): bands, comparisons
    resampling: str = "runs"  # bootstrap unit: "runs", or "sizes, seeds within sizes"
    seed_spread: pd.DataFrame | None = (
        None  # per size: params, n_seeds, mean, sd (seed replicates only)
    )
    # how the bootstrap treats E: "given" (a fixed E), "refitted" (every draw refits the
    # shared E, analysis.ebootstrap) or "fixed at its fitted value"
    E_in_bootstrap: str = "given"
    ci_note: str | None = None  # why no interval is given (analysis.sensitivity)
    marks: list[str] = dataclasses.field(default_factory=list)  # row marks (wrong sign, ...)
    sensitivity: dict[str, Any] | None = None  # analysis.sensitivity.sensitivity's report

    @property
    def x_unit(self) -> str:
        return X_UNIT[self.against]

    def equation(self, digits: int = 3) -> str:
        """e.g. ``ce_last - 4.5 = (2.03 N)^-0.231``."""
        lhs = self.metric if abs(self.law.E) <= 1e-9 else f"{self.metric} - {self.law.E:.{digits}g}"
        return f"{lhs} = ({self.law.beta:.{digits}g} {self.against})^{self.law.alpha:.{digits}g}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (see docs/fitting.md for every field)."""
        x = self.points["x"].to_numpy(float)
        y = self.points["y"].to_numpy(float)
        out: dict[str, Any] = {
            "metric": self.metric,
            "against": self.against,
            "x_unit": self.x_unit,
            "form": "y - E = (beta * x)^alpha",
            "alpha": self.law.alpha,
            "alpha_ci": _pair(self.alpha_ci),
            "beta": self.law.beta,
            "beta_ci": _pair(self.beta_ci),
            "E": self.law.E,
            "E_mode": self.E_mode,
            "E_ci": _pair(self.E_ci) if self.E_mode == "fit" else None,
            "r": _num(self.r),
            "method": self.method,
            "n_points": int(len(x)),
            "n_runs": self.n_runs,
            "x_min": float(x.min()),
            "x_max": float(x.max()),
            "y_min": float(y.min()),
            "y_max": float(y.max()),
            "equation": self.equation(),
            "ci": {
                "level": self.level,
                "method": self.ci_method,
                "bootstrap_samples": self.bootstrap,
                "bootstrap_valid": self.bootstrap_valid,
                "resampling": self.resampling,
                "E": self.E_in_bootstrap,
                "not_given": self.ci_note,
            },
            "marks": list(self.marks),
            "sensitivity": self.sensitivity,
            "holdout": self.holdout.to_dict() if self.holdout else None,
            "seed_spread": None
            if self.seed_spread is None
            else [
                {
                    "params": float(r.params),
                    "n_seeds": int(r.n_seeds),
                    "mean": float(r.mean),
                    "sd": _num(float(r.sd)),
                    "runs": str(r.runs).split(","),
                }
                for r in self.seed_spread.itertuples()
            ],
        }
        if self.frontier is not None:
            out["smooth"] = self.smooth
            out["frontier_points"] = [
                {"run": str(p.run), "step": _num(float(p.step)), "x": float(p.x), "y": float(p.y)}
                for p in self.points.itertuples()
            ]
        return out


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _pair(p):
    return None if p is None else [_num(p[0]), _num(p[1])]


def _summarise(samples: np.ndarray, n_units: int, level: float, ci_method: CIMethod):
    """samples: [B, 3] (alpha, beta, E) of the valid bootstrap fits -> three intervals."""
    if len(samples) < 2:
        return None, None, None
    lo, hi = interval_quantiles(n_units, level, ci_method)
    q = np.quantile(samples, [lo, hi], axis=0)
    return tuple(q[:, 0]), tuple(q[:, 1]), tuple(q[:, 2])


# ---------------------------------------------------------------------------- vs N


def _n_points(table: pd.DataFrame, metric: str, final: str = "last") -> pd.DataFrame:
    if final not in ("last", "best"):
        raise ResultsError(f"final must be 'last' or 'best'; got {final!r}")
    rows = final_rows(table, metric if final == "best" else None)
    return pd.DataFrame(
        {
            "run": rows["run"].astype(str).to_numpy(),
            "x": rows["params"].to_numpy(float) / X_SCALE["N"],
            "y": rows[metric].to_numpy(float),
        }
    )


def points_vs_n(table: pd.DataFrame, metric: str, final: str = "last") -> pd.DataFrame:
    """The points a law vs N is fitted to: run, x (billions of params), y; one per run."""
    pts = _n_points(table, metric, final)
    _check_sizes(pts["x"].to_numpy(), f"fitting {metric} against N")
    return pts


def points_vs_cmin(table: pd.DataFrame, metric: str, smooth: int = 0) -> pd.DataFrame:
    """The points a law vs Cmin is fitted to: run, step, x (PFLOPs), y on the frontier."""
    pts = _cmin_points(pareto_frontier(smooth_curves(table, metric, smooth), metric))
    if len(pts) < 3:
        raise ResultsError(
            f"the {metric} frontier has {len(pts)} points; fitting against Cmin needs at least 3 "
            f"(more evaluations per run, or more runs)"
        )
    return pts


def _check_sizes(x: np.ndarray, what: str) -> None:
    sizes = np.unique(x)
    if len(sizes) < 3:
        raise ResultsError(
            f"{what} needs at least 3 model sizes (distinct params); got {len(sizes)}"
            + (f" ({', '.join(f'{s:.4g}' for s in sizes)} B params)" if len(sizes) else "")
        )


def fit_vs_n(
    table: pd.DataFrame,
    metric: str,
    irreducible: Irreducible = "none",
    method: Method = "ols",
    bootstrap: int = 1000,
    level: float = 0.95,
    holdout: int = 0,
    seed: int = 0,
    ci_method: CIMethod = "expanded",
    seeds: bool | None = None,
    final: str = "last",
) -> FitResult:
    """Fit `metric` at each run's final evaluation against N (billions of params).

    table: a prepared tidy table (`results.prepare`). Bootstrap resamples runs; `holdout`
    k > 0 refits without the k largest sizes and predicts them. seeds: average seed
    replicates per size and bootstrap sizes then seeds within them (None = when the table
    has a ``seed`` column with replicates; `analysis.seeds`). `final`: "last" (each run's
    last evaluation, as the paper) or "best" (its lowest value of `metric`; without seed
    replicates).
    """
    use_seeds = has_replicates(table) if seeds is None else seeds
    if use_seeds:
        sp = seed_points(table, metric)
        groups = [g for _, g in sp.groupby("group", sort=True)]
        values = [g["y"].to_numpy(float) for g in groups]
        pts = pd.DataFrame(
            {
                "run": [size_label(list(g["run"]), f"N{int(g['params'].iloc[0])}") for g in groups],
                "x": [float(g["params"].iloc[0]) / X_SCALE["N"] for g in groups],
                "y": [float(v.mean()) for v in values],
            }
        )
    else:
        pts = _n_points(table, metric, final)
    x, y = pts["x"].to_numpy(), pts["y"].to_numpy()
    _check_sizes(x, f"fitting {metric} against N")
    E = irreducible_value(metric, irreducible)
    law = fit_law(x, y, E, method)
    r = pearson_loglog(x, y, law.E)
    result = FitResult(
        metric,
        "N",
        law,
        "fit" if E is None else "fixed",
        method,
        r,
        pts,
        int(table["run"].nunique()) if use_seeds else len(pts),
        level=level,
        ci_method=ci_method,
        bootstrap=bootstrap,
    )
    if use_seeds:
        result.resampling = "sizes, seeds within sizes"
        result.seed_spread = seed_spread(table, [metric]).drop(columns="metric")
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        if use_seeds:
            draws = bootstrap_size_seed([len(v) for v in values], bootstrap, rng)
            samples = _bootstrap_n(x, draws.means(values), E, method, draws.counts, law)
        else:
            counts = rng.multinomial(len(x), np.full(len(x), 1 / len(x)), size=bootstrap)
            samples = _bootstrap_n(x, y, E, method, counts, law)
        result.bootstrap_valid, result.samples = len(samples), samples
        result.alpha_ci, result.beta_ci, result.E_ci = _summarise(samples, len(x), level, ci_method)
    if holdout > 0:
        result.holdout = _holdout_n(pts, E, method, holdout)
    return result


def _enough_sizes(counts: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[B] bool: the draw has at least 3 distinct sizes."""
    sizes, inverse = np.unique(x, return_inverse=True)
    onehot = np.zeros((len(x), len(sizes)))
    onehot[np.arange(len(x)), inverse] = 1
    return ((counts @ onehot) > 0).sum(axis=1) >= 3


def _bootstrap_n(x, y, E, method, counts: np.ndarray, start: Law) -> np.ndarray:
    """Bootstrap fits vs N; counts: [B, n] multiplicities; y: [n], or [B, n] when every draw
    has its own values (seed replicates resampled). Returns [B_valid, 3] (alpha, beta, E)."""
    valid = _enough_sizes(counts, x)
    counts = counts[valid].astype(float)
    y = np.asarray(y, float)
    ys = y[valid] if y.ndim == 2 else np.broadcast_to(y, counts.shape)
    if E is not None and method == "ols":
        # closed form for all draws at once: weighted least squares in log-log
        lx, ly = np.log(x), np.log(ys - E)
        sw = counts.sum(axis=1)
        mx, my = counts @ lx / sw, (counts * ly).sum(axis=1) / sw
        sxx = counts @ (lx**2) / sw - mx**2
        sxy = (counts * ly) @ lx / sw - mx * my
        alpha = sxy / sxx
        with np.errstate(over="ignore", divide="ignore"):  # tiny alphas make beta overflow
            beta = np.exp((my - alpha * mx) / alpha)
        return np.column_stack([alpha, beta, np.full_like(alpha, E)])
    out = []
    for w, yb in tqdm(
        zip(counts, ys),
        total=len(counts),
        desc="bootstrap",
        disable=not sys.stderr.isatty(),
        leave=False,
    ):
        keep = w > 0
        try:
            law = fit_law(x[keep], yb[keep], E, method, w[keep], start=start)
        except ResultsError:
            continue
        out.append((law.alpha, law.beta, law.E))
    return np.array(out).reshape(-1, 3)


def _holdout_n(pts: pd.DataFrame, E, method, k: int) -> Holdout:
    sizes = np.unique(pts["x"])
    if len(sizes) - k < 3:
        raise ResultsError(
            f"hold-out k={k} leaves {len(sizes) - k} model sizes; the fit needs at least 3 "
            f"(use k <= {len(sizes) - 3})"
        )
    held = pts["x"] >= sizes[-k]
    train, test = pts[~held], pts[held]
    law = fit_law(train["x"], train["y"], E, method)
    pred = law.predict(test["x"].to_numpy())
    out = pd.DataFrame(
        {
            "run": test["run"].to_numpy(),
            "x": test["x"].to_numpy(),
            "y": test["y"].to_numpy(),
            "predicted": pred,
            "rel_error": pred / test["y"].to_numpy() - 1,
        }
    )
    return Holdout(k, list(out["run"]), law, out)


# ---------------------------------------------------------------------------- vs Cmin


def _cmin_points(frontier: Frontier) -> pd.DataFrame:
    p = frontier.points
    return pd.DataFrame(
        {
            "run": p["run"].astype(str).to_numpy(),
            "step": p["step"].to_numpy(float),
            "x": p["compute"].to_numpy(float) / X_SCALE["Cmin"],
            "y": p["value"].to_numpy(float),
        }
    )


def fit_vs_cmin(
    table: pd.DataFrame,
    metric: str,
    irreducible: Irreducible = "none",
    method: Method = "ols",
    bootstrap: int = 1000,
    level: float = 0.95,
    holdout: int = 0,
    seed: int = 0,
    ci_method: CIMethod = "expanded",
    smooth: int = 0,
    seeds: bool | None = None,
) -> FitResult:
    """Fit `metric` on the Pareto frontier of all training curves against Cmin (PFLOPs).

    table: a prepared tidy table (its ``compute`` column in FLOPs). Bootstrap resamples runs
    and recomputes the frontier from each draw; `holdout` k > 0 drops the k largest models,
    refits on the remaining frontier and predicts the full frontier's points from those models.
    `smooth` > 0 smooths each run's curve first (`frontier.smooth_curves`; 0 = raw frontier).
    seeds: with seed replicates (None = auto), the frontier is taken over the seed-averaged
    curve of each size and the bootstrap draws sizes, then seeds within each drawn size.
    """
    use_seeds = has_replicates(table) if seeds is None else seeds
    if use_seeds:
        spread = seed_spread(table, [metric]).drop(columns="metric")
        curves_by_size = seed_curves(table, metric)
        table = average_seeds(table, [metric])
    table = smooth_curves(table, metric, smooth)
    frontier = pareto_frontier(table, metric)
    pts = _cmin_points(frontier)
    if len(pts) < 3:
        raise ResultsError(
            f"the {metric} frontier has {len(pts)} points; fitting against Cmin needs at least 3 "
            f"(more evaluations per run, or more runs)"
        )
    E = irreducible_value(metric, irreducible)
    law = fit_law(pts["x"], pts["y"], E, method)
    r = pearson_loglog(pts["x"], pts["y"], law.E)
    n_runs = table["run"].nunique()
    result = FitResult(
        metric,
        "Cmin",
        law,
        "fit" if E is None else "fixed",
        method,
        r,
        pts,
        n_runs,
        level=level,
        ci_method=ci_method,
        bootstrap=bootstrap,
        frontier=frontier,
        smooth=smooth,
    )
    if use_seeds:
        result.resampling = "sizes, seeds within sizes"
        result.seed_spread = spread
    if bootstrap > 0:
        if use_seeds:
            samples = _bootstrap_cmin_seeds(
                curves_by_size, metric, E, method, bootstrap, seed, law, smooth
            )
        else:
            samples = _bootstrap_cmin(table, metric, E, method, bootstrap, seed, law)
        result.bootstrap_valid, result.samples = len(samples), samples
        result.alpha_ci, result.beta_ci, result.E_ci = _summarise(samples, n_runs, level, ci_method)
    if holdout > 0:
        result.holdout = _holdout_cmin(table, metric, pts, E, method, holdout)
    return result


def _bootstrap_cmin(table, metric, E, method, bootstrap: int, seed: int, start: Law) -> np.ndarray:
    curves = run_curves(table, metric)
    n = len(curves)
    rng = np.random.default_rng(seed)
    out = []
    for _ in tqdm(
        range(bootstrap),
        desc=f"bootstrap {metric} vs Cmin",
        disable=not sys.stderr.isatty(),
        leave=False,
    ):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
        drawn = np.flatnonzero(counts)
        if len(drawn) < 2:
            continue
        sub = [(curves[k][1], curves[k][2]) for k in drawn]
        law = _frontier_draw_law(sub, counts[drawn], E, method, start)
        if law is not None:
            out.append((law.alpha, law.beta, law.E))
    return np.array(out).reshape(-1, 3)


def _frontier_draw_law(sub, weights, E, method, start: Law) -> Law | None:
    """Fit the Cmin law on one bootstrap draw's frontier: `sub` holds the drawn curves
    (compute, metric), `weights` how often each was drawn; None when the draw cannot be fitted."""
    _, _, _, masks = frontier_mask(sub)
    xs = np.concatenate([c[m] for (c, _), m in zip(sub, masks)]) / X_SCALE["Cmin"]
    ys = np.concatenate([y[m] for (_, y), m in zip(sub, masks)])
    ws = np.concatenate([np.full(m.sum(), w, float) for w, m in zip(weights, masks)])
    if len(np.unique(xs)) < 3:
        return None
    try:
        return fit_law(xs, ys, E, method, ws, start=start)
    except ResultsError:
        return None


def _bootstrap_cmin_seeds(
    curves, metric, E, method, bootstrap: int, seed: int, start: Law, smooth: int
) -> np.ndarray:
    """Cmin bootstrap over sizes, and seeds within each drawn size (their mean curve)."""
    rng = np.random.default_rng(seed)
    draws = bootstrap_size_seed([v.shape[0] for _, v in curves], bootstrap, rng)
    out = []
    for b in tqdm(
        range(bootstrap),
        desc=f"bootstrap {metric} vs Cmin (seeds)",
        disable=not sys.stderr.isatty(),
        leave=False,
    ):
        counts = draws.counts[b]
        drawn = np.flatnonzero(counts)
        if len(drawn) < 2:
            continue
        sub = []
        for k in drawn:
            c, v = curves[k]
            y = v[draws.seeds[k][b]].mean(axis=0)
            if smooth > 0:
                y = smooth_curves(
                    pd.DataFrame({"run": "r", "params": 1.0, "compute": c, metric: y}),
                    metric,
                    smooth,
                )[metric].to_numpy(float)
            sub.append((c, y))
        law = _frontier_draw_law(sub, counts[drawn], E, method, start)
        if law is not None:
            out.append((law.alpha, law.beta, law.E))
    return np.array(out).reshape(-1, 3)


def _holdout_cmin(table, metric, pts: pd.DataFrame, E, method, k: int) -> Holdout:
    sizes = table.groupby("run")["params"].max().sort_values(kind="stable")
    distinct = np.unique(sizes.to_numpy())
    if len(distinct) - k < 2:
        raise ResultsError(
            f"hold-out k={k} leaves {len(distinct) - k} model sizes; the Cmin fit needs "
            f"at least 2 (use a smaller k)"
        )
    held_runs = sorted(sizes.index[sizes >= distinct[-k]].astype(str))
    rest = table[~table["run"].astype(str).isin(held_runs)]
    rest_pts = _cmin_points(pareto_frontier(rest, metric))
    if len(rest_pts) < 3:
        raise ResultsError(
            f"hold-out k={k}: the remaining frontier has {len(rest_pts)} points; need 3"
        )
    law = fit_law(rest_pts["x"], rest_pts["y"], E, method)
    test = pts[pts["run"].isin(held_runs)]
    pred = law.predict(test["x"].to_numpy())
    out = pd.DataFrame(
        {
            "run": test["run"].to_numpy(),
            "x": test["x"].to_numpy(),
            "y": test["y"].to_numpy(),
            "predicted": pred,
            "rel_error": pred / test["y"].to_numpy() - 1,
        }
    )
    return Holdout(k, held_runs, law, out)
