"""Pareto frontier of hand-made crossing training curves, checked against values worked out by
hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.frontier import pareto_frontier, smooth_curves
from analysis.results import ResultsError


def _table(curves: dict[str, tuple[list[float], list[float]]]) -> pd.DataFrame:
    rows = []
    for run, (c, y) in curves.items():
        for i, (ci, yi) in enumerate(zip(c, y)):
            rows.append(
                {"run": run, "params": 1, "step": i + 1, "compute": float(ci), "ce_avg": float(yi)}
            )
    return pd.DataFrame(rows)


CURVES = {
    "A": ([1, 10, 100], [10, 5, 4]),
    "B": ([10, 100, 1000], [8, 3, 1]),
    "C": ([1, 1000], [12, 1.2]),  # one straight log-log segment: y = 12 * c^(-1/3)
    "D": ([2, 20], [9.5, 11]),  # gets worse: its best stays 9.5
}


def test_frontier_of_crossing_curves_is_exact():
    fr = pareto_frontier(_table(CURVES), "ce_avg")
    # by hand, log-log interpolation between evaluations:
    #   A at 2:  10 * (5/10)^log10(2)      A at 20: 5 * (4/5)^log10(2)
    #   C at c:  12 * c^(-1/3)             D anywhere: min so far
    lg2 = np.log10(2)
    expected = [
        (1, 10.0, "A"),  # A 10 beats C 12
        (2, 10 * 0.5**lg2, "A"),  # A's interpolated 8.12 beats D's evaluation 9.5, C 9.52
        (10, 5.0, "A"),  # A 5 beats C 5.57, B 8, D 9.5
        (20, 12 * 20 ** (-1 / 3), "C"),  # C 4.42 beats A 4.67, B 5.96
        (100, 12 * 100 ** (-1 / 3), "C"),  # C 2.59 beats B 3, A 4
        (1000, 1.0, "B"),  # B 1 beats C 1.2; A's best stays 4
    ]
    assert list(fr.curve["compute"]) == [e[0] for e in expected]
    np.testing.assert_allclose(fr.curve["value"], [e[1] for e in expected], rtol=1e-12)
    assert list(fr.curve["run"]) == [e[2] for e in expected]
    # fitted points: evaluations on the frontier that improve it (interpolated minima are not
    # points)
    assert list(zip(fr.points["compute"], fr.points["value"], fr.points["run"])) == [
        (1.0, 10.0, "A"),
        (10.0, 5.0, "A"),
        (1000.0, 1.0, "B"),
    ]
    assert list(fr.points["step"]) == [1, 2, 3]


def test_flat_stretch_gives_one_point_and_ties_keep_one_run():
    fr = pareto_frontier(_table({"a": ([1, 2, 4], [3, 2, 2]), "b": ([1, 8], [3, 1])}), "ce_avg")
    # b at 2: 3 * (1/3)^(1/3) = 2.08; at 4: 3 * (1/3)^(2/3) = 1.44 (beats a's flat 2)
    np.testing.assert_allclose(fr.curve["value"], [3, 2, 3 * 3 ** (-2 / 3), 1], rtol=1e-12)
    assert list(zip(fr.points["compute"], fr.points["run"])) == [(1.0, "a"), (2.0, "a"), (8.0, "b")]


def test_single_run_is_an_error():
    with pytest.raises(ResultsError, match="at least 2 runs"):
        pareto_frontier(_table({"only": ([1, 2, 3], [3, 2, 1])}), "ce_avg")


def test_smoothing_keeps_power_law_curves_and_damps_noise():
    c = np.geomspace(1, 1e4, 15)
    y = 3 * c**-0.1
    table = _table({"a": (list(c), list(y)), "b": (list(c), list(y * 1.5))})
    np.testing.assert_allclose(
        smooth_curves(table, "ce_avg", 2)["ce_avg"], table["ce_avg"], rtol=1e-12
    )
    noisy = table.copy()
    noisy["ce_avg"] *= np.exp(0.01 * np.random.default_rng(0).standard_normal(len(noisy)))
    sm = smooth_curves(noisy, "ce_avg", 2)
    err = lambda t: np.std(np.log(t["ce_avg"] / table["ce_avg"]))  # noqa: E731
    assert err(sm) < 0.7 * err(noisy)
    assert smooth_curves(noisy, "ce_avg", 0) is noisy


def test_cmin_from_leaves_early_evaluations_out_of_the_frontier():
    import warnings

    from analysis.fitting import fit_study
    from analysis.frontier import frontier_rows
    from analysis.settings import FitSettings
    from analysis.synthetic import study_table

    table = pd.DataFrame(
        {
            "run": ["a"] * 4 + ["b"] * 4,
            "step": [10, 20, 30, 40] * 2,
            "compute": [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0],
            "optim.warmup_frac": [0.5] * 4 + [0.25] * 4,
            "optim.warmup_steps": [None] * 4 + [15] * 4,
            "length.steps": [None] * 8,
        }
    )
    # a: warm-up 0.5 x 40 steps = 20; b: 15 steps given (warmup_steps wins over the fraction)
    assert frontier_rows(table, "warmup_end").tolist() == [False, True, True, True] + [
        False,
        True,
        True,
        True,
    ]
    assert frontier_rows(table, 0.5).tolist() == [False, True, True, True] * 2
    assert frontier_rows(table, 0.0).all()
    # end to end: no frontier point below 30% of its run's compute, the N laws unchanged
    study = study_table(seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = [
            fit_study(study, FitSettings(irreducible="paper", bootstrap=0, cmin_from=f))
            for f in (0.0, 0.3)
        ]
        with pytest.raises(ResultsError, match="warmup_end"):
            fit_study(study, FitSettings(irreducible="paper", bootstrap=0, cmin_from="warmup_end"))
    last = study.groupby("run")["flops"].max()
    for res in both[1].results:
        if res.against == "Cmin":
            run_last = last[res.points["run"]].to_numpy() / 1e15
            assert (res.points["x"].to_numpy() >= 0.3 * run_last * (1 - 1e-9)).all()
    assert [r.law.alpha for r in both[0].results if r.against == "N"] == [
        r.law.alpha for r in both[1].results if r.against == "N"
    ]
    assert both[1].records[-1]["cmin_from"]["excluded_evaluations"] > 0
