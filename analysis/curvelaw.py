"""Whole-curve forecasts: loss curves as a function of the learning-rate schedule.

A run's loss after t optimizer steps is modelled from the learning rate it trained with
(``lr``: one value per optimizer step, step 0 first; it reaches this module as data, computed
by the trainer's own schedule code from the run's config). Three laws, all of the form

    L(t) = L0_r + A_r * x(t) - c * z(t)

with two parameters per run (L0_r, A_r: the run's floor and scale, linear) and the rest
shared by the study's runs (the exponent, the annealing coefficient c and the shape of the
annealing term). S1(t) = sum of lr/lr_ref over the first t steps (lr_ref: the study's largest
lr, so S1 counts "steps at the peak"), d_k = max(lr_{k-1} - lr_k, 0) / lr_ref (only decreases
count: a warm-up is not an annealing):

- ``lra``: the lr-annealing law of Tissue et al. 2024 ("Scaling Law with Learning Rate
  Annealing"): x = S1^-alpha, z = S2 = sum_{i<t} m_i, m_i = lam * m_{i-1} + d_i (the
  annealing area with momentum lam). Shared: alpha, lam, c.
- ``mpl``: the multi-power law of Luo et al. 2025 ("A Multi-Power Law for Loss Curve
  Prediction Across Learning Rate Schedules"): x = S1^-alpha,
  z = sum_{k<t} d_k * (1 - (C * eta_k^-gamma * S_k(t) + 1)^-beta), S_k(t) = sum_{k<=j<t} eta_j
  (eta = lr/lr_ref). Shared: alpha, C, beta, gamma, c (their B).
- ``const``: the schedule-blind baseline: x = t^-alpha, z = 0 (a power law in steps).

A study fit (`fit_curves`) solves the linear parameters by bounded least squares inside a
search over the shared ones (variable projection). A forecast (`forecast`) takes the shared
parameters of the study's finished runs, fits the target run's L0 and A on its first
evaluations and evaluates the law at the target step of the target schedule (its own, or a
decay branch's). Its interval adds the uncertainty of the run's two parameters (the study's
residual scale, least-squares covariance) to that of the shared parameters (jackknife over the
study's runs), with a Student-t quantile; `simulate_coverage` checks it on curves drawn from
the law with noise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import optimize, signal, stats

LawName = Literal["lra", "mpl", "const"]
LAWS: tuple[str, ...] = ("lra", "mpl", "const")
LAMS = (0.9, 0.95, 0.99, 0.995, 0.999)  # lra: the momentum lam is picked from these
# mpl's nonlinear shared parameters (log C, log beta, gamma) and where the search starts
_MPL_STARTS = ((math.log(2.0), math.log(0.5), 0.5), (math.log(0.1), math.log(1.0), 0.5))


class CurveLawError(ValueError):
    """Curves that cannot be fitted or forecast as asked (the message says why)."""


@dataclasses.dataclass(frozen=True)
class Curve:
    """One run's evaluations and its learning rate.

    run: the run's name. lr: (T,) learning rate at optimizer steps 0..T-1 (the whole schedule,
    future steps included for a run still training). steps: (n,) evaluation steps, each the
    number of steps trained ("after t steps", 1 <= t <= T), increasing. loss: (n,) the metric
    at those steps. family: the runs that share one trajectory up to where they fork (a decay
    branch names its parent, the parent itself): a law gives them one (L0, A), so a branch's
    few evaluations after its cool-down inform the annealing term instead of adding two
    parameters of their own. None: the run alone.
    """

    run: str
    lr: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    family: str | None = None

    def __post_init__(self):
        lr = np.asarray(self.lr, float)
        steps = np.asarray(self.steps, int)
        loss = np.asarray(self.loss, float)
        object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "loss", loss)
        if lr.ndim != 1 or lr.size == 0 or not np.all(np.isfinite(lr)) or np.any(lr < 0):
            raise CurveLawError(f"{self.run}: lr must be a non-empty 1-d array of values >= 0")
        if steps.shape != loss.shape or steps.ndim != 1:
            raise CurveLawError(f"{self.run}: steps and loss must be 1-d arrays of one length")
        if steps.size and (steps.min() < 1 or steps.max() > lr.size or np.any(np.diff(steps) <= 0)):
            raise CurveLawError(
                f"{self.run}: evaluation steps must increase within 1..{lr.size} (the schedule's "
                f"length); got {steps.min()}..{steps.max()}"
            )
        if not np.all(np.isfinite(loss)):
            raise CurveLawError(f"{self.run}: non-finite loss values")

    @property
    def key(self) -> str:
        """The name its (L0, A) go by: its family, else the run."""
        return self.family or self.run

    def until(self, step: int) -> Curve:
        """The same run with only its evaluations at steps <= `step` (a prefix)."""
        keep = self.steps <= step
        return Curve(self.run, self.lr, self.steps[keep], self.loss[keep], self.family)


@dataclasses.dataclass(frozen=True)
class CurveFit:
    """A study fit: the shared parameters, each run's (L0, A), the residual scale.

    law: lra | mpl | const. shared: the nonlinear shared parameters (lra: alpha, lam; mpl:
    alpha, C, beta, gamma; const: alpha) and c, the annealing coefficient. lr_ref: the lr that
    S1 counts in. runs: run -> (L0, A), each run of a family under its own name and the
    family's. sigma: residual standard deviation (loss units) with
    dof = points - parameters. n_points, n_params: what it was fitted on.
    """

    law: str
    shared: dict[str, float]
    lr_ref: float
    runs: dict[str, tuple[float, float]]
    sigma: float
    n_points: int
    n_params: int
    rss: float

    @property
    def dof(self) -> int:
        """Residual degrees of freedom."""
        return max(self.n_points - self.n_params, 1)

    def predict(self, run: str, lr: np.ndarray, steps: Sequence[int]) -> np.ndarray:
        """The fitted run's loss after each of `steps` on schedule `lr`, shape (len(steps),)."""
        L0, A = self.runs[run]
        x, z = features(self.law, self.shared, np.asarray(lr, float) / self.lr_ref, steps)
        return L0 + A * x - self.shared["c"] * z

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON) for reports and the forecast registry."""
        return {
            "law": self.law,
            "shared": {k: float(v) for k, v in self.shared.items()},
            "lr_ref": self.lr_ref,
            "runs": {r: {"L0": v[0], "A": v[1]} for r, v in self.runs.items()},
            "sigma": self.sigma,
            "n_points": self.n_points,
            "n_params": self.n_params,
        }


@dataclasses.dataclass(frozen=True)
class Forecast:
    """A forecast of one run's metric after `step` steps.

    value, lo, hi: point and `level` interval; sd: its standard deviation (the run's own
    parameters and the shared ones, added in quadrature); df: the t quantile's degrees of
    freedom (Welch-Satterthwaite over the two parts). n_prefix / prefix_step: the
    evaluations the run's L0 and A were fitted on.
    n_study: families of finished runs that gave the shared parameters (a decay branch and
    its parent count once; jackknifed when >= 2).
    """

    value: float
    lo: float
    hi: float
    sd: float
    df: float
    level: float
    law: str
    step: int
    n_prefix: int
    prefix_step: int
    n_study: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- features


def _areas(eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cs, d): cs[t] = sum(eta[:t]) (length T+1); d[k] = max(eta[k-1] - eta[k], 0), d[0] = 0."""
    cs = np.concatenate([[0.0], np.cumsum(eta)])
    d = np.concatenate([[0.0], np.maximum(eta[:-1] - eta[1:], 0.0)])
    return cs, d


def features(
    law: str, shared: dict[str, float], eta: np.ndarray, steps: Sequence[int] | np.ndarray
):
    """The law's x(t) and z(t) after each of `steps` on schedule `eta` (lr / lr_ref, (T,)).

    Returns two arrays of shape (len(steps),)."""
    t = np.asarray(steps, int)
    alpha = shared["alpha"]
    if law == "const":
        return t.astype(float) ** -alpha, np.zeros(t.size)
    cs, d = _areas(eta)
    S1 = np.maximum(cs[t], 1e-12)
    x = S1**-alpha
    if law == "lra":
        m = signal.lfilter([1.0], [1.0, -shared["lam"]], d)
        S2 = np.concatenate([[0.0], np.cumsum(m)])
        return x, S2[t]
    if law == "mpl":
        k = np.flatnonzero(d > 0)  # the steps where the lr went down
        if k.size == 0:
            return x, np.zeros(t.size)
        C, beta, gamma = shared["C"], shared["beta"], shared["gamma"]
        Sk = cs[t][:, None] - cs[k][None, :]  # (n, K): lr area from step k to t
        scale = np.maximum(eta[k], 1e-12) ** -gamma
        G = 1.0 - (C * scale[None, :] * np.maximum(Sk, 0.0) + 1.0) ** -beta
        G[Sk <= 0] = 0.0  # a decrease after t has not happened yet
        return x, G @ d[k]
    raise CurveLawError(f"unknown curve law {law!r}; one of {', '.join(LAWS)}")


# ----------------------------------------------------------------------------- fitting


def _lsq(
    rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]], n_runs: int, c: float | None
) -> tuple[np.ndarray, float]:
    """Bounded least squares of the linear parameters: per run (L0, A >= 0), then c >= 0
    (unless given). rows: (run index, x, z, y). Returns (parameters, rss)."""
    n = sum(r[1].size for r in rows)
    ncol = 2 * n_runs + (1 if c is None else 0)
    M = np.zeros((n, ncol))
    Y = np.zeros(n)
    i = 0
    for j, x, z, y in rows:
        s = slice(i, i + x.size)
        M[s, 2 * j] = 1.0
        M[s, 2 * j + 1] = x
        if c is None:
            M[s, -1] = -z
            Y[s] = y
        else:
            Y[s] = y + c * z
        i += x.size
    # scale the columns: S1^-alpha can be ~1e-3, z ~1e3
    norm = np.maximum(np.abs(M).max(axis=0), 1e-300)
    lo = np.zeros(ncol)
    lo[0 : 2 * n_runs : 2] = -np.inf  # L0 free
    res = optimize.lsq_linear(M / norm, Y, bounds=(lo, np.full(ncol, np.inf)), method="bvls")
    p = res.x / norm
    return p, float(np.sum((M @ p - Y) ** 2))


def _shared_from(law: str, q: np.ndarray, lam: float | None) -> dict[str, float]:
    if law == "lra":
        if lam is None:
            raise ValueError("the lra law needs its lam")
        return {"alpha": float(q[0]), "lam": float(lam)}
    if law == "mpl":
        return {
            "alpha": float(q[0]),
            "C": math.exp(q[1]),
            "beta": math.exp(q[2]),
            "gamma": float(q[3]),
        }
    return {"alpha": float(q[0])}


def fit_curves(
    curves: Sequence[Curve],
    law: str = "lra",
    lr_ref: float | None = None,
    start: dict[str, float] | None = None,
) -> CurveFit:
    """Fit `law` to the study's `curves` (each with >= 3 evaluations): shared parameters by
    search (alpha in [0.02, 3]; lra: lam from `LAMS`; mpl: C, beta, gamma by Nelder-Mead from
    a few starts, or from `start`), per-run L0 and A and the annealing coefficient c by bounded
    least squares; the runs of one family (`Curve.family`) share one (L0, A). Raises
    CurveLawError when there is too little to fit."""
    if law not in LAWS:
        raise CurveLawError(f"unknown curve law {law!r}; one of {', '.join(LAWS)}")
    curves = [c for c in curves if c.steps.size]
    if not curves:
        raise CurveLawError("no curves with evaluations to fit")
    lr_ref = float(lr_ref or max(float(c.lr.max()) for c in curves))
    if not lr_ref > 0:
        raise CurveLawError("every learning rate is 0")
    etas = [c.lr / lr_ref for c in curves]
    n_pts = sum(c.steps.size for c in curves)
    has_c = law != "const"
    n_nonlin = {"lra": 2, "mpl": 4, "const": 1}[law]
    keys = list(dict.fromkeys(c.key for c in curves))  # families, in order
    col = {k: j for j, k in enumerate(keys)}
    n_params = 2 * len(keys) + n_nonlin + (1 if has_c else 0)
    if n_pts <= n_params:
        raise CurveLawError(
            f"{n_pts} evaluations in {len(curves)} curves ({len(keys)} families) cannot fit "
            f"the {law} law's {n_params} parameters"
        )

    def solve(shared: dict[str, float]) -> tuple[np.ndarray, float]:
        rows = []
        for cv, eta in zip(curves, etas, strict=True):
            x, z = features(law, shared, eta, cv.steps)
            rows.append((col[cv.key], x, z, cv.loss))
        return _lsq(rows, len(keys), None if has_c else 0.0)

    def alpha_search(make) -> tuple[float, float]:
        """Best alpha for shared parameters `make(alpha)`: a coarse grid, then Brent."""
        grid = np.geomspace(0.02, 3.0, 16)
        vals = [solve(make(a))[1] for a in grid]
        i = int(np.argmin(vals))
        lo_, hi_ = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        r = optimize.minimize_scalar(
            lambda la: solve(make(math.exp(la)))[1],
            bounds=(math.log(lo_), math.log(hi_)),
            method="bounded",
            options={"xatol": 1e-4},
        )
        return (math.exp(r.x), r.fun) if r.fun < vals[i] else (float(grid[i]), vals[i])

    if law == "lra":
        lams = (start["lam"],) if start else LAMS
        best = min(
            (alpha_search(lambda a, lam=lam: {"alpha": a, "lam": lam}) + (lam,) for lam in lams),
            key=lambda r: r[1],
        )
        shared = {"alpha": best[0], "lam": best[2]}
    elif law == "const":
        a, _ = alpha_search(lambda a: {"alpha": a})
        shared = {"alpha": a}
    else:
        starts = (
            [(start["alpha"], math.log(start["C"]), math.log(start["beta"]), start["gamma"])]
            if start
            else [(0.5, *s) for s in _MPL_STARTS]
        )

        def obj(q: np.ndarray) -> float:
            if not 0.02 <= q[0] <= 3.0 or abs(q[1]) > 12 or abs(q[2]) > 5 or not 0 <= q[3] <= 2:
                return 1e30
            return solve(_shared_from("mpl", q, None))[1]

        best_q, best_v = None, math.inf
        for s in starts:
            r = optimize.minimize(
                obj,
                np.array(s, float),
                method="Nelder-Mead",
                options={"xatol": 1e-4, "fatol": 1e-12, "maxiter": 600},
            )
            if r.fun < best_v:
                best_q, best_v = r.x, r.fun
        assert best_q is not None, "no start converged to a finite objective"
        shared = _shared_from("mpl", best_q, None)
    p, rss = solve(shared)
    shared["c"] = float(p[-1]) if has_c else 0.0
    runs = {k: (float(p[2 * j]), float(p[2 * j + 1])) for j, k in enumerate(keys)}
    runs.update({cv.run: runs[cv.key] for cv in curves})
    sigma = math.sqrt(rss / max(n_pts - n_params, 1))
    return CurveFit(law, shared, lr_ref, runs, sigma, n_pts, n_params, rss)


# ----------------------------------------------------------------------------- forecasting


def _run_fit(fit: CurveFit, prefix: Curve) -> tuple[np.ndarray, np.ndarray]:
    """(L0, A) of `prefix` given the study's shared parameters, and (X^T X)^-1 of its design."""
    x, z = features(fit.law, fit.shared, prefix.lr / fit.lr_ref, prefix.steps)
    X = np.column_stack([np.ones(x.size), x])
    y = prefix.loss + fit.shared["c"] * z
    scale = np.array([1.0, max(float(np.abs(x).max()), 1e-300)])
    res = optimize.lsq_linear(
        X / scale, y, bounds=([-np.inf, 0.0], [np.inf, np.inf]), method="bvls"
    )
    beta = res.x / scale
    XtX_inv = np.linalg.pinv(X.T @ X)
    return beta, XtX_inv


def _row(fit: CurveFit, lr: np.ndarray, step: int) -> tuple[np.ndarray, float]:
    x, z = features(fit.law, fit.shared, lr / fit.lr_ref, [step])
    return np.array([1.0, x[0]]), float(fit.shared["c"] * z[0])


def _point(fit: CurveFit, prefix: Curve, targets: Sequence[tuple[np.ndarray, int, float]]):
    """Σ_i w_i * L(target_i) and its design row, for a fitted study and a run's prefix.
    targets: (lr schedule, step, weight) (one target with weight 1: the loss; two with weights
    1 and -1: a difference, e.g. a cool-down's gain)."""
    beta, XtX_inv = _run_fit(fit, prefix)
    row, off = np.zeros(2), 0.0
    for lr, step, w in targets:
        r, o = _row(fit, lr, step)
        row += w * r
        off += w * o
    return float(row @ beta - off), row, XtX_inv


def forecast(
    study: Sequence[Curve],
    prefix: Curve,
    targets: Sequence[tuple[np.ndarray, int, float]] | None = None,
    law: str = "lra",
    level: float = 0.95,
    fit: CurveFit | None = None,
    jackknife: bool = True,
    cache: dict | None = None,
) -> Forecast:
    """Forecast a run from its first evaluations.

    study: finished runs' curves that give the shared parameters (`fit_curves`; or pass
    their `fit`); those of the prefix's own run or family are left out (they hold its
    future). prefix: the target run's
    evaluations so far (>= 2; its lr the schedule they were trained on). targets: what to
    predict, as (lr schedule (T,), step, weight) terms summed (default: the prefix run's own
    schedule at its last step, weight 1). Interval: a `level` prediction interval for the value
    that will be observed; sd^2 = sigma^2 * (row^T (X^T X)^-1 row + sum of weights^2) (the
    run's L0 and A, and the evaluation noise of the observed values) + the jackknife
    variance of the point over the study's runs (the shared parameters; when `jackknife` and
    >= 2 study families; one family left out at a time: a branch and its parent are not
    independent). cache: a dict the caller keeps across forecasts made from the same curves
    (several targets of one run, the runs of one size): study fits are reused from it, keyed
    by the law and the names of the runs fitted. Raises CurveLawError."""
    if prefix.steps.size < 2:
        raise CurveLawError(
            f"{prefix.run}: {prefix.steps.size} evaluation(s) so far; a forecast needs >= 2"
        )
    if targets is None:
        targets = [(prefix.lr, int(prefix.lr.size), 1.0)]
    study = [c for c in study if c.run != prefix.run and c.key != prefix.key]

    def fitted(curves: list[Curve], law: str, lr_ref=None, start=None) -> CurveFit:
        if cache is None:
            return fit_curves(curves, law, lr_ref=lr_ref, start=start)
        key = (
            law,
            tuple(c.run for c in curves),
            lr_ref,
            tuple(sorted(start.items())) if start else None,
        )
        if key not in cache:
            try:
                cache[key] = fit_curves(curves, law, lr_ref=lr_ref, start=start)
            except CurveLawError as e:
                cache[key] = e
        if isinstance(cache[key], CurveLawError):
            raise cache[key]
        return cache[key]

    if fit is None:
        fit = fitted(study, law)
    value, row, XtX_inv = _point(fit, prefix, targets)
    # the run's L0 and A, and the evaluation noise of the observed value(s) it predicts
    v_run = fit.sigma**2 * (float(row @ XtX_inv @ row) + sum(w * w for _, _, w in targets))
    v_shared, df_shared = 0.0, 1
    families = list(dict.fromkeys(c.key for c in study))
    n = len(families)
    if jackknife and n >= 2:
        # lra refits everything (lam's choice is part of the uncertainty); mpl's costly search
        # starts from the full fit
        start = {k: v for k, v in fit.shared.items() if k != "c"} if fit.law == "mpl" else None
        pts = []
        for left_out in families:
            rest = [c for c in study if c.key != left_out]
            try:
                sub = fitted(rest, fit.law, lr_ref=fit.lr_ref, start=start)
            except CurveLawError:
                continue
            pts.append(_point(sub, prefix, targets)[0])
        if len(pts) >= 2:
            pts_a = np.asarray(pts)
            v_shared = (len(pts) - 1) / len(pts) * float(np.sum((pts_a - pts_a.mean()) ** 2))
            df_shared = len(pts) - 1
    var = v_run + v_shared
    sd = math.sqrt(max(var, 0.0))
    # Welch-Satterthwaite: the jackknife over a handful of runs has few degrees of freedom
    df = var**2 / (v_run**2 / fit.dof + v_shared**2 / df_shared) if var > 0 else float(fit.dof)
    q = float(stats.t.ppf(0.5 + level / 2, df))
    return Forecast(
        value=value,
        lo=value - q * sd,
        hi=value + q * sd,
        sd=sd,
        df=round(df, 1),
        level=level,
        law=fit.law,
        step=int(targets[0][1]),
        n_prefix=int(prefix.steps.size),
        prefix_step=int(prefix.steps[-1]),
        n_study=n,
    )


def prefix_step(curve: Curve, frac: float) -> int:
    """The step that ends the first `frac` of the run's schedule (rounded)."""
    return max(1, round(frac * curve.lr.size))


def backtest_curves(
    curves: Sequence[Curve],
    law: str = "lra",
    frac: float = 0.25,
    level: float = 0.95,
    study: Sequence[Curve] | None = None,
) -> list[dict[str, Any]]:
    """Each run's final loss forecast from its first `frac` of steps, the shared parameters
    from the other runs of `study` (default: `curves`; the run's own family left out). One
    dict per run: run, observed, predicted, lo, hi, rel_error (predicted / observed - 1),
    inside, n_prefix; runs with < 2 evaluations in their prefix are skipped."""
    out = []
    cache: dict = {}  # leave-two-out fits of the jackknife are shared by pairs of targets
    for cv in curves:
        pre = cv.until(prefix_step(cv, frac))
        if pre.steps.size < 2 or cv.steps[-1] != cv.lr.size:
            continue
        others = [c for c in (curves if study is None else study) if c.key != cv.key]
        f = forecast(
            others, pre, [(cv.lr, int(cv.lr.size), 1.0)], law=law, level=level, cache=cache
        )
        obs = float(cv.loss[-1])
        out.append(
            {
                "run": cv.run,
                "observed": obs,
                "predicted": f.value,
                "lo": f.lo,
                "hi": f.hi,
                "rel_error": f.value / obs - 1,
                "inside": bool(f.lo <= obs <= f.hi),
                "n_prefix": f.n_prefix,
                "prefix_step": f.prefix_step,
                "steps": int(cv.lr.size),
            }
        )
    return out


# ----------------------------------------------------------------------------- simulation


def lin_schedule(T: int, warmup: int, peak: float = 1.0, final: float = 0.01) -> np.ndarray:
    """A test schedule, (T,): linear warm-up over `warmup` steps, then linear decay to
    `final` x peak (the shape of a warm-up + linear decay run; for simulations)."""
    lr = np.empty(T)
    w = max(warmup, 1)
    lr[:w] = peak * np.linspace(0.005, 1.0, w, endpoint=False)
    lr[w:] = peak * (1 + (final - 1) * np.linspace(0, 1, T - w))
    return lr


def simulate_study(
    law: str,
    shared: dict[str, float],
    runs: dict[str, tuple[float, float]],
    schedules: dict[str, np.ndarray],
    steps: Mapping[str, Sequence[int]],
    noise: float,
    rng: np.random.Generator,
) -> list[Curve]:
    """Curves drawn from a known law: each run's loss at its steps plus N(0, noise^2)."""
    lr_ref = max(float(s.max()) for s in schedules.values())
    truth = CurveFit(law, shared, lr_ref, runs, noise, 0, 0, 0.0)
    return [
        Curve(
            r,
            schedules[r],
            np.asarray(steps[r]),
            truth.predict(r, schedules[r], steps[r]) + rng.normal(0, noise, len(steps[r])),
        )
        for r in runs
    ]


def wsd_schedule(T: int, warmup: int, cooldown: float, peak: float = 1.0, final: float = 0.01):
    """A test schedule, (T,): linear warm-up, constant, then a 1-sqrt cool-down to `final` x
    peak over the last `cooldown` of the steps (for simulations)."""
    lr = np.full(T, peak)
    w = max(warmup, 1)
    lr[:w] = peak * np.linspace(0.005, 1.0, w, endpoint=False)
    n = max(1, round(cooldown * T))
    lr[T - n :] = peak * (final + (1 - final) * (1 - np.sqrt(np.linspace(0, 1, n))))
    return lr


def branch_schedule(parent: np.ndarray, fork: int, cooldown: float = 0.2, final: float = 0.01):
    """A decay branch's schedule, (Tb,): the parent's lr for its first `fork` steps, then a
    1-sqrt cool-down from the lr at the fork to `final` x that lr over the last `cooldown` of
    the branch's own length Tb = fork / (1 - cooldown) (for simulations)."""
    Tb = max(fork + 1, round(fork / (1 - cooldown)))
    peak = float(parent[fork - 1])
    n = Tb - fork
    tail = peak * (final + (1 - final) * (1 - np.sqrt(np.linspace(0, 1, n))))
    return np.concatenate([parent[:fork], tail])


_DRAWN = {
    "lra": {"alpha": 0.4, "lam": 0.99, "c": 2e-4},
    "mpl": {"alpha": 0.4, "C": 0.5, "beta": 0.6, "gamma": 0.5, "c": 0.3},
    "const": {"alpha": 0.4, "c": 0.0},
}


def simulate_coverage(
    n_studies: int = 20,
    law: str = "lra",
    frac: float = 0.25,
    level: float = 0.95,
    noise: float = 0.01,
    seed: int = 0,
    schedule: str = "lin",
    fit_law: str | None = None,
) -> dict[str, float]:
    """Coverage of `forecast`'s interval on studies drawn from `law` with known parameters
    and forecast with `fit_law` (default: the same law; another one checks a misspecified
    law): six runs of 400-1600 steps, eight log-spaced evaluations from 3%, Gaussian noise
    `noise`. schedule "lin": warm-up + linear decay, each run's final loss forecast from its
    first `frac`; "wsd": warm-up, constant, cool-down over the last 20%, each run's final loss
    (after the cool-down) forecast from its evaluations in the constant phase; "branches": the
    "wsd" runs, each with two decay branches forked at 25% and 50% of its steps
    (`branch_schedule`, evaluated once, at their end, sharing their parent's L0 and A), each
    branch's end forecast from its parent's evaluations in the constant phase. The shared
    parameters come from the other five runs (and their branches). Returns coverage, n, mean
    |rel. error|, and the mean half-width over the noise."""
    fit_law = fit_law or law
    rng = np.random.default_rng(seed)
    hits, n, errs, widths = 0, 0, [], []
    shared = _DRAWN[law]
    for _ in range(n_studies):
        runs, sched, steps, family = {}, {}, {}, {}
        for i in range(6):
            T = int(rng.integers(400, 1600))
            r = f"r{i}"
            runs[r] = (float(rng.uniform(2.0, 3.0)), float(rng.uniform(1.0, 3.0)))
            sched[r] = (
                lin_schedule(T, max(1, T // 20))
                if schedule == "lin"
                else wsd_schedule(T, max(1, T // 20), 0.2)
            )
            steps[r] = sorted({max(1, round(T * 0.03 * (1 / 0.03) ** (j / 7))) for j in range(8)})
            family[r] = r
            if schedule == "branches":
                for at in (0.25, 0.5):
                    b = f"{r}-b{at}"
                    sched[b] = branch_schedule(sched[r], round(at * T))
                    runs[b], steps[b], family[b] = runs[r], [sched[b].size], r
        drawn = simulate_study(law, shared, runs, sched, steps, noise, rng)
        curves = [
            Curve(c.run, c.lr, c.steps, c.loss, family[c.run] if schedule == "branches" else None)
            for c in drawn
        ]
        if schedule == "lin":
            rows = backtest_curves(curves, fit_law, frac, level)
        else:
            by = {c.run: c for c in curves}
            cache: dict = {}
            targets = [c for c in curves if (c.key != c.run) == (schedule == "branches")]
            rows = []
            for cv in targets:
                parent = by[cv.key]
                pre = parent.until(round(0.8 * parent.lr.size))
                f = forecast(
                    [c for c in curves if c.key != cv.key],
                    pre,
                    [(cv.lr, int(cv.lr.size), 1.0)],
                    law=fit_law,
                    level=level,
                    cache=cache,
                )
                obs = float(cv.loss[-1])
                rows.append(
                    {
                        "inside": f.lo <= obs <= f.hi,
                        "rel_error": f.value / obs - 1,
                        "lo": f.lo,
                        "hi": f.hi,
                    }
                )
        for row in rows:
            n += 1
            hits += row["inside"]
            errs.append(abs(row["rel_error"]))
            widths.append((row["hi"] - row["lo"]) / 2 / noise)
    return {
        "coverage": hits / max(n, 1),
        "n": n,
        "mean_abs_rel_error": float(np.mean(errs)) if errs else math.nan,
        "mean_halfwidth_over_noise": float(np.mean(widths)) if widths else math.nan,
    }


# ----------------------------------------------------------------------------- size band


@dataclasses.dataclass(frozen=True)
class Band:
    """What the study's finished sizes imply for a run of `params` at `compute` FLOPs.

    center, lo, hi: the `level` prediction interval of the metric at that compute for that
    size (a line in log N through the other sizes' values at the same compute); observed:
    the run's own value there; verdict: "inside", "above" or "below" the band. sizes: the
    (params, value) pairs it was drawn through. extrapolated: `params` lies outside the
    range of those sizes (the line is then an extrapolation, and a slice of the study at
    one compute is not straight in log N far from its sizes: the verdict is weak).
    """

    center: float
    lo: float
    hi: float
    level: float
    observed: float
    verdict: str
    compute: float
    sizes: tuple[tuple[float, float], ...]
    extrapolated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON)."""
        return dataclasses.asdict(self)


def value_at_compute(flops: np.ndarray, values: np.ndarray, compute: float) -> float | None:
    """A curve's value at `compute` FLOPs, interpolated in log-log between evaluations;
    None outside the evaluated range."""
    f = np.asarray(flops, float)
    v = np.asarray(values, float)
    if f.size == 0 or compute < f.min() or compute > f.max():
        return None
    order = np.argsort(f)
    return float(np.exp(np.interp(math.log(compute), np.log(f[order]), np.log(v[order]))))


def size_band(
    others: Sequence[tuple[float, np.ndarray, np.ndarray]],
    params: float,
    compute: float,
    observed: float,
    level: float = 0.95,
    min_sizes: int = 3,
) -> Band | None:
    """The band the finished sizes imply at `compute` for a run of `params` (None when fewer
    than `min_sizes` other sizes reached that compute).

    others: (params, flops (n,), values (n,)) of the finished runs of other sizes. Their
    values at `compute` (`value_at_compute`) are fitted by least squares as a + b log N; the
    band is the `level` prediction interval of a new point at log(params) (Student t with
    n - 2 dof): sd^2 = s^2 (1 + 1/n + (x0 - mean x)^2 / Sxx)."""
    pts = []
    for p, f, v in others:
        at = value_at_compute(f, v, compute)
        if at is not None and p != params:
            pts.append((float(p), at))
    # one value per size (seed replicates averaged)
    by: dict[float, list[float]] = {}
    for p, value in pts:
        by.setdefault(p, []).append(value)
    sizes = tuple(sorted((p, float(np.mean(ys))) for p, ys in by.items()))
    if len(sizes) < max(min_sizes, 3):
        return None
    x = np.log([p for p, _ in sizes])
    y = np.array([v for _, v in sizes])
    b, a = np.polyfit(x, y, 1)
    n = x.size
    s = math.sqrt(float(np.sum((y - (a + b * x)) ** 2)) / (n - 2))
    x0 = math.log(params)
    sxx = float(np.sum((x - x.mean()) ** 2))
    sd = s * math.sqrt(1 + 1 / n + (x0 - x.mean()) ** 2 / sxx)
    q = float(stats.t.ppf(0.5 + level / 2, n - 2))
    center = float(a + b * x0)
    lo, hi = center - q * sd, center + q * sd
    verdict = "inside" if lo <= observed <= hi else ("above" if observed > hi else "below")
    outside = not sizes[0][0] <= params <= sizes[-1][0]
    return Band(center, lo, hi, level, float(observed), verdict, float(compute), sizes, outside)
