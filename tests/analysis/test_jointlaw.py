"""The joint law L(N, D) = E + A/N^alpha + B/D^beta: recovery from a known law with noise,
bootstrap coverage (reduced; scripts/validation/jointlaw_validation.py measures it over 200 tables),
the compute-optimal frontier against brute force, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.jointlaw import ComputeModel, JointLaw, exponents, fit_joint, fit_joint_table, optimal
from analysis.results import ResultsError, prepare
from analysis.synthetic import joint_law_table

TRUE = JointLaw(E=1.8, A=60.0, alpha=0.34, B=80.0, beta=0.28)
SIZES = np.geomspace(1e4, 1e6, 6)
DATA = np.geomspace(3e5, 3e7, 5)


def _table(seed: int, sigma: float = 0.005):
    return prepare(joint_law_table(TRUE, SIZES, DATA, sigma=sigma, seed=seed), ["ce_avg"])


def test_noise_free_law_is_recovered():
    fit = fit_joint_table(_table(0, sigma=0.0), bootstrap=0, holdout=False)
    for k in ("E", "A", "alpha", "B", "beta"):
        assert getattr(fit.law, k) == pytest.approx(getattr(TRUE, k), rel=2e-3), k


# Tolerances from scripts/validation/jointlaw_validation.py (200 tables, sigma 0.005): the 90th
# percentiles
# of the absolute errors are about 0.015 (alpha), 0.02 (beta), 0.13 (E); the test asks 9 of 10
# seeded tables to be within twice those.
def test_noisy_law_is_recovered_within_tolerances():
    fits = [fit_joint_table(_table(100 + s), bootstrap=0, holdout=False) for s in range(10)]
    ok = [
        abs(f.law.alpha - TRUE.alpha) < 0.03
        and abs(f.law.beta - TRUE.beta) < 0.04
        and abs(f.law.E - TRUE.E) < 0.25
        for f in fits
    ]
    assert sum(ok) >= 9, [(f.law.alpha, f.law.beta, f.law.E) for f in fits]


def test_bootstrap_intervals_cover_the_truth():
    """Reduced coverage check: 12 seeded tables, 60 draws each; the 95% intervals of alpha and
    beta must contain the truth in at least 10 (a 95% interval misses 3+ of 12 with
    probability ~2%)."""
    hits = {"alpha": 0, "beta": 0}
    for s in range(12):
        fit = fit_joint_table(_table(200 + s), bootstrap=60, seed=s, holdout=False)
        for k in hits:
            lo, hi = fit.ci(k)
            hits[k] += lo <= getattr(TRUE, k) <= hi
    assert hits["alpha"] >= 10 and hits["beta"] >= 10, hits


def test_compute_optimal_frontier_matches_brute_force():
    cm = ComputeModel(k=4.2, gamma=1.05)
    for C in (1e15, 1e18, 1e21):
        N_star, D_star = optimal(TRUE, cm, [C])
        grid = np.geomspace(1e3, 1e14, 200001)
        losses = TRUE.predict(grid, C / (cm.k * grid**cm.gamma))
        assert N_star[0] == pytest.approx(grid[np.argmin(losses)], rel=1e-3)
        assert cm.flops(N_star, D_star)[0] == pytest.approx(C, rel=1e-12)
    # exponents: slopes of log N*, log D* against log C
    (n1, n2), (d1, d2) = optimal(TRUE, cm, [1e18, 1e21])
    aN, aD = exponents(TRUE, cm)
    assert aN == pytest.approx(np.log(n2 / n1) / np.log(1e3), rel=1e-9)
    assert aD == pytest.approx(np.log(d2 / d1) / np.log(1e3), rel=1e-9)


def test_compute_model_recovers_flops_per_token():
    N = np.array([1e4, 1e5, 1e6, 1e4])
    D = np.array([1e6, 1e6, 1e7, 5e7])
    cm = ComputeModel.fit(N, D, 4.2 * N**1.05 * D)
    assert cm.k == pytest.approx(4.2, rel=1e-9) and cm.gamma == pytest.approx(1.05, rel=1e-9)
    assert cm.max_rel_error < 1e-9


def test_holdout_predicts_the_largest_model():
    fit = fit_joint_table(_table(7), bootstrap=0, holdout=True)
    hold = fit.holdout
    assert hold["held_out_N"] == pytest.approx(SIZES[-1]) and len(hold["points"]) == len(DATA)
    assert hold["max_abs_rel_error"] < 0.03  # 0.5% noise; the law extrapolates one size


def test_too_few_distinct_points_is_a_clear_error():
    N = np.array([1e4, 1e4, 1e5, 1e5, 1e6])
    D = np.array([1e6, 1e7, 1e6, 1e7, 1e6])
    L = TRUE.predict(N, D)
    with pytest.raises(
        ResultsError, match="more distinct .N, D. points than its 5 parameters; got 5"
    ):
        fit_joint(N, D, L)
    N6 = np.full(6, 1e5)
    with pytest.raises(ResultsError, match="at least 2 distinct model sizes"):
        fit_joint(N6, np.geomspace(1e6, 1e7, 6), TRUE.predict(N6, np.geomspace(1e6, 1e7, 6)))
    with pytest.raises(ResultsError, match="data unit must be one of tokens, images"):
        fit_joint_table(_table(0), d_unit="epochs")


def test_bootstrap_draws_a_parent_with_its_branches():
    from analysis.jointlaw import family_counts, joint_points

    family = np.array(["a", "a", "a", "b", "c", "c"])
    counts = family_counts(family, 500, np.random.default_rng(0))
    assert counts.shape == (500, 6)
    # a family's points are drawn together, and 3 families are drawn per draw
    assert (counts[:, 0] == counts[:, 1]).all() and (counts[:, 1] == counts[:, 2]).all()
    assert (counts[:, 4] == counts[:, 5]).all()
    assert (counts[:, [0, 3, 4]].sum(axis=1) == 3).all()
    # each family drawn once per draw on average
    assert abs(counts[:, 3].mean() - 1) < 0.15
    # a table's branches (config key branch.parent, a folder name or a path) join the parent
    table = pd.DataFrame(
        {
            "run": ["d2", "d2-b0.5", "d4", "d4-b0.5"],
            "params": [1e6, 1e6, 8e6, 8e6],
            "step": 10,
            "tokens": [1e8, 5e7, 1e8, 5e7],
            "compute": [1e15, 5e14, 8e15, 4e15],
            "ce_avg": [3.0, 3.1, 2.8, 2.9],
            "branch.parent": [None, "d2", None, "/runs/demo_wsd/d4/"],
        }
    )
    pts = joint_points(table, "ce_avg")
    assert dict(zip(pts["run"], pts["family"], strict=True)) == {
        "d2": "d2",
        "d2-b0.5": "d2",
        "d4": "d4",
        "d4-b0.5": "d4",
    }
