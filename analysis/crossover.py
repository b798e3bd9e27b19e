"""Where the best value of an axis changes: the crossover of per-value laws (torch-free).

With one law ``y = E + (beta * x)^alpha`` per value of an axis (a tokenizer, a learning
rate), the best value at x is the one whose law is lowest there. `crossovers` finds the
points where that choice changes, on the lower envelope of the laws over the measured range
of x widened by `extend` on each side (an extrapolated crossover is flagged: `inside`), each
refined by root finding between the two laws that meet there. `crossover_interval` gives its
bootstrap interval: each draw pairs one bootstrap law of each of the two values (their runs
are disjoint, so their draws are independent; the pairing is a seeded shuffle, so that two
laws fitted with the same bootstrap seed do not share their resampling pattern), finds the
crossing of that pair nearest the point estimate in the same widened range, and the
interval is the quantiles of those crossings (`analysis.powerlaw.interval_quantiles`, with
its small-sample expansion). Draws in which the pair does not cross are counted
(`crossing_share`): a low share means the data cannot tell whether the choice changes at all.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import brentq

from .powerlaw import CIMethod, Law, interval_quantiles

GRID = 400  # log-spaced points of the envelope search


@dataclasses.dataclass(frozen=True)
class Crossover:
    """One change of the best value along x (law units: billions of params, PFLOPs)."""

    x: float
    below: Any  # the best value just below x (smaller models / less compute)
    above: Any  # the best value just above x
    inside: bool  # within the measured range of x (else extrapolated)
    ci: tuple[float, float] | None = None
    crossing_share: float | None = None  # share of bootstrap draws whose pair crosses
    draws: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON record."""
        return {
            "x": self.x,
            "below": self.below,
            "above": self.above,
            "inside_measured_range": self.inside,
            "ci": list(self.ci) if self.ci is not None else None,
            "crossing_share": self.crossing_share,
            "bootstrap_draws": self.draws,
        }


def _value(law: Law, x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return law.E + (law.beta * x) ** law.alpha


def _roots(a: Law, b: Law, lo: float, hi: float) -> list[float]:
    """Every x in [lo, hi] where laws a and b are equal (sign changes on a log grid, refined)."""
    xs = np.geomspace(lo, hi, GRID)
    d = _value(a, xs) - _value(b, xs)
    out = []
    for i in np.flatnonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0):
        if not (np.isfinite(d[i]) and np.isfinite(d[i + 1])):
            continue
        out.append(
            float(
                math.exp(
                    brentq(
                        lambda t: float(_value(a, np.exp(t)) - _value(b, np.exp(t))),
                        math.log(xs[i]),
                        math.log(xs[i + 1]),
                    )
                )
            )
        )
    return out


def crossovers(
    laws: Mapping[Any, Law], x_range: tuple[float, float], extend: float = 10.0
) -> list[Crossover]:
    """The changes of the lowest law over [x_min / extend, x_max * extend], in order of x."""
    if len(laws) < 2:
        return []
    lo, hi = x_range[0] / extend, x_range[1] * extend
    keys = list(laws)
    xs = np.geomspace(lo, hi, GRID)
    values = np.vstack([_value(laws[k], xs) for k in keys])
    best = np.nanargmin(np.where(np.isfinite(values), values, np.inf), axis=0)
    out = []
    for i in np.flatnonzero(best[:-1] != best[1:]):
        a, b = keys[best[i]], keys[best[i + 1]]
        roots = _roots(laws[a], laws[b], xs[i], xs[i + 1])
        x = roots[0] if roots else float(math.sqrt(xs[i] * xs[i + 1]))
        out.append(Crossover(x, a, b, inside=x_range[0] <= x <= x_range[1]))
    return out


def crossover_interval(
    point: Crossover,
    samples: Mapping[Any, np.ndarray],
    x_range: tuple[float, float],
    *,
    n_units: int,
    level: float = 0.95,
    ci_method: CIMethod = "expanded",
    extend: float = 10.0,
    seed: int = 0,
) -> Crossover:
    """`point` with its bootstrap interval. samples: value -> [B, 3] bootstrap (alpha, beta,
    E) of its law (`FitResult.samples`); n_units: the sizes behind the smaller of the two
    laws (the small-sample expansion)."""
    a, b = samples.get(point.below), samples.get(point.above)
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return point
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    a = a[rng.permutation(len(a))[:n]]
    b = b[rng.permutation(len(b))[:n]]
    lo, hi = x_range[0] / extend, x_range[1] * extend
    found = []
    for sa, sb in zip(a, b):
        roots = _roots(Law(*sa), Law(*sb), lo, hi)
        if roots:
            found.append(min(roots, key=lambda r: abs(math.log(r / point.x))))
    share = len(found) / n
    ci = None
    if len(found) >= 2:
        q_lo, q_hi = interval_quantiles(n_units, level, ci_method)
        q = np.quantile(np.log(found), [q_lo, q_hi])
        ci = (float(np.exp(q[0])), float(np.exp(q[1])))
    return dataclasses.replace(point, ci=ci, crossing_share=share, draws=n)
