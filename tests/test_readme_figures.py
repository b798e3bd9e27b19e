"""The spread statistics of scripts/figures/readme_figures.py (the README's value +- spread)."""

from __future__ import annotations

import importlib.util

import numpy as np

from tests.paths import ROOT


def _script():
    path = ROOT / "scripts" / "figures" / "readme_figures.py"
    spec = importlib.util.spec_from_file_location("readme_figures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spread_is_mean_sample_sd_and_range():
    # 1, 2, 6: mean 3, deviations -2, -1, 3, sum of squares 14, sd sqrt(14 / 2) = 2.6458
    assert _script().spread([1.0, 2.0, 6.0], 3) == "3.000 \u00b1 2.646 (1.000 to 6.000)"


def test_sd_interval_holds_the_true_sd_95_percent_of_the_time():
    """Simulated: 20,000 samples of 3 normal draws (sd 0.7); the interval [lo s, hi s] must hold
    0.7 in 95% of them (binomial sd 0.15%), and its factors match the chi-square table
    (2 degrees of freedom: 0.0506 and 7.378)."""
    lo, hi = _script().sd_interval_factors(3)
    assert abs(lo - (2 / 7.3778) ** 0.5) < 1e-3 and abs(hi - (2 / 0.050636) ** 0.5) < 1e-2
    rng = np.random.default_rng(0)
    s = rng.normal(5.0, 0.7, size=(20_000, 3)).std(axis=1, ddof=1)
    held = np.mean((lo * s <= 0.7) & (0.7 <= hi * s))
    assert abs(held - 0.95) < 0.006
