"""The repetition-aware joint law: ``L = E + A / N^alpha + B / D'^beta`` with effective data D'.

Muennighoff et al. (2023, "Scaling data-constrained language models") count repeated data as

    D' = U + U R* (1 - exp(-R / R*)),   R = D / U - 1,

with D the training tokens seen, U the unique tokens (images of the training split x tokens
per image) and R the repetitions beyond the first pass; R* is the number of repetitions after
which more passes are worth ~nothing (15.4 for language). A run with R <= 0 (at most one pass)
has D' = D. An optional second term counts K stored crop views of every image as

    U_views = U (1 + V* (1 - exp(-(K - 1) / V*)))

unique tokens (K = 1: U; V* -> infinity: K fresh images; V* -> 0: one image), used for U in D'.

The fit follows the joint law's (`analysis.jointlaw`): Huber loss on log residuals in
coordinates normalised by the geometric means of N and D, L-BFGS-B with an analytic gradient
from the best starts of a grid (R* and V* fitted in log space), bootstrap over families (a run
and its decay branches drawn together), percentile intervals Hesterberg-expanded with
F - p degrees of freedom for F families and p parameters.

Identifiability (`identify`): R* shows only in runs that repeat their data well beyond one
pass; when no run has R >= `R_MIN` the law is fitted with D' = D and R* is reported as not
identified with the reason, never a number. V* is fitted only when the runs' K take two or
more values (else U counts images and the views' worth is inside R*). An estimate beyond
`BEYOND` x the largest R (for V*: K - 1) of the runs is not identified either (the runs
cannot tell repeated data from fresh data: reported with the reason, no number); an interval
whose upper end lies beyond it is open above (bounded below only), written [lo, None].

This module never imports torch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize
from threadpoolctl import threadpool_limits

from .jointlaw import ComputeModel, _huber, families, family_counts, interval
from .results import ResultsError, final_rows

R_MIN = 2.0  # the largest R of the runs must reach this (3 passes) for R* to be fitted
# below this many model sizes the size term (E, A, alpha) has no interval: E trades against
# A / N^alpha (docs/fitting.md, "Repeated data": its coverage on the demo_data design)
SIZE_TERM_SIZES = 3
BEYOND = 10.0  # an R* above BEYOND x max R is beyond what the runs can tell
LOG_R_BOUNDS = (math.log(0.05), math.log(1e5))
LOG_V_BOUNDS = (math.log(0.01), math.log(1e5))
LANGUAGE_R_STAR = 15.4  # Muennighoff et al. 2023, language models (an assumption for images)


@dataclasses.dataclass(frozen=True)
class RepeatLaw:
    """``L = E + A / N^alpha + B / D'^beta``; R_star None: D' = D (not fitted); V_star None:
    U_views = U (views not counted)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float
    R_star: float | None = None
    V_star: float | None = None

    def unique(self, U, K=1) -> np.ndarray:
        """U_views [n]: the unique tokens U [n] of K [n] stored views per image."""
        return unique_views(U, K, self.V_star)

    def effective(self, D, U, K=1) -> np.ndarray:
        """D' [n] of D tokens seen [n] from U unique tokens [n] (K views per image)."""
        return effective_data(D, self.unique(U, K), self.R_star)

    def predict(self, N, D, U, K=1) -> np.ndarray:
        """Loss at N params, D tokens seen, U unique tokens, K views (broadcast arrays)."""
        N = np.asarray(N, float)
        return self.E + self.A * N**-self.alpha + self.B * self.effective(D, U, K) ** -self.beta

    def as_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)


def unique_views(U, K=1, V_star: float | None = None) -> np.ndarray:
    """U (1 + V* (1 - exp(-(K - 1) / V*))) [n]; V_star None: U (views not counted)."""
    U = np.asarray(U, float)
    if V_star is None:
        return U * np.ones_like(np.asarray(K, float))
    k = np.asarray(K, float) - 1.0
    return U * (1.0 - V_star * np.expm1(-k / V_star))


def effective_data(D, U, R_star: float | None) -> np.ndarray:
    """D' = U + U R* (1 - exp(-R / R*)) with R = D / U - 1 > 0, else D' = D (at most one pass);
    R_star None: D. Arrays D [n], U [n] in one unit (tokens)."""
    D = np.asarray(D, float)
    U = np.asarray(U, float)
    if R_star is None:
        return D * np.ones_like(U)
    R = D / U - 1.0
    repeated = U * (1.0 - R_star * np.expm1(-np.maximum(R, 0.0) / R_star))
    return np.where(R > 0, repeated, D)


def effective_ratio(
    D: float, U: float, K: int, R_star: float, V_star: float | None = None, fresh: bool = False
) -> float:
    """D'/D of D tokens seen from U unique image tokens with K stored views per image: the
    views counted with V_star when known, else as worth nothing (U) or, with `fresh`, as good
    as fresh images (U K): the two ends of an unknown V*."""
    if V_star is not None:
        u = float(unique_views([U], [K], V_star)[0])
    else:
        u = U * (K if fresh else 1)
    return float(effective_data([D], [u], R_star)[0]) / D


def repetitions(D, U) -> np.ndarray:
    """R = D / U - 1 [n]: passes over the unique data beyond the first (negative: < 1 pass)."""
    return np.asarray(D, float) / np.asarray(U, float) - 1.0


# ----------------------------------------------------------------------------- fitting


@dataclasses.dataclass(frozen=True)
class _Design:
    """The points in normalised coordinates: x = log(N / N0), d = D / D0, u = U / D0, k = K - 1."""

    x: np.ndarray
    d: np.ndarray
    u: np.ndarray
    k: np.ndarray
    N0: float
    D0: float
    fit_R: bool
    fit_V: bool


def _d_eff(p: np.ndarray, s: _Design) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d' [n], dlog d'/d log R* [n], dlog d'/d log V* [n]) at parameters p."""
    n = len(s.d)
    zero = np.zeros(n)
    if not s.fit_R:
        return s.d, zero, zero
    r = math.exp(p[5])
    if s.fit_V:
        v = math.exp(p[6])
        ev = np.exp(-s.k / v)
        u = s.u * (1.0 - v * np.expm1(-s.k / v))
        du_dlogv = s.u * v * ((1.0 - ev) - (s.k / v) * ev)
    else:
        u, du_dlogv = s.u, zero
    R = s.d / u - 1.0
    pos = R > 0
    Rp = np.where(pos, R, 0.0)
    e = np.exp(-Rp / r)
    one_minus_e = -np.expm1(-Rp / r)
    dprime = np.where(pos, u * (1.0 + r * one_minus_e), s.d)
    dd_dlogr = np.where(pos, u * r * (one_minus_e - (Rp / r) * e), 0.0)
    dd_du = np.where(pos, 1.0 + r * one_minus_e - e * (Rp + 1.0), 0.0)
    return dprime, dd_dlogr / dprime, dd_du * du_dlogv / dprime


def _objective(
    p: np.ndarray, s: _Design, logL: np.ndarray, w: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Huber loss of log residuals and its gradient in p = (e, a, alpha, b, beta[, log R*[,
    log V*]]): E = exp(e), term_N = exp(a - alpha x), term_D = exp(b - beta log d')."""
    e, a, alpha, b, beta = p[:5]
    dprime, dlog_r, dlog_v = _d_eff(p, s)
    y = np.log(dprime)
    tE, tN, tD = math.exp(e), np.exp(a - alpha * s.x), np.exp(b - beta * y)
    P = tE + tN + tD
    loss, g = _huber(np.log(P) - logL, delta)
    gw = w * g / P
    grad = [
        np.sum(gw * tE),
        np.sum(gw * tN),
        -np.sum(gw * tN * s.x),
        np.sum(gw * tD),
        -np.sum(gw * tD * y),
    ]
    if s.fit_R:
        grad.append(-beta * np.sum(gw * tD * dlog_r))
    if s.fit_V:
        grad.append(-beta * np.sum(gw * tD * dlog_v))
    return float(np.sum(w * loss)), np.array(grad)


def _bounds(s: _Design, logL: np.ndarray) -> list[tuple[float, float]]:
    b = [(float(logL.min()) - 30, float(logL.min())), (-30, 30), (1e-3, 4.0), (-30, 30)]
    b.append((1e-3, 4.0))
    if s.fit_R:
        b.append(LOG_R_BOUNDS)
    if s.fit_V:
        b.append(LOG_V_BOUNDS)
    return b


def _grid(s: _Design, logL_min: float) -> np.ndarray:
    """Starting points [G, P] in normalised coordinates (P = 5, 6 or 7)."""
    axes = [
        logL_min + np.log([0.05, 0.3, 0.7]),
        logL_min + np.array([-4.0, -2.0, -0.5]),
        np.array([0.1, 0.3, 0.6, 1.0]),
        logL_min + np.array([-4.0, -2.0, -0.5]),
        np.array([0.1, 0.3, 0.6, 1.0]),
    ]
    if s.fit_R:
        axes.append(np.log([1.0, 5.0, 25.0, 150.0, 1000.0]))
    if s.fit_V:
        axes.append(np.log([0.3, 3.0, 30.0]))
    g = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return g.reshape(-1, len(axes))


def _fit(
    s: _Design, logL: np.ndarray, w: np.ndarray, delta: float, starts: np.ndarray, top: int
) -> np.ndarray:
    bounds = _bounds(s, logL)
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])
    values = np.array([_objective(np.clip(p, lo, hi), s, logL, w, delta)[0] for p in starts])
    best = None
    for i in np.argsort(values)[:top]:
        res = optimize.minimize(
            _objective,
            np.clip(starts[i], lo, hi),
            args=(s, logL, w, delta),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 3000, "ftol": 1e-14, "gtol": 1e-10},
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None, "no starting point"
    return best.x


def _design(N, D, U, K, fit_R: bool, fit_V: bool) -> _Design:
    N0 = float(np.exp(np.mean(np.log(N))))
    D0 = float(np.exp(np.mean(np.log(D))))
    return _Design(np.log(N / N0), D / D0, U / D0, K - 1.0, N0, D0, fit_R, fit_V)


def _to_law(p: np.ndarray, s: _Design) -> RepeatLaw:
    e, a, alpha, b, beta = (float(v) for v in p[:5])
    return RepeatLaw(
        E=math.exp(e),
        A=math.exp(a) * s.N0**alpha,
        alpha=alpha,
        B=math.exp(b) * s.D0**beta,
        beta=beta,
        R_star=math.exp(p[5]) if s.fit_R else None,
        V_star=math.exp(p[6]) if s.fit_V else None,
    )


def _to_params(law: RepeatLaw, s: _Design) -> np.ndarray:
    p = [
        math.log(max(law.E, 1e-300)),
        math.log(law.A) - law.alpha * math.log(s.N0),
        law.alpha,
        math.log(law.B) - law.beta * math.log(s.D0),
        law.beta,
    ]
    if s.fit_R:
        p.append(math.log(law.R_star if law.R_star else LANGUAGE_R_STAR))
    if s.fit_V:
        p.append(math.log(law.V_star if law.V_star else 3.0))
    return np.array(p)


def _arrays(N, D, U, K, L) -> tuple[np.ndarray, ...]:
    N, D, U, L = (np.asarray(v, float) for v in (N, D, U, L))
    K = np.ones_like(N) if K is None else np.asarray(K, float) * np.ones_like(N)
    return N, D, U, K, L


def check_points(N, D, U, K, L, n_params: int, what: str = "the nd-repeat fit") -> None:
    """Raise ResultsError unless the points are valid and there are more distinct
    (N, D, U, K) points than the law's `n_params` parameters."""
    N, D, U, K, L = _arrays(N, D, U, K, L)
    if not (len(N) == len(D) == len(U) == len(K) == len(L)):
        raise ResultsError(f"{what}: N, D, U, K and L have different lengths")
    bad = ~np.isfinite(N * D * U * K * L) | (N <= 0) | (D <= 0) | (U <= 0) | (L <= 0) | (K < 1)
    if bad.any():
        raise ResultsError(
            f"{what}: {int(bad.sum())} points with a non-positive or missing N, D, unique "
            "tokens U or loss, or views K < 1"
        )
    distinct = len(set(zip(N.tolist(), D.tolist(), U.tolist(), K.tolist())))
    if distinct < n_params + 1:
        raise ResultsError(
            f"{what} needs more distinct (N, D, U, K) points than its {n_params} parameters; "
            f"got {distinct}"
        )
    if len(np.unique(N)) < 2 or len(np.unique(D)) < 2:
        raise ResultsError(
            f"{what}: needs at least 2 model sizes and 2 data amounts; got "
            f"{len(np.unique(N))} and {len(np.unique(D))}"
        )


@dataclasses.dataclass(frozen=True)
class Identified:
    """Which of R* and V* the points can tell, and why not when they cannot."""

    fit_R: bool
    fit_V: bool
    R_reason: str | None  # why R* is not fitted (None: fitted)
    V_reason: str | None  # why V* is not fitted (None: fitted)
    max_R: float
    views: tuple[float, ...]

    @property
    def n_params(self) -> int:
        return 5 + int(self.fit_R) + int(self.fit_V)


def identify(D, U, K=None, views: bool = True) -> Identified:
    """Whether R* and V* can be fitted from points with D tokens seen [n], U unique tokens [n]
    and K views [n]: R* needs a run repeating its data R >= R_MIN times; V* needs R* and two or
    more values of K (and `views`)."""
    D, U = np.asarray(D, float), np.asarray(U, float)
    K = np.ones_like(D) if K is None else np.asarray(K, float) * np.ones_like(D)
    max_R = float(np.max(repetitions(D, U)))
    ks = tuple(sorted({float(k) for k in K}))
    fit_R = max_R >= R_MIN
    R_reason = (
        None
        if fit_R
        else f"not identified: the most repeated run sees its unique data {max_R + 1:.3g} "
        f"times (R = {max_R:.3g} < {R_MIN:g}); D' = D is fitted instead"
    )
    if not views:
        V_reason: str | None = "not asked for"
    elif len(ks) < 2:
        V_reason = (
            f"not fitted: every run has K = {ks[0]:g} stored view(s) per image; U counts images"
            + (", so the views' worth is inside R*" if ks[0] > 1 else "")
        )
    elif not fit_R:
        V_reason = "not fitted: views count only through repetition, and R* is not identified"
    else:
        V_reason = None
    return Identified(fit_R, V_reason is None, R_reason, V_reason, max_R, ks)


def fit_repeat(
    N,
    D,
    U,
    K=None,
    L=None,
    *,
    ident: Identified | None = None,
    weights=None,
    delta: float = 1e-3,
    start: RepeatLaw | None = None,
    top: int = 8,
    grid: bool = True,
) -> RepeatLaw:
    """Fit the law to points N [n] params, D [n] tokens seen, U [n] unique tokens, K [n] views
    per image (None: 1), L [n] loss. `ident` (default `identify(D, U, K)`) says which of R*
    and V* are fitted; weights: [n] multiplicities (the bootstrap's counts); start: a
    solution tried first besides the `top` best starts of the grid (`grid` False: `start`
    alone, as the bootstrap does)."""
    if L is None:
        raise TypeError("fit_repeat needs the losses L")
    N, D, U, K, L = _arrays(N, D, U, K, L)
    ident = ident or identify(D, U, K)
    check_points(N, D, U, K, L, ident.n_params)
    w = np.ones_like(L) if weights is None else np.asarray(weights, float)
    s = _design(N, D, U, K, ident.fit_R, ident.fit_V)
    logL = np.log(L)
    starts = _grid(s, float(logL.min()))
    if start is not None:
        first = _to_params(start, s)[None, :]
        starts = np.vstack([first, starts]) if grid else first
    return _to_law(_fit(s, logL, w, delta, starts, top), s)


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass
class RepeatFit:
    """A fitted repetition-aware law with its points, identifiability and bootstrap."""

    metric: str
    law: RepeatLaw
    points: pd.DataFrame  # run, N, D, U, K, C, L, family, R, D_eff, predicted
    ident: Identified
    compute: ComputeModel
    level: float = 0.95
    delta: float = 1e-3
    samples: list[RepeatLaw] = dataclasses.field(default_factory=list)
    bootstrap: int = 0

    def ci(self, name: str) -> tuple[float, float | None] | None:
        """Interval of a parameter (E, A, alpha, B, beta, R_star, V_star); None without a
        bootstrap, for a parameter not fitted, and for E, A, alpha with fewer than
        `SIZE_TERM_SIZES` model sizes; R_star's and V_star's upper end None when it lies
        beyond `BEYOND` x the largest R (open above)."""
        if name in ("E", "A", "alpha") and self.points["N"].nunique() < SIZE_TERM_SIZES:
            return None
        vals = np.array([getattr(s, name) for s in self.samples], dtype=float)
        if not len(vals) or not np.isfinite(vals).any():
            return None
        # the resampled units are the families (a run and its branches share one seed's noise)
        units = int(self.points["family"].nunique())
        iv = interval(vals, units, self.level, n_params=self.ident.n_params)
        if iv is None:
            return None
        if name in ("R_star", "V_star") and iv[1] > self.limit(name):
            return (iv[0], None)
        return iv

    def limit(self, name: str) -> float:
        """`BEYOND` x the largest repetition (R_star) or extra views K - 1 (V_star) of the
        runs: the most the runs can tell of that parameter."""
        most = self.ident.max_R if name == "R_star" else max(self.ident.views) - 1.0
        return BEYOND * max(most, 1.0)

    def told(self, name: str) -> bool:
        """Whether `name`'s point estimate (R_star, V_star) is fitted and within `limit`."""
        value = getattr(self.law, name)
        return value is not None and value <= self.limit(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record (docs/fitting.md, "The repetition-aware law")."""
        p = self.points
        ci = {k: self.ci(k) for k in ("E", "A", "alpha", "B", "beta", "R_star", "V_star")}
        params = self.law.as_dict()
        notes = {"R_star": self.ident.R_reason, "V_star": self.ident.V_reason}
        told = {
            "R_star": "the runs cannot tell their repeated data from fresh data",
            "V_star": "the runs cannot tell a stored view from a fresh image",
        }
        for name in ("R_star", "V_star"):
            if notes[name] is None and not self.told(name):
                # the best fit has (almost) no penalty: no number, no interval
                notes[name] = (
                    f"not identified: the fit puts it at {getattr(self.law, name):.3g}, beyond "
                    f"{self.limit(name):.3g} ({BEYOND:g} x what the runs span); {told[name]}"
                )
                params[name] = None
                ci[name] = None
        return {
            "metric": self.metric,
            "law": "nd-repeat",
            "form": "L = E + A / N^alpha + B / D'^beta, D' = U + U R* (1 - exp(-R / R*)), "
            "R = D / U - 1 (D' = D when R <= 0)"
            + (", U = U_images (1 + V* (1 - exp(-(K - 1) / V*)))" if self.ident.fit_V else ""),
            "N_unit": "parameters",
            "D_unit": "training tokens",
            **params,
            **{f"{k}_ci": v for k, v in ci.items()},
            "R_star_note": notes["R_star"],
            "V_star_note": notes["V_star"],
            "identifiability": {
                "max_R": self.ident.max_R,
                "R_min": R_MIN,
                "views": list(self.ident.views),
                "beyond": BEYOND,
            },
            "loss": f"Huber (delta {self.delta:g}) on log residuals; L-BFGS-B from a grid of "
            "starts",
            "n_points": int(len(p)),
            "n_sizes": int(p["N"].nunique()),
            "rms_log_residual": float(np.sqrt(np.mean(np.log(p["predicted"] / p["L"]) ** 2))),
            "ci": {
                "level": self.level,
                "bootstrap_samples": self.bootstrap,
                "bootstrap_valid": len(self.samples),
                "resampling": "families (a run and its decay branches, which share its "
                "seed's noise, drawn together)",
                "open_above": "an upper end null: beyond the runs' repetition (R* and V* "
                "bounded below only)",
                "not_given": "no interval for a parameter that is not identified (its note "
                "says why)"
                + (
                    f"; none for E, A, alpha: {p['N'].nunique()} model sizes (the size term "
                    f"needs {SIZE_TERM_SIZES})"
                    if p["N"].nunique() < SIZE_TERM_SIZES
                    else ""
                ),
            },
            "compute_model": {
                "form": "C = k N^gamma D (tokens), exact FLOPs (3 x forward)",
                "k": self.compute.k,
                "gamma": self.compute.gamma,
                "max_rel_error_on_runs": self.compute.max_rel_error,
            },
            "holdout": None,
            "points": [
                {
                    "run": str(r.run),
                    "N": float(r.N),
                    "D": float(r.D),
                    "U": float(r.U),
                    "K": float(r.K),
                    "R": float(r.R),
                    "D_eff": float(r.D_eff),
                    "C": float(r.C),
                    "L": float(r.L),
                    "predicted": float(r.predicted),
                }
                for r in p.itertuples()
            ],
        }


def repeat_points(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The final point of every run: run, N, D (tokens), U (unique_tokens), K (views, 1 when
    the table has no column ``views``), C, L, family."""
    for col in ("tokens", "unique_tokens"):
        if col not in table.columns:
            raise ResultsError(
                f"column {col!r} missing: the nd-repeat law needs the training tokens seen "
                "and the unique tokens of each run"
            )
    final = final_rows(table)
    runs = final["run"].astype(str).to_numpy()
    K = final["views"].to_numpy(float) if "views" in final.columns else np.ones(len(final))
    return pd.DataFrame(
        {
            "run": runs,
            "N": final["params"].to_numpy(float),
            "D": final["tokens"].to_numpy(float),
            "U": pd.to_numeric(final["unique_tokens"], errors="coerce").to_numpy(float),
            "K": K,
            "C": final["compute"].to_numpy(float),
            "L": final[metric].to_numpy(float),
            "family": families(final, runs),
        }
    )


def fit_repeat_table(
    table: pd.DataFrame,
    metric: str = "ce_avg",
    bootstrap: int = 200,
    level: float = 0.95,
    seed: int = 0,
    delta: float = 1e-3,
    views: bool = True,
) -> RepeatFit:
    """Fit the law on a prepared table's final evaluations (`results.prepare`, with columns
    tokens and unique_tokens, optionally views)."""
    with threadpool_limits(1):  # hundreds of tiny fits: BLAS threads only add synchronisation
        return _fit_repeat_table(table, metric, bootstrap, level, seed, delta, views)


def _fit_repeat_table(
    table: pd.DataFrame,
    metric: str,
    bootstrap: int,
    level: float,
    seed: int,
    delta: float,
    views: bool,
) -> RepeatFit:
    pts = repeat_points(table, metric)
    ident = identify(pts["D"], pts["U"], pts["K"], views=views)
    what = f"the nd-repeat fit of {metric}"
    check_points(pts["N"], pts["D"], pts["U"], pts["K"], pts["L"], ident.n_params, what)
    law = fit_repeat(pts["N"], pts["D"], pts["U"], pts["K"], pts["L"], ident=ident, delta=delta)
    pts["R"] = repetitions(pts["D"], pts["U"])
    pts["D_eff"] = law.effective(pts["D"], pts["U"], pts["K"])
    pts["predicted"] = law.predict(pts["N"], pts["D"], pts["U"], pts["K"])
    cm = ComputeModel.fit(pts["N"], pts["D"], pts["C"])
    fit = RepeatFit(metric, law, pts, ident, cm, level, delta, bootstrap=bootstrap)
    if bootstrap > 0:
        fit.samples = bootstrap_repeat(pts, law, ident, bootstrap, seed, delta)
    return fit


def bootstrap_repeat(
    pts: pd.DataFrame, start: RepeatLaw, ident: Identified, draws: int, seed: int, delta: float
) -> list[RepeatLaw]:
    """Refits on `draws` resamples of the families of `pts` (`family_counts`), with the
    parameters the full data identified; draws with too few distinct points are skipped."""
    cols = [pts[c].to_numpy(float) for c in ("N", "D", "U", "K", "L")]
    rng = np.random.default_rng(seed)
    out = []
    for counts in family_counts(pts["family"].to_numpy(), draws, rng):
        keep = counts > 0
        try:
            out.append(
                fit_repeat(
                    *(c[keep] for c in cols),
                    ident=ident,
                    weights=counts[keep],
                    delta=delta,
                    start=start,
                    top=1,
                    grid=False,
                )
            )
        except ResultsError:
            continue
    return out
