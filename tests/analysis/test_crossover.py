"""Crossovers of per-value laws against hand-solved crossings, and the coverage of their
bootstrap interval by simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.crossover import crossover_interval, crossovers
from analysis.powerlaw import Law, fit_vs_n
from analysis.results import prepare


def test_two_laws_cross_where_solved_by_hand():
    # same E: (b1 x)^a1 = (b2 x)^a2  <=>  x = (b2^a2 / b1^a1)^(1 / (a1 - a2))
    a = Law(-0.2, 10.0, 1.0)  # shallow: better at small x
    b = Law(-0.5, 2.0, 1.0)  # steep: better at large x
    x_star = (2.0**-0.5 / 10.0**-0.2) ** (1 / (-0.2 + 0.5))
    (c,) = crossovers({"a": a, "b": b}, (x_star / 5, x_star * 5))
    assert c.x == pytest.approx(x_star, rel=1e-9)
    assert (c.below, c.above, c.inside) == ("a", "b", True)
    # outside the measured range (but within the widened search): flagged as extrapolated
    (c,) = crossovers({"a": a, "b": b}, (x_star * 2, x_star * 8))
    assert c.x == pytest.approx(x_star, rel=1e-9) and not c.inside


def test_identical_or_parallel_laws_never_cross():
    law = Law(-0.3, 5.0, 2.0)
    assert crossovers({"a": law, "b": Law(-0.3, 5.0, 2.0)}, (1e-3, 1.0)) == []
    assert crossovers({"a": law, "b": Law(-0.3, 5.0, 2.5)}, (1e-3, 1.0)) == []  # b always worse
    assert crossovers({"a": law}, (1e-3, 1.0)) == []


def test_three_values_give_the_envelope_changes_in_order():
    laws = {"s": Law(-0.1, 1.0, 0.0), "m": Law(-0.3, 1.0, 0.0), "l": Law(-0.6, 1.0, 0.0)}
    # all equal 1 at x = 1; for x < 1 the shallowest is lowest (x^-0.1 < x^-0.6), above
    # it the steepest: the middle one is never best
    found = crossovers(laws, (0.1, 10.0))
    assert [(c.below, c.above) for c in found] == [("s", "l")]
    assert found[0].x == pytest.approx(1.0)


SIZES = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 3e6])  # params; x = params / 1e9


def _fit(law: Law, rng, sigma: float, name: str, seed: int):
    x = SIZES / 1e9
    y = law.E + (law.beta * x) ** law.alpha * np.exp(sigma * rng.standard_normal(len(x)))
    table = pd.DataFrame(
        {
            "run": [f"{name}{i}" for i in range(len(x))],
            "params": SIZES,
            "step": 1,
            "flops": SIZES * 1e6,
            "ce_avg": y,
        }
    )
    return fit_vs_n(
        prepare(table, ["ce_avg"]), "ce_avg", irreducible=law.E, bootstrap=200, seed=seed
    )


def test_interval_covers_the_planted_crossover():
    # two laws that meet at 3e5 params; log-normal noise of 3% on the reducible part; E known
    a = Law(-0.3, 1e4, 1.0)
    x_star = 3e-4
    b = Law(-0.45, (a.predict(x_star) - 1.0) ** (1 / -0.45) / x_star, 1.0)
    rng = np.random.default_rng(1)
    hits = reps = 0
    for r in range(60):
        fa, fb = _fit(a, rng, 0.03, "a", r), _fit(b, rng, 0.03, "b", r)
        x_range = (SIZES[0] / 1e9, SIZES[-1] / 1e9)
        found = crossovers({"a": fa.law, "b": fb.law}, x_range)
        assert len(found) == 1 and (found[0].below, found[0].above) == ("a", "b")
        c = crossover_interval(
            found[0], {"a": fa.samples, "b": fb.samples}, x_range, n_units=6, seed=r
        )
        assert c.ci is not None and c.crossing_share > 0.9
        reps += 1
        hits += c.ci[0] <= x_star <= c.ci[1]
    # 95% intervals: with a true coverage of 0.95, fewer than 52 of 60 has probability 0.3%
    assert hits / reps >= 52 / 60, f"coverage {hits}/{reps}"
