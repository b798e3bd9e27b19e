"""The irreducible loss E of one metric, fitted once and shared by its laws vs N and vs Cmin.

The paper subtracts one E per metric from both its N and Cmin laws, so their exponents are
comparable. `fit_shared_E` estimates that E from several point sets (the final points vs N
and the frontier points vs Cmin), each with its own (alpha, beta):

    maximise over E  the likelihood of  ln(y - E) = alpha_s ln x + c_s + N(0, sigma_s^2)

profiled over each set's line and noise (`_profile_nll`), with 0 <= E < min(y): the
maximum-likelihood E when the noise is log-normal on the reducible part (the paper's fit is
a straight line in log(y - E) vs log x). The interval is the profile-likelihood interval,
calibrated for a dozen points (`profile_threshold`: the F form of a least-squares profile,
not the asymptotic chi2_1). It flags an E at a
bound and an interval wider than the smallest reducible loss min(y) - E, the two cases where
the exponents depend more on E than on the data. Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

from .results import ResultsError


@dataclasses.dataclass(frozen=True)
class SharedE:
    """A fitted irreducible term and how well the data pin it down."""

    E: float
    ci: tuple[float, float]  # profile interval at `level`
    level: float
    upper_bound: float  # E must stay below min(y)
    n_points: int
    at_bound: bool  # E at 0 or at min(y): the data do not locate E
    wide: bool  # interval wider than the smallest reducible loss min(y) - E

    def problems(self, metric: str) -> list[str]:
        """Warnings in words (empty when E is well determined)."""
        out = []
        if self.at_bound:
            where = "0" if self.E <= 0.5 * self.upper_bound else f"its upper bound min({metric})"
            out.append(
                f"fitted E for {metric} sits at {where} ({self.E:.4g}): the data do not "
                f"locate the irreducible loss, and the exponents depend on that choice; "
                f"give --set irreducible=paper or a number if you know it"
            )
        if self.wide:
            out.append(
                f"fitted E for {metric} = {self.E:.4g} has a {self.level:.0%} interval "
                f"[{self.ci[0]:.4g}, {self.ci[1]:.4g}] wider than the smallest reducible "
                f"loss ({self.upper_bound - self.E:.3g}): the exponents depend on E; an interval "
                f"marked 'E refitted per draw' carries that uncertainty, one without it does not"
            )
        return out


def _profile_nll(sets: list[tuple[np.ndarray, np.ndarray]], E: float) -> float:
    """Negative log-likelihood of E, profiled over each set's (alpha, beta, sigma).

    Model: ln(y - E) = alpha ln x + c + eps, eps ~ N(0, sigma_s^2) per set (log-normal noise
    on the reducible part). In y's units the density carries the Jacobian 1 / (y - E), so
    NLL(E) = sum_s [ n_s/2 ln(SSE_s(E) / n_s) + sum_i ln(y_i - E) ] + const, with SSE_s the
    least-squares residual of the log-log line.
    """
    total = 0.0
    for lx, y in sets:
        red = y - E
        if (red <= 0).any():
            return float("inf")
        lr = np.log(red)
        mx, my = lx.mean(), lr.mean()
        sxx = ((lx - mx) ** 2).sum()
        a = ((lx - mx) * (lr - my)).sum() / sxx
        sse = max(float(((lr - my - a * (lx - mx)) ** 2).sum()), 1e-300)
        total += 0.5 * len(y) * math.log(sse / len(y)) + float(lr.sum())
    return total


def profile_threshold(n: int, n_sets: int, level: float) -> float:
    """The bound on 2 (NLL(E) - NLL_min) of E's profile interval from n points in `n_sets`
    lines (one E, a slope and an intercept per line: p = 1 + 2 n_sets).

    The asymptotic chi2_1(level) (3.84 at 95%) under-covers with a dozen points: its 95%
    interval held the true E in 87-94% of simulated paper-grid studies
    (scripts/validation/e_coverage.py). With the noise variance estimated from the same
    points, the small-sample form is the F (squared t) calibration of a nonlinear
    least-squares profile (as R's confint for nls): SSE(E) / SSE_min <= 1 + F(1, n - p) /
    (n - p), i.e. 2 dNLL <= n ln(1 + F(1, n - p) / (n - p)) (5.40 for 12 points, one line).
    """
    df = n - (1 + 2 * n_sets)
    if df < 1:
        return float(stats.chi2.ppf(level, 1))
    return float(n * math.log1p(stats.f.ppf(level, 1, df) / df))


def fit_shared_E(
    sets: Sequence[tuple[np.ndarray, np.ndarray]], level: float = 0.95, grid: int = 400
) -> SharedE:
    """One E for several (x [n_s], y [n_s]) point sets, each with its own power law.

    x, y positive. Returns the E of least total cost in ln y, its profile interval and flags.
    """
    sets = [(np.asarray(x, float), np.asarray(y, float)) for x, y in sets]
    if not sets or any(len(x) < 3 or np.ptp(np.log(x)) == 0 for x, _ in sets):
        raise ResultsError("fitting E needs at least 3 points at distinct x in every law")
    ymin = min(float(y.min()) for _, y in sets)
    if not ymin > 0:
        raise ResultsError("fitting E needs positive metric values")
    logs = [(np.log(x), y) for x, y in sets]
    top = ymin * (1 - 1e-6)

    def nll(E: float) -> float:
        return _profile_nll(logs, float(E))

    # a grid dense near min(y) (where the reducible part is small), then a bounded refinement
    es = np.unique(
        np.concatenate([np.linspace(0.0, top, grid), (top - top * np.logspace(-6, 0, grid))])
    )
    es = es[(es >= 0) & (es <= top)]
    costs = np.array([nll(E) for E in es])
    i = int(np.nanargmin(costs))
    lo, hi = es[max(i - 1, 0)], es[min(i + 1, len(es) - 1)]
    E, best = float(es[i]), float(costs[i])
    if hi > lo:
        res = optimize.minimize_scalar(
            nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10 * max(ymin, 1.0)}
        )
        if res.fun <= best:
            E, best = float(res.x), float(res.fun)
    limit = best + 0.5 * profile_threshold(sum(len(y) for _, y in sets), len(sets), level)

    def edge(inside: float, outside: float) -> float:
        for _ in range(60):
            mid = 0.5 * (inside + outside)
            inside, outside = (mid, outside) if nll(mid) <= limit else (inside, mid)
        return inside

    ci_lo = 0.0 if nll(0.0) <= limit else edge(E, 0.0)
    ci_hi = top if nll(top) <= limit else edge(E, top)
    at_bound = E <= 1e-3 * ymin or E >= ymin * (1 - 1e-3)
    wide = (ci_hi - ci_lo) > (ymin - E)
    return SharedE(
        E=E,
        ci=(ci_lo, ci_hi),
        level=level,
        upper_bound=ymin,
        n_points=sum(len(x) for x, _ in sets),
        at_bound=at_bound,
        wide=wide,
    )
