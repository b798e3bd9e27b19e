"""Uncertainty drawn and compared: bootstrap bands of a fitted law, and two studies' laws side
by side with the bootstrap interval of each exponent's difference.

A law's band at x is the pointwise interval of the bootstrap draws' predictions
``E_b + (beta_b x)^alpha_b`` (the same draws, interval level and small-sample expansion as the
fit's own parameter intervals). Two studies are independent samples: their bootstrap draws
(made with different seeds) are paired by index, so ``alpha_B[i] - alpha_A[i]`` are draws of
the difference of the two exponents; its interval and the share of draws below zero say
whether B's exponent is really different from A's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from contracts.compare import Difference

from .powerlaw import FitResult, interval_quantiles


def law_band(fit: FitResult, x) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise bootstrap interval of the fitted metric at x (law units): (lo, hi), each the
    shape of x; None when the fit has fewer than 2 valid bootstrap draws."""
    samples = fit.samples
    if samples is None or len(samples) < 2:
        return None
    x = np.asarray(x, dtype=float)
    alpha, beta, E = (samples[:, i][:, None] for i in range(3))
    with np.errstate(over="ignore", invalid="ignore"):
        pred = E + (beta * x[None, :]) ** alpha  # [B, len(x)]
    pred = pred[np.isfinite(pred).all(axis=1)]
    if len(pred) < 2:
        return None
    lo, hi = interval_quantiles(fit.n_runs, fit.level, fit.ci_method)
    q = np.quantile(pred, [lo, hi], axis=0)
    return q[0], q[1]


def exponent_difference(a: FitResult, b: FitResult) -> Difference:
    """The difference of two fits' exponents (same metric and x) with its bootstrap interval.

    The interval uses the smaller study's run count for the small-sample expansion (the
    wider, cautious choice) and the fits' level and interval method.
    """
    if (a.metric, a.against) != (b.metric, b.against):
        raise ValueError(f"cannot compare {a.metric} vs {a.against} with {b.metric} vs {b.against}")
    delta = b.law.alpha - a.law.alpha
    ci = share = None
    n = 0
    if a.samples is not None and b.samples is not None:
        n = min(len(a.samples), len(b.samples))
    if n >= 2:
        assert a.samples is not None and b.samples is not None  # n >= 2 needs both
        d = b.samples[:n, 0] - a.samples[:n, 0]
        lo, hi = interval_quantiles(min(a.n_runs, b.n_runs), a.level, a.ci_method)
        q = np.quantile(d, [lo, hi])
        ci = (float(q[0]), float(q[1]))
        share = float((d < 0).mean())
    return Difference(
        a.metric,
        a.against,
        a.law.alpha,
        b.law.alpha,
        a.alpha_ci,
        b.alpha_ci,
        delta,
        ci,
        share,
        n,
        a.level,
        differs=None if ci is None else not ci[0] <= 0 <= ci[1],
    )


def compare_fits(fits_a: Sequence[FitResult], fits_b: Sequence[FitResult]) -> list[Difference]:
    """Every (metric, x) fitted in both studies, in study A's order."""
    by_key = {(f.metric, f.against): f for f in fits_b}
    return [
        exponent_difference(f, by_key[(f.metric, f.against)])
        for f in fits_a
        if (f.metric, f.against) in by_key
    ]


def markdown(diffs: Sequence[Difference], name_a: str, name_b: str) -> str:
    """A Markdown table of the exponent differences."""

    def ci(p):
        return "-" if p is None else f"[{p[0]:.3g}, {p[1]:.3g}]"

    lines = [
        f"Exponents of `metric - E = (beta * x)^alpha`: A = {name_a}, B = {name_b}; "
        f"difference = alpha_B - alpha_A with its bootstrap interval (independent "
        f"bootstraps of the two studies, draws paired by index). For a loss, a more "
        f"negative alpha falls faster with scale.",
        "",
        "| metric | vs | alpha A [CI] | alpha B [CI] | alpha B - alpha A [CI] | draws with B < A "
        "| differs |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in diffs:
        share = "-" if d.share_below_zero is None else f"{100 * d.share_below_zero:.1f}%"
        differs = {None: "-", True: "yes", False: "no"}[d.differs]
        lines.append(
            f"| {d.metric} | {d.against} | {d.alpha_a:.4g} {ci(d.alpha_a_ci)} | "
            f"{d.alpha_b:.4g} {ci(d.alpha_b_ci)} | {d.delta:+.4g} {ci(d.delta_ci)} | "
            f"{share} | {differs} |"
        )
    return "\n".join(lines) + "\n"
