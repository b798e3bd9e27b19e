"""Two studies compared (`scaling.fit A B`), bootstrap bands and hold-out drawn in the figures:
checked on tables drawn from known laws with noise."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from analysis.compare import compare_fits, exponent_difference, law_band
from analysis.paper import PAPER_LAWS
from analysis.powerlaw import fit_vs_n
from analysis.results import prepare
from analysis.synthetic import final_points_table, paper_sizes
from contracts.compare import read_compare
from scaling.study.laws.fit import main

LAWS_N = {law.metric: law for law in PAPER_LAWS if law.against == "N"}


def _table(alpha_scale: float = 1.0, seed: int = 0, sigma: float = 0.02):
    laws = {m: dataclasses.replace(law, alpha=law.alpha * alpha_scale) for m, law in LAWS_N.items()}
    return final_points_table(sizes=paper_sizes(), sigma=sigma, seed=seed, laws=laws), laws


def _fit(table, seed: int, metric: str = "ce_last"):
    prepared = prepare(table, ("ce_last",), "exact", source="synthetic")
    return fit_vs_n(prepared, metric, irreducible="paper", bootstrap=400, seed=seed)


def test_a_real_difference_of_exponents_is_found_and_none_is_invented():
    a_table, a_laws = _table(1.0, seed=1)
    b_table, b_laws = _table(1.3, seed=2)  # B's exponent is 30% steeper
    c_table, _ = _table(1.0, seed=3)  # C: A's law, other noise
    a, b, c = _fit(a_table, 0), _fit(b_table, 1), _fit(c_table, 2)
    truth = b_laws["ce_last"].alpha - a_laws["ce_last"].alpha  # -0.069
    d = exponent_difference(a, b)
    assert d.delta == pytest.approx(b.law.alpha - a.law.alpha)
    assert d.delta_ci[0] <= truth <= d.delta_ci[1]
    assert d.differs and d.share_below_zero > 0.975 and d.draws == 400
    same = exponent_difference(a, c)
    assert same.delta_ci[0] <= 0 <= same.delta_ci[1] and same.differs is False
    # the interval of the difference is wider than either study's own interval
    assert d.delta_ci[1] - d.delta_ci[0] > max(np.diff(a.alpha_ci)[0], np.diff(b.alpha_ci)[0])
    with pytest.raises(ValueError, match="cannot compare"):
        exponent_difference(a, dataclasses.replace(a, metric="ce_avg"))


def test_band_holds_the_law_and_widens_away_from_the_data():
    table, laws = _table(1.0, seed=4)
    fit = _fit(table, 0)
    x = fit.points["x"].to_numpy()
    xs = np.geomspace(x.min() / 30, x.max() * 30, 60)
    lo, hi = law_band(fit, xs)
    est = fit.law.predict(xs)
    assert np.all(lo <= est + 1e-12) and np.all(est <= hi + 1e-12)
    inside = (xs >= x.min()) & (xs <= x.max())
    true = laws["ce_last"].predict(xs)
    assert np.mean((lo[inside] <= true[inside]) & (true[inside] <= hi[inside])) > 0.8
    width = np.log(hi - laws["ce_last"].E) - np.log(lo - laws["ce_last"].E)
    middle = np.argmin(np.abs(np.log(xs) - np.log(x).mean()))
    assert width[0] > width[middle] and width[-1] > width[middle]
    assert law_band(dataclasses.replace(fit, samples=None), xs) is None


def test_cli_compares_two_studies(tmp_path, capsys):
    _table(1.0, seed=1)[0].to_csv(tmp_path / "baseline.csv", index=False)
    _table(1.3, seed=2)[0].to_csv(tmp_path / "new_tokenizer.csv", index=False)
    argv = [
        str(tmp_path / "baseline.csv"),
        str(tmp_path / "new_tokenizer.csv"),
        "--set",
        "against=[N]",
        "--set",
        "irreducible=paper",
        "--set",
        "bootstrap=200",
        "--set",
        "holdout=2",
        "--no-plots",
    ]
    assert main(argv) == 0
    out = tmp_path / "compare_baseline_vs_new_tokenizer"
    doc = read_compare(out / "compare.json")
    assert [d.metric for d in doc.differences] == ["ce_avg", "ce_last", "err_avg", "err_last"]
    assert doc.a.bootstrap_seed == 0 and doc.b.bootstrap_seed == 1
    for d in doc.differences:  # every law's exponent is 30% steeper in B
        truth = 0.3 * LAWS_N[d.metric].alpha
        assert d.delta_ci is not None and d.delta_ci[0] <= truth <= d.delta_ci[1], d
    for study in ("baseline", "new_tokenizer"):
        fits = json.loads((out / study / "fits.json").read_text())
        assert fits["settings"]["holdout"] == 2 and fits["settings"]["bootstrap"] == 200
    assert not (out / "compare_vs_N.png").exists()  # --no-plots (figures: the test below)
    printed = capsys.readouterr().out
    assert "| ce_last | N |" in printed and (out / "compare.md").read_text() in printed

    assert main([str(tmp_path / "baseline.csv")] * 2) == 2
    assert "the same study" in capsys.readouterr().err
    assert (
        main([str(tmp_path / "baseline.csv"), str(tmp_path / "b.csv"), str(tmp_path / "c.csv")])
        == 2
    )
    assert "give one study to fit, or two to compare; got 3" in capsys.readouterr().err
    assert main([str(tmp_path / "baseline.csv"), str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv: no such runs directory" in capsys.readouterr().err


def test_figures_show_band_holdout_and_fitted_E():
    from analysis.plots import plot_compare, plot_vs_n

    table, _ = _table(1.0, seed=5)
    prepared = prepare(table, ("ce_last", "err_last"), "exact", source="synthetic")
    fits = [
        fit_vs_n(prepared, "ce_last", irreducible="fit", bootstrap=50, holdout=2),
        fit_vs_n(prepared, "err_last", bootstrap=0),
    ]
    fig = plot_vs_n(fits)
    ax_ce, ax_err = fig.axes[0], fig.axes[1]
    assert ax_ce.get_ylabel().endswith(f"- E  (E = {fits[0].law.E:.3g}, fitted)")
    labels = [t.get_text() for t in ax_ce.get_legend().get_texts()]
    assert any("bootstrap band, 50 draws" in t for t in labels)
    assert any("fit without the 2 largest" in t for t in labels)
    assert any("held-out points" in t for t in labels)
    assert len(ax_ce.collections) == 1  # the band
    assert ax_err.get_ylabel() == "token error rate, last scale"  # E = 0: nothing subtracted
    assert len(ax_err.collections) == 0  # no bootstrap, no band
    fig2 = plot_compare(fits[:1], fits[:1], "N", ("a", "b"))
    assert len(fig2.axes[0].collections) == 2  # one band per study
    assert [len(compare_fits(fits, fits))] == [2]
