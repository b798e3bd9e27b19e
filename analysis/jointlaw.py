"""The joint law ``L(N, D) = E + A / N^alpha + B / D^beta`` and its compute-optimal frontier.

N is the number of parameters, D the training data (tokens or images, stated by the caller).
The fit (Hoffmann et al. 2022, approach 3; OLMo-core's ladder):

- points: the annealed final evaluation of every run (decay branches are runs);
- loss: Huber (delta = 1e-3 by default) on the log residuals
  ``log(E + A N^-alpha + B D^-beta) - log L``, in coordinates normalised by the geometric
  means of N and D (A and B are reported in raw units);
- optimiser: L-BFGS-B (analytic gradient) from the best starts of a grid over
  (E, A, alpha, B, beta), keeping the lowest objective;
- uncertainty: bootstrap over families (a parent run and its decay branches share one seed's
  noise and are drawn together; each family drawn with
  replacement); intervals are percentile intervals, Hesterberg-expanded as in
  `analysis.powerlaw` with the degrees of freedom of a 5-parameter fit;
- hold-out: refit without the largest model (all its points) and predict them.

Compute (`ComputeModel`): C = k N^gamma D, fitted in log space on the runs' own exact FLOP
counts (column ``flops`` of var_core.counting: training = 3 x forward, the AdaLN projection once
per image), so that the frontier speaks in the same FLOPs as the runs. With it the
compute-optimal allocation has a closed form: minimising L subject to C = k N^gamma D gives

    N*(C) = [alpha A C^beta / (gamma beta B k^beta)]^(1 / (alpha + gamma beta)),
    D*(C) = C / (k N*^gamma),
    so N* ~ C^(beta / (alpha + gamma beta)) and D* ~ C^(alpha / (alpha + gamma beta)).

This module never imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .results import ResultsError, final_rows

N_PARAMS = 5
D_UNITS = ("tokens", "images")


@dataclasses.dataclass(frozen=True)
class JointLaw:
    """``L(N, D) = E + A / N^alpha + B / D^beta`` (N in parameters, D in `d_unit`)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def predict(self, N, D) -> np.ndarray:
        """Loss at N, D (broadcast arrays)."""
        N = np.asarray(N, float)
        D = np.asarray(D, float)
        return self.E + self.A * N**-self.alpha + self.B * D**-self.beta

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- fitting


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss and its derivative, elementwise."""
    a = np.abs(r)
    small = a <= delta
    loss = np.where(small, 0.5 * r * r, delta * (a - 0.5 * delta))
    grad = np.where(small, r, delta * np.sign(r))
    return loss, grad


def _objective(
    p: np.ndarray, x: np.ndarray, y: np.ndarray, logL: np.ndarray, w: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """p = (e, a, alpha, b, beta) with E = exp(e), term_N = exp(a - alpha x), term_D = exp(b - beta
    y)."""
    e, a, alpha, b, beta = p
    tE, tN, tD = np.exp(e), np.exp(a - alpha * x), np.exp(b - beta * y)
    P = tE + tN + tD
    r = np.log(P) - logL
    loss, g = _huber(r, delta)
    gw = w * g / P
    grad = np.array(
        [
            np.sum(gw * tE),
            np.sum(gw * tN),
            -np.sum(gw * tN * x),
            np.sum(gw * tD),
            -np.sum(gw * tD * y),
        ]
    )
    return float(np.sum(w * loss)), grad


def _grid(logL_min: float) -> np.ndarray:
    """Starting points [G, 5] in normalised coordinates."""
    es = logL_min + np.log([0.05, 0.3, 0.7])
    ab = logL_min + np.array([-4.0, -2.0, -0.5])
    exps = np.array([0.1, 0.3, 0.6, 1.0, 1.5])
    g = np.stack(np.meshgrid(es, ab, exps, ab, exps, indexing="ij"), axis=-1)
    return g.reshape(-1, 5)


def _grid_values(grid: np.ndarray, x, y, logL, w, delta) -> np.ndarray:
    P = (
        np.exp(grid[:, :1])
        + np.exp(grid[:, 1:2] - grid[:, 2:3] * x)
        + np.exp(grid[:, 3:4] - grid[:, 4:5] * y)
    )
    loss, _ = _huber(np.log(P) - logL, delta)
    return (loss * w).sum(axis=1)


@dataclasses.dataclass(frozen=True)
class _Scale:
    N0: float
    D0: float


def _fit_normalised(x, y, logL, w, delta: float, starts: np.ndarray, top: int) -> np.ndarray:
    bounds = [
        (float(logL.min()) - 30, float(logL.min())),
        (-30, 30),
        (1e-3, 4.0),
        (-30, 30),
        (1e-3, 4.0),
    ]
    values = _grid_values(starts, x, y, logL, w, delta)
    best = None
    for i in np.argsort(values)[:top]:
        p0 = np.clip(starts[i], [b[0] for b in bounds], [b[1] for b in bounds])
        res = optimize.minimize(
            _objective,
            p0,
            args=(x, y, logL, w, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-10},
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None, "no starting point"
    return best.x


def _to_law(p: np.ndarray, scale: _Scale) -> JointLaw:
    e, a, alpha, b, beta = (float(v) for v in p)
    return JointLaw(
        E=math.exp(e),
        A=math.exp(a) * scale.N0**alpha,
        alpha=alpha,
        B=math.exp(b) * scale.D0**beta,
        beta=beta,
    )


def _to_params(law: JointLaw, scale: _Scale) -> np.ndarray:
    return np.array(
        [
            math.log(max(law.E, 1e-300)),
            math.log(law.A) - law.alpha * math.log(scale.N0),
            law.alpha,
            math.log(law.B) - law.beta * math.log(scale.D0),
            law.beta,
        ]
    )


def check_points(N, D, L, what: str = "the joint fit") -> None:
    """Raise ResultsError unless there are enough distinct (N, D) points for 5 parameters."""
    N, D, L = (np.asarray(v, float) for v in (N, D, L))
    if not (len(N) == len(D) == len(L)):
        raise ResultsError(
            f"{what}: N, D and L have different lengths ({len(N)}, {len(D)}, {len(L)})"
        )
    bad = ~np.isfinite(N * D * L) | (N <= 0) | (D <= 0) | (L <= 0)
    if bad.any():
        raise ResultsError(
            f"{what}: {int(bad.sum())} points with a non-positive or missing N, D or loss"
        )
    pairs = len(set(zip(N.tolist(), D.tolist())))
    if pairs < N_PARAMS + 1:
        raise ResultsError(
            f"{what} of L(N, D) = E + A/N^alpha + B/D^beta needs more distinct (N, D) "
            f"points than its {N_PARAMS} parameters; got {pairs} (add sizes, or decay "
            f"branches for more data points per size)"
        )
    if len(np.unique(N)) < 2 or len(np.unique(D)) < 2:
        raise ResultsError(
            f"{what}: needs at least 2 distinct model sizes and 2 distinct data "
            f"amounts; got {len(np.unique(N))} sizes and {len(np.unique(D))} data amounts"
        )


def fit_joint(
    N, D, L, weights=None, delta: float = 1e-3, start: JointLaw | None = None, top: int = 8
) -> JointLaw:
    """Fit the joint law to points N [n] (params), D [n] (tokens or images), L [n] (loss).

    weights: optional [n] multiplicities (the bootstrap's counts). start: a solution tried
    first (the bootstrap passes the full fit) besides the `top` best starts of the grid.
    """
    N, D, L = (np.asarray(v, float) for v in (N, D, L))
    check_points(N, D, L)
    w = np.ones_like(L) if weights is None else np.asarray(weights, float)
    scale = _Scale(float(np.exp(np.mean(np.log(N)))), float(np.exp(np.mean(np.log(D)))))
    x, y, logL = np.log(N / scale.N0), np.log(D / scale.D0), np.log(L)
    starts = _grid(float(logL.min()))
    if start is not None:
        starts = np.vstack([_to_params(start, scale), starts])
    return _to_law(_fit_normalised(x, y, logL, w, delta, starts, top), scale)


# ----------------------------------------------------------------------------- compute


@dataclasses.dataclass(frozen=True)
class ComputeModel:
    """Training compute C = k N^gamma D in FLOPs (N params, D in the law's data unit),
    fitted on the runs' exact counts; `max_rel_error` is its worst error on them."""

    k: float
    gamma: float
    max_rel_error: float = 0.0

    def flops(self, N, D) -> np.ndarray:
        return self.k * np.asarray(N, float) ** self.gamma * np.asarray(D, float)

    @classmethod
    def fit(cls, N, D, C) -> ComputeModel:
        """Least squares of log(C / D) = log k + gamma log N over the points."""
        N, D, C = (np.asarray(v, float) for v in (N, D, C))
        ln, lc = np.log(N), np.log(C / D)
        if np.ptp(ln) == 0:
            raise ResultsError("the compute model needs at least 2 model sizes")
        gamma, logk = np.polyfit(ln, lc, 1)
        model = cls(float(np.exp(logk)), float(gamma))
        err = float(np.max(np.abs(model.flops(N, D) / C - 1)))
        return dataclasses.replace(model, max_rel_error=err)


def optimal(law: JointLaw, cm: ComputeModel, C) -> tuple[np.ndarray, np.ndarray]:
    """(N*, D*) minimising law.predict(N, D) subject to cm.flops(N, D) = C; C: array [m] FLOPs.

    Setting dL/dN = 0 along D = C / (k N^gamma):
    alpha A N^-alpha = gamma beta B (k N^gamma / C)^beta.
    """
    C = np.asarray(C, float)
    a, b, g = law.alpha, law.beta, cm.gamma
    logN = (math.log(a * law.A) - math.log(g * b * law.B) - b * math.log(cm.k) + b * np.log(C)) / (
        a + g * b
    )
    N = np.exp(logN)
    return N, C / (cm.k * N**g)


def exponents(law: JointLaw, cm: ComputeModel) -> tuple[float, float]:
    """(a_N, a_D): N* ~ C^a_N and D* ~ C^a_D."""
    s = law.alpha + cm.gamma * law.beta
    return law.beta / s, law.alpha / s


# ----------------------------------------------------------------------------- results


def interval(
    samples: np.ndarray, n_units: int, level: float, n_params: int = N_PARAMS
) -> tuple[float, float] | None:
    """Percentile interval of `samples` [B], Hesterberg-expanded for `n_units` resampled units
    and an `n_params`-parameter fit (t with n - n_params degrees of freedom)."""
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    if len(samples) < 2:
        return None
    tail = (1 - level) / 2
    dof = max(n_units - n_params, 1)
    t = stats.t.ppf(1 - tail, dof)
    tail = float(stats.norm.cdf(-math.sqrt(n_units / max(n_units - 1, 1)) * t))
    lo, hi = np.quantile(samples, [tail, 1 - tail])
    return float(lo), float(hi)


@dataclasses.dataclass
class JointFit:
    """A fitted joint law with its points, bootstrap, hold-out and compute model."""

    metric: str
    d_unit: str
    law: JointLaw
    points: pd.DataFrame  # run, N, D, C, L, predicted
    compute: ComputeModel
    level: float = 0.95
    delta: float = 1e-3
    samples: list[JointLaw] = dataclasses.field(default_factory=list)
    bootstrap: int = 0
    holdout: dict[str, Any] | None = None

    def ci(self, name: str) -> tuple[float, float] | None:
        """Interval of a law parameter (E, A, alpha, B, beta) or exponent (a_N, a_D)."""
        if not self.samples:
            return None
        if name in ("a_N", "a_D"):
            vals = [exponents(s, self.compute)[0 if name == "a_N" else 1] for s in self.samples]
        else:
            vals = [getattr(s, name) for s in self.samples]
        return interval(np.array(vals), len(self.points), self.level)

    def optimal(self, C) -> dict[str, Any]:
        """N*, D* at compute C [m] with their intervals (None without a bootstrap)."""
        C = np.atleast_1d(np.asarray(C, float))
        N, D = optimal(self.law, self.compute, C)
        out: dict[str, Any] = {
            "C": C.tolist(),
            "N": N.tolist(),
            "D": D.tolist(),
            "N_ci": None,
            "D_ci": None,
        }
        if self.samples:
            sn, sd = zip(*(optimal(s, self.compute, C) for s in self.samples))
            sn, sd = np.array(sn), np.array(sd)
            out["N_ci"] = [interval(sn[:, j], len(self.points), self.level) for j in range(len(C))]
            out["D_ci"] = [interval(sd[:, j], len(self.points), self.level) for j in range(len(C))]
        return out

    def to_dict(self, budgets: Sequence[float] = ()) -> dict[str, Any]:
        """JSON-able record (docs/fitting.md, "The joint law")."""
        aN, aD = exponents(self.law, self.compute)
        p = self.points
        return {
            "metric": self.metric,
            "form": "L = E + A / N^alpha + B / D^beta",
            "N_unit": "parameters",
            "D_unit": f"training {self.d_unit}",
            **self.law.as_dict(),
            **{f"{k}_ci": self.ci(k) for k in ("E", "A", "alpha", "B", "beta")},
            "loss": f"Huber (delta {self.delta:g}) on log residuals; "
            "L-BFGS-B from a grid of starts",
            "n_points": int(len(p)),
            "n_sizes": int(p["N"].nunique()),
            "rms_log_residual": float(np.sqrt(np.mean(np.log(p["predicted"] / p["L"]) ** 2))),
            "ci": {
                "level": self.level,
                "bootstrap_samples": self.bootstrap,
                "bootstrap_valid": len(self.samples),
                "resampling": "families (a run and its decay branches, which share its "
                "seed's noise, drawn together)",
            },
            "compute_model": {
                "form": f"C = k N^gamma D ({self.d_unit}), exact FLOPs (3 x forward)",
                "k": self.compute.k,
                "gamma": self.compute.gamma,
                "max_rel_error_on_runs": self.compute.max_rel_error,
            },
            "optimal": {
                "N_exponent": aN,
                "N_exponent_ci": self.ci("a_N"),
                "D_exponent": aD,
                "D_exponent_ci": self.ci("a_D"),
                "budgets": self.optimal(list(budgets)) if len(budgets) else None,
            },
            "holdout": self.holdout,
            "points": [
                {
                    "run": str(r.run),
                    "N": float(r.N),
                    "D": float(r.D),
                    "C": float(r.C),
                    "L": float(r.L),
                    "predicted": float(r.predicted),
                }
                for r in p.itertuples()
            ],
        }


def joint_points(table: pd.DataFrame, metric: str, d_unit: str = "tokens") -> pd.DataFrame:
    """The annealed final point of every run: run, N (params), D (`d_unit`), C (compute), L."""
    if d_unit not in D_UNITS:
        raise ResultsError(f"data unit must be one of {', '.join(D_UNITS)}; got {d_unit!r}")
    if d_unit not in table.columns:
        raise ResultsError(
            f"column {d_unit!r} missing: the joint law needs the training data of "
            f"each run in {d_unit}"
        )
    final = final_rows(table)
    runs = final["run"].astype(str).to_numpy()
    return pd.DataFrame(
        {
            "run": runs,
            "N": final["params"].to_numpy(float),
            "D": final[d_unit].to_numpy(float),
            "C": final["compute"].to_numpy(float),
            "L": final[metric].to_numpy(float),
            "family": families(final, runs),
        }
    )


def families(final: pd.DataFrame, runs) -> np.ndarray:
    """The seed family of each run [n]: a decay branch belongs to its parent's family (config
    key branch.parent, a sibling folder name or a path: its last part), every other run is its
    own; a `family` column of a table is used as it is."""
    if "family" in final.columns:
        return final["family"].astype(str).to_numpy()
    if "branch.parent" not in final.columns:
        return np.asarray(runs, dtype=str)
    parent = final["branch.parent"].to_numpy(object)
    return np.array(
        [
            str(p).replace("\\", "/").rstrip("/").split("/")[-1] if isinstance(p, str) and p else r
            for p, r in zip(parent, runs, strict=True)
        ]
    )


def fit_joint_table(
    table: pd.DataFrame,
    metric: str = "ce_avg",
    d_unit: str = "tokens",
    bootstrap: int = 200,
    level: float = 0.95,
    seed: int = 0,
    holdout: bool = True,
    delta: float = 1e-3,
) -> JointFit:
    """Fit the joint law on a prepared tidy table's final evaluations (`results.prepare`)."""
    pts = joint_points(table, metric, d_unit)
    check_points(pts["N"], pts["D"], pts["L"], f"the joint fit of {metric}")
    law = fit_joint(pts["N"], pts["D"], pts["L"], delta=delta)
    pts["predicted"] = law.predict(pts["N"], pts["D"])
    cm = ComputeModel.fit(pts["N"], pts["D"], pts["C"])
    fit = JointFit(metric, d_unit, law, pts, cm, level=level, delta=delta, bootstrap=bootstrap)
    if bootstrap > 0:
        fit.samples = bootstrap_laws(
            pts["N"], pts["D"], pts["L"], law, bootstrap, seed, delta, family=pts["family"]
        )
    if holdout:
        fit.holdout = holdout_largest(pts, delta)
    return fit


def family_counts(family, draws: int, rng: np.random.Generator) -> np.ndarray:
    """[draws, n] how often each of n points is in each bootstrap draw, when the F families
    of `family` [n] (labels) are drawn F times with replacement and a family brings all its
    points."""
    ids = np.unique(np.asarray(family), return_inverse=True)[1].reshape(-1)
    F = int(ids.max()) + 1
    drawn = np.stack([np.bincount(rng.integers(0, F, F), minlength=F) for _ in range(draws)])
    return drawn[:, ids].astype(float)


def bootstrap_laws(
    N, D, L, start: JointLaw, draws: int, seed: int, delta: float = 1e-3, family=None
) -> list[JointLaw]:
    """Refits on `draws` resamples (with replacement) of the families: `family` [n] labels
    the points that share one seed's noise (a parent run and its decay branches), which are
    drawn together; None: every point its own family. Draws with too few distinct (N, D)
    points are skipped."""
    N, D, L = (np.asarray(v, float) for v in (N, D, L))
    rng = np.random.default_rng(seed)
    out = []
    for counts in family_counts(np.arange(len(L)) if family is None else family, draws, rng):
        keep = counts > 0
        try:
            out.append(
                fit_joint(N[keep], D[keep], L[keep], counts[keep], delta, start=start, top=1)
            )
        except ResultsError:
            continue
    return out


def holdout_largest(pts: pd.DataFrame, delta: float = 1e-3) -> dict[str, Any] | None:
    """Refit without the largest model's points and predict them (None if too few are left)."""
    largest = pts["N"].max()
    rest, held = pts[pts["N"] < largest], pts[pts["N"] == largest]
    try:
        law = fit_joint(rest["N"], rest["D"], rest["L"], delta=delta)
    except ResultsError as e:
        return {"skipped": str(e)}
    pred = law.predict(held["N"], held["D"])
    rel = pred / held["L"].to_numpy() - 1
    return {
        "held_out_N": float(largest),
        "law": law.as_dict(),
        "points": [
            {"run": r, "D": float(d), "L": float(y), "predicted": float(p), "rel_error": float(e)}
            for r, d, y, p, e in zip(held["run"], held["D"], held["L"], pred, rel)
        ],
        "max_abs_rel_error": float(np.max(np.abs(rel))),
    }
