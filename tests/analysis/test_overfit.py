"""Data-limited runs (analysis.overfit): a rise of K standard errors, checked on simulated
paper-scale studies (12 sizes, 24 evaluations) with test noise of the recorded size."""

from __future__ import annotations

import numpy as np

from analysis.overfit import METRICS, K, check_curve, data_limited_runs
from analysis.synthetic import study_table

REL_SE = 0.0005  # 0.05% of the metric: the order of a 50,000-image test set's sampling error


def _study(seed: int, flat_end: bool = False, rise: float = 0.0, rising=()) -> object:
    """A noise-free paper-scale study, `rising` runs' ce_avg turned up by `rise` over their
    last 3 evaluations, then noise of sd se = REL_SE x value on every metric (se recorded)."""
    table = study_table(seed=seed, sigma=0.0)
    rng = np.random.default_rng(seed)
    table["train_loss"] = table["ce_avg"] - 0.1  # falls all along
    runs = table["run"].to_numpy()
    for m in METRICS:
        y = table[m].to_numpy().copy()
        for r in np.unique(runs):
            idx = np.flatnonzero(runs == r)
            if flat_end:  # the last third of the curve flat: the hardest case for a minimum
                y[idx[16:]] = y[idx[16]]
            if r in rising and m == "ce_avg":
                y[idx[-3:]] = y[idx[-4]] * (1 + rise * np.array([1 / 3, 2 / 3, 1]))
        se = REL_SE * y
        table[m] = y + se * rng.standard_normal(len(y))
        table[f"{m}_se"] = se
    return table


def test_noise_only_curves_are_rarely_flagged():
    flagged = curves = 0
    for s in range(42):  # 504 runs, each watched on 4 metrics
        table = _study(s, flat_end=s % 2 == 1)
        flagged += len(data_limited_runs(table))
        curves += table["run"].nunique()
    assert curves >= 500
    assert flagged < 0.01 * curves, (flagged, curves)


def test_end_of_run_rise_at_the_three_largest_sizes_is_flagged():
    largest = ("s09", "s10", "s11")
    for s in range(5):
        flags = data_limited_runs(_study(100 + s, rise=0.015, rising=largest))
        assert set(flags) == set(largest), (s, sorted(flags))
        assert all(f["metric"] == "ce_avg" for f in flags.values())
        assert all(abs(f["rise"] - 0.015) < 0.003 for f in flags.values())


def test_the_rule_by_hand():
    steps = [1, 2, 3, 4, 5]
    se = [0.01] * 5
    train = [3.0, 2.5, 2.0, 1.9, 1.8]
    # minimum 2.0 at step 3; 2.0 + 4 * sqrt(2) * 0.01 = 2.0566: two evaluations above it
    assert check_curve(steps, [3.0, 2.5, 2.0, 2.06, 2.07], train, se) is not None
    # only one above it (2.05 is below the threshold): not flagged
    assert check_curve(steps, [3.0, 2.5, 2.0, 2.05, 2.07], train, se) is None
    # training loss not below its value at the minimum: a diverging run, not overfitting
    assert check_curve(steps, [3.0, 2.5, 2.0, 2.06, 2.07], [3.0, 2.5, 2.0, 2.1, 2.2], se) is None
    # a larger test set (smaller se) makes a 1.5% rise count; a smaller one does not
    y = [3.0, 2.5, 2.0, 2.03, 2.03]
    assert check_curve(steps, y, train, [0.001] * 5) is not None
    assert check_curve(steps, y, train, [0.01] * 5) is None
    assert K == 4.0  # docs/fitting.md quotes this k with its false-positive rate
