"""The planner's curve model refuses priors it cannot represent (analysis.simulate)."""

from __future__ import annotations

import numpy as np

from analysis.simulate import PlannedRun, calibrate, paper_prior
from analysis.synthetic import PAPER_DEPTHS, paper_sizes


def _paper_grid() -> list[PlannedRun]:
    # sweeps/depth_grid.yaml: 200 / 250 / 350 epochs of 1,281,167 images x 680 tokens, 6 N D
    # FLOPs, 24 evaluations log-spaced from 0.1% of each run's compute
    runs = []
    for d, n in zip(PAPER_DEPTHS, paper_sizes(), strict=True):
        epochs = 200 if d <= 16 else 250 if d <= 20 else 350
        final = 6 * n * 680 * 1281167 * epochs
        runs.append(PlannedRun(f"d{d}", n, final * np.geomspace(1e-3, 1, 24)))
    return runs


def test_a_parameter_at_its_bound_is_not_simulated():
    models = {m: calibrate(p, _paper_grid()) for m, p in paper_prior(["ce_avg", "err_avg"]).items()}
    # the paper's loss laws are represented within 1% by the curves
    assert models["ce_avg"].not_representable() is None
    assert max(models["ce_avg"].n_law_error, models["ce_avg"].cmin_law_error) < 0.01
    # its err_avg laws are not: the data exponent b runs to the top of its box (5)
    why = models["err_avg"].not_representable()
    assert why is not None and "b = 5 at its bound" in why
    assert models["err_avg"].at_bound == ("b",)
