"""Power-law fits recover the paper's eight laws from noisy synthetic data; intervals cover; bad
input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.paper import METRICS, PAPER_LAWS, X_SCALE, paper_law
from analysis.powerlaw import fit_law, fit_vs_cmin, fit_vs_n, interval_quantiles, pearson_loglog
from analysis.results import ResultsError, prepare
from analysis.synthetic import final_points_table, paper_sizes, training_curves_table


def _curve_error(fit, law) -> float:
    """Largest relative gap between the fitted and the true metric over the data's x range."""
    x = fit.points["x"].to_numpy()
    xs = np.geomspace(x.min(), x.max(), 200)
    return float(np.max(np.abs(fit.law.predict(xs) / law.predict(xs) - 1)))


def test_paper_laws_are_the_published_numbers():
    assert len(PAPER_LAWS) == 8
    law = paper_law("ce_last", "N")
    assert (law.alpha, law.beta, law.E) == (-0.23, 2.0, 4.5)
    assert paper_law("err_avg", "Cmin").beta == 4.4e-2 and paper_law("ce_avg", "Cmin").E == 5.0
    assert X_SCALE == {"N": 1e9, "Cmin": 1e15}
    # (2.0 * 1)^-0.23 + 4.5 at N = 1B params
    assert law.predict(1.0) == pytest.approx(4.5 + 2.0**-0.23)
    with pytest.raises(KeyError, match="no published law"):
        paper_law("ce_first", "N")


@pytest.mark.parametrize("E", [0.0, 2.0, None])
@pytest.mark.parametrize("method", ["ols", "robust"])
def test_noise_free_law_is_recovered_exactly(E, method):
    x = np.geomspace(0.01, 2, 12)
    y = 2.0 + (3.0 * x) ** -0.2
    law = (
        fit_law(x, y, E if E is not None else None, method)
        if E != 0.0
        else fit_law(x, y - 2.0, 0.0, method)
    )
    assert law.alpha == pytest.approx(-0.2, abs=1e-6)
    assert law.beta == pytest.approx(3.0, rel=1e-5)
    if E is None:
        assert law.E == pytest.approx(2.0, abs=1e-6)
    assert pearson_loglog(x, y - 2.0) == pytest.approx(-1.0, abs=1e-12)


# The tolerances are statistical: with 1% noise on 12 points the slope's sd vs N is ~0.002, so
# |alpha error| < 0.005 holds in ~98% of draws (measured over 100 seeds: 98-99%). The tests
# therefore assert rates over fixed seeds, never cherry-picked single draws.


@pytest.mark.parametrize("metric", METRICS)
def test_laws_vs_n_recovered_from_noisy_points(metric):
    law = paper_law(metric, "N")
    fits = [
        fit_vs_n(
            prepare(final_points_table(sigma=0.01, seed=s), [metric]),
            metric,
            irreducible="paper",
            bootstrap=0,
        )
        for s in range(20)
    ]
    assert all(f.n_runs == 12 for f in fits)
    alpha_ok = [abs(f.law.alpha - law.alpha) < 0.005 for f in fits]
    assert sum(alpha_ok) >= 18 and max(abs(f.law.alpha - law.alpha) for f in fits) < 0.008
    if metric.startswith("ce"):
        assert all(f.law.beta == pytest.approx(law.beta, rel=0.10) for f in fits)
        assert all(abs(f.r) > 0.99 for f in fits)
    else:
        # tiny exponents make beta ill-conditioned: compare the curves over the data instead.
        # The fitted line's error at the range ends has sd ~0.55% here, so 1% holds in ~87%
        # of draws (measured over 100 seeds: 86-87%).
        errors = [_curve_error(f, law) for f in fits]
        assert (
            np.median(errors) < 0.01 and sum(e < 0.01 for e in errors) >= 15 and max(errors) < 0.02
        )


@pytest.mark.parametrize("metric", METRICS)
def test_laws_vs_cmin_recovered_from_noisy_training_curves(metric):
    law = paper_law(metric, "Cmin")
    tables = [prepare(training_curves_table(sigma=0.01, seed=s), [metric]) for s in range(8)]
    raw = [fit_vs_cmin(t, metric, irreducible="paper", bootstrap=0) for t in tables]
    assert all(f.n_runs == 12 for f in raw)
    assert all(abs(f.law.alpha - law.alpha) < 0.005 for f in raw)
    if metric.startswith("ce"):
        assert all(f.law.beta == pytest.approx(law.beta, rel=0.10) for f in raw)
        assert all(abs(f.r) > 0.99 for f in raw)
        assert all(_curve_error(f, law) < 0.01 for f in raw)
    else:
        # the raw frontier of noisy, nearly flat error curves takes the noise's minima and sits
        # ~1.5% below the law (measured: curve within 1% in 0-3% of draws); smoothing each
        # curve first (window 2) brings it within 1% in 92-97% of draws
        for f in raw:
            gap = np.median(f.law.predict(f.points["x"]) / law.predict(f.points["x"]) - 1)
            assert -0.03 < gap < -0.005
        smooth = [fit_vs_cmin(t, metric, bootstrap=0, smooth=2) for t in tables]
        assert all(abs(f.law.alpha - law.alpha) < 0.005 for f in smooth)
        assert (
            sum(_curve_error(f, law) < 0.01 for f in smooth) >= 7
            and max(_curve_error(f, law) for f in smooth) < 0.015
        )


def test_noise_free_curves_give_the_law_exactly_vs_cmin():
    table = prepare(training_curves_table(sigma=0.0), METRICS)
    for metric in METRICS:
        law = paper_law(metric, "Cmin")
        fit = fit_vs_cmin(table, metric, irreducible="paper", bootstrap=0)
        # not to machine precision: log-log interpolation of E + (beta C)^alpha between
        # evaluations is a chord, so a neighbour's evaluation can win by a hair near a band edge
        assert fit.law.alpha == pytest.approx(law.alpha, rel=1e-4)
        assert fit.law.beta == pytest.approx(law.beta, rel=1e-3)
        assert set(fit.points["run"]) == set(
            table["run"]
        )  # every run owns a stretch of the frontier


@pytest.mark.parametrize("metric", METRICS)
def test_bootstrap_interval_covers_true_alpha_vs_n(metric):
    """95% intervals over 100 seeded repetitions: at least 90 must cover (measured: 94-95)."""
    law = paper_law(metric, "N")
    covered = 0
    for seed in range(100):
        table = prepare(final_points_table(sigma=0.01, seed=1000 + seed), [metric])
        fit = fit_vs_n(table, metric, irreducible="paper", bootstrap=1000, seed=seed)
        covered += fit.alpha_ci[0] <= law.alpha <= fit.alpha_ci[1]
    assert covered >= 90


def test_bootstrap_interval_covers_true_alpha_vs_cmin():
    law = paper_law("ce_last", "Cmin")
    covered = 0
    for seed in range(100):
        table = prepare(training_curves_table(sigma=0.01, seed=2000 + seed, evals=8), ["ce_last"])
        fit = fit_vs_cmin(table, "ce_last", irreducible="paper", bootstrap=60, seed=seed)
        covered += fit.alpha_ci[0] <= law.alpha <= fit.alpha_ci[1]
    assert covered >= 90


def test_expanded_interval_is_wider_than_percentile_for_few_runs():
    lo, hi = interval_quantiles(12, 0.95, "expanded")
    assert lo < 0.025 and hi == pytest.approx(1 - lo)
    assert interval_quantiles(12, 0.95, "percentile") == pytest.approx((0.025, 0.975))
    # Hesterberg: tail = Phi(-sqrt(n/(n-1)) t_{n-1,0.975}); n=12: t_11 = 2.2010, * 1.04447 -> 2.2989
    assert lo == pytest.approx(0.01075, abs=2e-5)


def test_robust_fit_resists_an_outlier():
    x = np.geomspace(0.01, 2, 12)
    y = (2.0 * x) ** -0.23 * np.exp(0.005 * np.random.default_rng(1).standard_normal(12))
    y[5] *= 1.5
    ols = fit_law(x, y, 0.0, "ols")
    rob = fit_law(x, y, 0.0, "robust")
    # a mid-range outlier mostly shifts the intercept: OLS's beta is >10% off, Huber's is not
    assert abs(ols.beta / 2.0 - 1) > 0.10
    assert abs(rob.beta / 2.0 - 1) < 0.03 and abs(rob.alpha + 0.23) < 0.002


def test_holdout_predicts_the_largest_models():
    table = prepare(final_points_table(sigma=0.0), ["ce_last"])
    fit = fit_vs_n(table, "ce_last", irreducible="paper", bootstrap=0, holdout=2)
    assert list(fit.holdout.points["run"]) == ["n10", "n11"]
    assert fit.holdout.max_abs_rel_error < 1e-9
    # the largest two models 10% worse than the law: prediction / actual - 1 = 1/1.1 - 1
    bent = table.copy()
    big = bent["run"].isin(["n10", "n11"])
    bent.loc[big, "ce_last"] *= 1.1
    fit = fit_vs_n(bent, "ce_last", irreducible="paper", bootstrap=0, holdout=2)
    np.testing.assert_allclose(fit.holdout.points["rel_error"], 1 / 1.1 - 1, rtol=1e-9)
    with pytest.raises(ResultsError, match="hold-out k=10 leaves 2 model sizes"):
        fit_vs_n(table, "ce_last", bootstrap=0, holdout=10)


def test_holdout_vs_cmin_predicts_frontier_points_of_the_largest_models():
    table = prepare(training_curves_table(sigma=0.0), ["ce_avg"])
    fit = fit_vs_cmin(table, "ce_avg", irreducible="paper", bootstrap=0, holdout=2)
    assert fit.holdout.runs == ["c10", "c11"]
    assert len(fit.holdout.points) > 0 and set(fit.holdout.points["run"]) <= {"c10", "c11"}
    assert fit.holdout.max_abs_rel_error < 1e-3


def test_bad_input_errors():
    two = prepare(final_points_table(sizes=paper_sizes()[:2]), ["ce_avg"])
    with pytest.raises(ResultsError, match="needs at least 3 model sizes .*got 2"):
        fit_vs_n(two, "ce_avg", bootstrap=0)
    table = prepare(final_points_table(), ["ce_avg"])
    with pytest.raises(ResultsError, match=r"E=9 is not below every value .*smallest 5\.7"):
        fit_vs_n(table, "ce_avg", irreducible=9.0, bootstrap=0)
    with pytest.raises(
        ResultsError, match="irreducible must be 'paper', 'none', 'fit' or a number"
    ):
        fit_vs_n(table, "ce_avg", irreducible="paperr", bootstrap=0)
    one_run = prepare(training_curves_table(sizes=paper_sizes()[:1]), ["ce_avg"])
    with pytest.raises(
        ResultsError, match="Cmin frontier needs training curves from at least 2 runs"
    ):
        fit_vs_cmin(one_run, "ce_avg", bootstrap=0)


def test_fit_result_record_has_units_and_intervals():
    table = prepare(training_curves_table(seed=3), ["ce_last"])
    fit = fit_vs_cmin(table, "ce_last", irreducible="paper", bootstrap=50, holdout=1)
    rec = fit.to_dict()
    assert rec["x_unit"].startswith("PFLOPs") and rec["E"] == 4.5 and rec["E_mode"] == "fixed"
    assert rec["alpha_ci"][0] < rec["alpha_ci"][1] and rec["ci"]["bootstrap_samples"] == 50
    assert rec["n_points"] == len(rec["frontier_points"]) and rec["holdout"]["k"] == 1
    xs = [p["x"] for p in rec["frontier_points"]]
    assert xs == sorted(xs) and min(xs) >= 30 * (1 - 1e-9)
    assert isinstance(pd.DataFrame(rec["frontier_points"]), pd.DataFrame)
