"""Leave-future-out backtests (analysis.backtest) on studies drawn from the paper's laws."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.backtest import backtest_compute, backtest_sizes, markdown, summary
from analysis.results import prepare
from analysis.synthetic import study_table

SIZES = 73728.0 * np.array([6, 8, 10, 12, 14, 16, 18, 20]) ** 3


def test_exact_laws_backtest_with_no_error():
    # no noise and the paper's E: every size's final lies on the law, so any 3 sizes
    # predict the others exactly; the factors are the size ratios
    t = prepare(study_table(SIZES, sigma=0.0), ["ce_avg", "ce_last"])
    rows = backtest_sizes(t, ["ce_avg"], irreducible="paper")
    assert len(rows) == sum(len(SIZES) - k for k in range(3, len(SIZES)))  # 5+4+3+2+1
    assert max(abs(r["rel_error"]) for r in rows) < 1e-9
    r = next(r for r in rows if r["k"] == 3 and r["x"] == int(SIZES[-1]))
    assert r["factor"] == pytest.approx(int(SIZES[-1]) / int(SIZES[2]))
    # the frontier follows the Cmin law; truncated curves bend near a cut: small error
    rows = backtest_compute(t, ["ce_avg"], irreducible="paper")
    assert rows and max(abs(r["rel_error"]) for r in rows) < 0.005
    assert all(r["factor"] > 1 for r in rows)


def test_noise_makes_errors_that_the_summary_bins_by_factor():
    t = prepare(study_table(SIZES, sigma=0.02, seed=1), ["ce_avg", "ce_last"])
    rows = backtest_sizes(t, ["ce_avg"], irreducible="paper")
    errs = np.abs([r["rel_error"] for r in rows])
    assert errs.max() > 1e-4  # the noise shows
    table = summary(rows)
    assert sum(b["n"] for b in table) == len(rows)
    for b in table:
        inside = [r for r in rows if b["factor_lo"] <= r["factor"] < b["factor_hi"]]
        assert b["n"] == len(inside)
        assert b["max_abs_rel_error"] == pytest.approx(max(abs(r["rel_error"]) for r in inside))
    assert "| N | ce_avg | x1-2 |" in markdown(rows)


def test_fitted_E_is_refitted_below_the_cut():
    t = prepare(study_table(SIZES, sigma=0.0), ["ce_avg", "ce_last"])
    rows = backtest_sizes(t, ["ce_avg"], irreducible="fit")
    assert {r["E_choice"] for r in rows} == {"refitted below the cut"}
    # with 4 exact points, the refitted E is the paper's (5.0 for ce_avg)
    assert next(r for r in rows if r["k"] == 4)["E"] == pytest.approx(5.0, abs=0.05)
