"""Laws per tokenizer and the best tokenizer per size: a planted identical pair of
tokenizers gives identical laws and no crossover; a planted pair whose laws cross gives the
crossover where it was planted; bits per image as a fitted loss."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.fitting import fit_study
from analysis.settings import FitSettings
from analysis.synthetic import study_table
from analysis.tokenizer import add_bits_per_image

SIZES = [2e8, 4e8, 8e8, 1.6e9, 3.2e9, 6.4e9]


def _two_tokenizers(a: pd.DataFrame, b: pd.DataFrame, head: int = 0) -> pd.DataFrame:
    """Tokenizers v256 and v512 at the same depths; `head`: v512's extra parameters (a
    larger vocabulary widens the output layer, so one depth has two N)."""
    depth = {n: d for d, n in enumerate(sorted(a["params"].unique()), start=1)}
    a = a.assign(**{"grid.tokenizer": "v256", "run": "v256-" + a["run"]})
    b = b.assign(**{"grid.tokenizer": "v512", "run": "v512-" + b["run"]})
    table = pd.concat([a, b], ignore_index=True)
    table["grid.depth"] = table["params"].map(depth)
    table.loc[table["grid.tokenizer"] == "v512", "params"] += head
    return table


def test_a_planted_identical_pair_gives_identical_laws_and_no_crossover():
    one = study_table(SIZES, sigma=0.01, seed=3, evals=12)
    table = _two_tokenizers(one, one.copy())
    settings = FitSettings(metrics=("ce_avg",), irreducible="fit", bootstrap=50)
    fit = fit_study(table, settings)
    by_label = {}
    for rec in fit.records:
        by_label.setdefault(rec["against"], {})[rec["group_label"]] = rec
    for against, recs in by_label.items():
        assert set(recs) == {"tokenizer=v256", "tokenizer=v512"}
        a, b = recs["tokenizer=v256"], recs["tokenizer=v512"]
        for key in ("alpha", "beta", "E", "alpha_ci", "beta_ci"):
            assert a[key] == b[key], (against, key)
    best = fit_study(
        table,
        FitSettings(metrics=("ce_avg",), irreducible="fit", bootstrap=50, best_over="tokenizer"),
    )
    assert [c["crossovers"] for c in best.crossovers] == [[], []]
    laws = best.crossovers[0]["laws"]
    assert laws[0]["alpha"] == laws[1]["alpha"] and laws[0]["E"] == laws[1]["E"]


def test_a_planted_crossing_is_found_near_where_it_was_planted():
    # tokenizer B's reducible loss is A's times (N / N*)^-0.15: worse below N*, better above
    one = study_table(SIZES, sigma=0.005, seed=4, evals=12)
    E = 5.0  # the paper's E of ce_avg, the study table's floor
    n_star = 1.2e9
    other = one.copy()
    other["ce_avg"] = E + (one["ce_avg"] - E) * (one["params"] / n_star) ** -0.15
    table = _two_tokenizers(one, other, head=4_000_000)
    fit = fit_study(
        table,
        FitSettings(
            metrics=("ce_avg",), against=("N",), irreducible=E, bootstrap=200, best_over="tokenizer"
        ),
    )
    (rec,) = fit.crossovers
    (c,) = rec["crossovers"]
    assert (c["below"], c["above"]) == ("v256", "v512") and c["inside_measured_range"]
    assert c["x_raw"] == pytest.approx(n_star, rel=0.1)
    assert c["ci_raw"][0] < n_star < c["ci_raw"][1]
    # the picks per size agree: v256 below N*, v512 above
    (law,) = [r for r in fit.records if r["against"] == "N"]
    picks = law["best_over"]["picked"]
    assert len(picks) == len(SIZES)  # one per depth, both tokenizers its candidates
    assert all(len(p["candidates"]) == 2 for p in picks)
    assert all(p["value"] == ("v256" if p["params"] < n_star else "v512") for p in picks)


def test_bits_per_image_is_fitted_as_a_loss():
    one = study_table(SIZES, sigma=0.005, seed=5, evals=12)
    # L = 30 tokens per image: bits = ce_avg * 30 / ln 2, so its E is 30 / ln 2 times ce's
    one = add_bits_per_image(one.assign(images=one["tokens"] / 30))
    ce = fit_study(one, FitSettings(metrics=("ce_avg",), irreducible="fit", bootstrap=0))
    bits = fit_study(one, FitSettings(metrics=("bits_per_image",), irreducible="fit", bootstrap=0))
    for a, b in zip(ce.records, bits.records):
        assert b["E"] == pytest.approx(a["E"] * 30 / math.log(2), rel=1e-3)
        assert b["alpha"] == pytest.approx(a["alpha"], abs=1e-3)
    assert np.isfinite(bits.records[0]["E"]) and bits.records[0]["E"] > 0


def test_the_crossover_interval_covers_with_E_fitted_per_tokenizer():
    """The fit's own path: E fitted per tokenizer and refitted in every bootstrap draw. Two
    tokenizers drawn independently (1% noise), B's reducible loss A's times (N / N*)^-0.15."""
    E, n_star = 5.0, 1.2e9
    hits = reps = 0
    for r in range(40):
        one = study_table(SIZES, sigma=0.01, seed=1000 + r, evals=12)
        two = study_table(SIZES, sigma=0.01, seed=5000 + r, evals=12)
        two["ce_avg"] = E + (two["ce_avg"] - E) * (two["params"] / n_star) ** -0.15
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_study(
                _two_tokenizers(one, two),
                FitSettings(
                    metrics=("ce_avg",),
                    irreducible="fit",
                    bootstrap=100,
                    best_over="tokenizer",
                    seed=r,
                ),
            )
        (rec,) = [c for c in fit.crossovers if c["against"] == "N"]
        (c,) = rec["crossovers"]
        assert (c["below"], c["above"]) == ("v256", "v512") and c["ci_raw"] is not None
        reps += 1
        hits += c["ci_raw"][0] <= n_star <= c["ci_raw"][1]
    # 95% intervals: with a true coverage of 0.95, fewer than 35 of 40 has probability < 2%
    assert hits >= 35, f"coverage {hits}/{reps}"
