"""`scaling.plan`'s repetition section: each run's D'/D and the loss repetition costs, by hand,
under the language R* (flagged as an assumption) and under a fitted nd-repeat fits.json;
the "more views" and "fewer epochs" alternatives with their worst D'/D."""

from __future__ import annotations

import json
import math

import pytest

from scaling.study.laws.plan import run
from tests.study.laws.test_plan import LAWS, _sweep

FAST = ["--replicates", "3", "--bootstrap", "0", "--no-plots"]


def _ratio(epochs: float, R_star: float) -> float:
    """D'/D of `epochs` passes over one view, by the formula: U (1 + R* (1 - e^-R/R*)) / D."""
    R = epochs - 1
    return (1 + R_star * (1 - math.exp(-R / R_star))) / epochs


def test_language_prior_is_flagged_and_priced_by_the_joint_prior(tmp_path, capsys):
    # the tests' sweep: 1000 images, batch 10, 400 steps = 4 epochs of one view; L = 14
    doc = run(
        [
            str(_sweep(tmp_path)),
            *LAWS,
            "--joint-law",
            "ce_last=3.0,40,0.3,900,0.35",
            "--alt-replicates",
            "2",
            *FAST,
        ]
    )
    rep = doc["repetition"]
    assert rep["assumed"] and rep["R_star"] == 15.4 and "ASSUMED" in rep["source"]
    d2 = next(r for r in rep["runs"] if r["run"] == "d2")
    assert d2["epochs"] == pytest.approx(4.0) and d2["views"] == 1
    assert d2["unique_tokens"] == 1000 * 14 and d2["tokens"] == 400 * 10 * 14
    assert d2["ratio_low"] == pytest.approx(_ratio(4, 15.4), rel=1e-9)
    assert d2["ratio_high"] == d2["ratio_low"]  # one view: nothing to be unsure about
    D = 400 * 10 * 14.0
    expected = 900 * ((_ratio(4, 15.4) * D) ** -0.35 - D**-0.35)
    assert d2["cost_low"] == pytest.approx(expected, rel=1e-9) and expected > 0
    out = capsys.readouterr().out
    assert "## Repetition (R* = 15.4; ASSUMED" in out
    assert f"| d2 | 4 | 1 | 4 | {_ratio(4, 15.4):.3f} |" in out
    # the alternatives against repetition: 4x the views (each view a fresh image at best:
    # then 4 epochs are one pass, D' = D) and half the epochs (2 passes)
    alts = rep["alternatives"]
    views = next(k for k in alts if k.startswith("more views"))
    assert alts[views] == f"{_ratio(4, 15.4):.2f} - 1.00"
    assert alts["fewer epochs (half, 1 seed)"] == f"{_ratio(2, 15.4):.2f}"
    assert "| worst D'/D |" in out


def test_a_fitted_r_star_is_the_prior(tmp_path, capsys):
    fits = tmp_path / "fits.json"
    record = {
        "metric": "ce_last",
        "law": "nd-repeat",
        "E": 3.0,
        "A": 40.0,
        "alpha": 0.3,
        "B": 900.0,
        "beta": 0.35,
        "R_star": 2.0,
        "R_star_ci": [1.5, 3.0],
        "V_star": None,
    }
    fits.write_text(json.dumps({"law": "nd-repeat", "joint": [record]}))
    doc = run([str(_sweep(tmp_path)), *LAWS, "--prior", str(fits), "--alt-replicates", "0", *FAST])
    rep = doc["repetition"]
    assert not rep["assumed"] and rep["R_star"] == 2.0 and rep["R_star_ci"] == [1.5, 3.0]
    assert rep["runs"][0]["ratio_low"] == pytest.approx(_ratio(4, 2.0), rel=1e-9)
    # not identified in the file: the language value, saying why
    fits.write_text(
        json.dumps(
            {"joint": [{**record, "R_star": None, "R_star_note": "not identified: too few passes"}]}
        )
    )
    doc = run([str(_sweep(tmp_path)), *LAWS, "--prior", str(fits), "--alt-replicates", "0", *FAST])
    assert doc["repetition"]["assumed"] and "too few passes" in doc["repetition"]["source"]
