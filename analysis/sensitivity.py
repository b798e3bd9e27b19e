"""Checks on every fitted law: whether its interval is supported by enough data, whether the
law itself is plausible, and how far its exponent moves under other reasonable choices.

- `interval_support`: the interval of a law needs at least `MIN_SIZES` distinct model sizes
  (`MIN_SIZES_E_FITTED` when E is fitted: one more parameter) and at least `MIN_VALID` of its
  bootstrap draws valid; below, the interval is not given ("n/a") and the reason says why. With
  fewer sizes a run-level bootstrap has too few distinct draws: with 3 sizes a third of the
  draws hold fewer than 3 sizes, and the valid ones collapse onto a handful of lines.
- `law_marks`: the row marks of a law: an exponent whose sign says the metric rises with scale,
  or a weak correlation (|r| < `MIN_ABS_R`).
- `sensitivity`: the exponent under E fitted / E pinned / no E, OLS vs Huber, without the
  smallest and without the largest size, and the few-point t-interval (n - 2 degrees of
  freedom, the OLS slope's standard error) beside the bootstrap interval. When the spread of
  those exponents is wider than the interval, the row says so.

Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats

MIN_SIZES = 5  # distinct sizes for an interval with E given
MIN_SIZES_E_FITTED = 6  # ... and with E fitted
MIN_VALID = 0.8  # share of bootstrap draws that must give a fit
MIN_ABS_R = 0.9  # a weaker log-log correlation is marked


def interval_support(
    n_sizes: int, E_fitted: bool, requested: int, valid: int
) -> tuple[bool, str | None]:
    """(enough, reason): whether a law's bootstrap interval can be given, and why not."""
    need = MIN_SIZES_E_FITTED if E_fitted else MIN_SIZES
    if requested <= 0:
        return False, "no bootstrap asked (--bootstrap 0)"
    if n_sizes < need:
        return False, (
            f"{n_sizes} model sizes; an interval needs at least {need}"
            + (" with E fitted" if E_fitted else "")
        )
    if valid < MIN_VALID * requested:
        return False, (
            f"{valid} of {requested} bootstrap draws gave a fit; an interval needs at least "
            f"{MIN_VALID:.0%}"
        )
    return True, None


def law_marks(alpha: float, r: float | None) -> list[str]:
    """Marks for a law's row: a rising metric, a weak log-log correlation."""
    marks = []
    if alpha > 0:
        marks.append(f"wrong sign: alpha {alpha:+.3g} > 0 (the metric rises with scale)")
    if r is not None and math.isfinite(r) and abs(r) < MIN_ABS_R:
        marks.append(f"weak law: |r| = {abs(r):.2f} < {MIN_ABS_R}")
    return marks


def t_interval(x, y, E: float, level: float = 0.95) -> tuple[float, float] | None:
    """The OLS slope's t-interval (n - 2 degrees of freedom) in log(x) vs log(y - E); x, y [n].

    None with fewer than 3 points or distinct x."""
    lx = np.log(np.asarray(x, float))
    ly = np.log(np.asarray(y, float) - E)
    n = len(lx)
    if n < 3 or np.ptp(lx) == 0 or not np.isfinite(ly).all():
        return None
    sxx = ((lx - lx.mean()) ** 2).sum()
    a = ((lx - lx.mean()) * (ly - ly.mean())).sum() / sxx
    resid = ly - ly.mean() - a * (lx - lx.mean())
    se = math.sqrt((resid**2).sum() / (n - 2) / sxx)
    t = float(stats.t.ppf(0.5 + level / 2, n - 2))
    return float(a - t * se), float(a + t * se)


def sensitivity(
    alpha: float,
    interval: tuple[float, float] | None,
    variants: dict[str, Callable[[], float | None]],
    t_ci: tuple[float, float] | None,
    reference: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The exponent under each variant (name -> a refit returning alpha, or None when the
    variant does not apply; a refit that raises ValueError is recorded with its reason).

    Returns {variants: {name: alpha | None}, skipped: {name: reason}, t_interval, spread
    (max - min over the main fit and the variants but those named in `reference`, shown for
    comparison only), exceeds_interval (spread > the interval's width; None without an
    interval)}."""
    values: dict[str, float | None] = {}
    skipped: dict[str, str] = {}
    for name, refit in variants.items():
        try:
            v = refit()
        except ValueError as e:  # ResultsError is a ValueError
            values[name], skipped[name] = None, str(e).split("\n")[0]
            continue
        values[name] = None if v is None or not math.isfinite(v) else float(v)
    got = [alpha] + [v for k, v in values.items() if v is not None and k not in reference]
    spread = float(max(got) - min(got))
    width = None if interval is None else float(interval[1] - interval[0])
    return {
        "variants": values,
        "skipped": skipped,
        "t_interval": None if t_ci is None else [t_ci[0], t_ci[1]],
        "spread": spread,
        "spread_leaves_out": list(reference),
        "exceeds_interval": None if width is None else bool(spread > width),
    }
