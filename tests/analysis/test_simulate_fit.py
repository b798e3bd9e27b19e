"""The planner fits each simulated study as scaling.fit does (analysis.simulate.fit_draw)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from analysis.calibration import CurveModel, PlannedRun
from analysis.fitting import fit_study
from analysis.results import prepare
from analysis.settings import FitSettings
from analysis.simulate import FitPlan, Noise, fit_draw, simulate_table


def _study(seed: int = 4):
    sizes = np.geomspace(1e7, 2e9, 6)
    runs = [
        PlannedRun(f"d{i}", float(n), 6 * n * 3e9 * np.geomspace(0.01, 1, 10))
        for i, n in enumerate(sizes)
    ]
    curve = CurveModel("ce_avg", 3.0, 0.6, 0.3, 40.0, 0.3)
    return simulate_table(
        runs, {"ce_avg": curve}, Noise({"ce_avg": 0.02}), np.random.default_rng(seed)
    )


@pytest.mark.parametrize("E_from", ["N", "all"])
def test_simulated_fit_is_the_fitters_with_E_fitted(E_from):
    raw = _study()
    plan = FitPlan(irreducible="fit", bootstrap=60, E_from=E_from)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = prepare(raw, ["ce_avg"], "exact", source="t")
        mine = fit_draw(table, ["ce_avg"], ["N", "Cmin"], plan, seed=7)
        theirs = fit_study(
            raw,
            FitSettings(
                irreducible="fit",
                E_from=E_from,
                metrics=("ce_avg",),
                bootstrap=60,
                seed=7,
                holdout=0,
            ),
            source="t",
        )
    # one E for the loss, shared by its laws vs N and vs Cmin, as the fitter's
    assert mine[("N", "ce_avg")].law.E == mine[("Cmin", "ce_avg")].law.E
    for res in theirs.results:
        got = mine[(res.against, "ce_avg")]
        assert got.law.E == pytest.approx(res.law.E, rel=1e-9)
        assert got.law.alpha == pytest.approx(res.law.alpha, rel=1e-9)
        assert got.alpha_ci == pytest.approx(res.alpha_ci, rel=1e-9)
        assert got.E_in_bootstrap == "refitted"
