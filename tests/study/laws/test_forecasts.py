"""Backtests, forecasts of running runs and the registry through the CLIs, on a study whose
curves are drawn from a known law (tests/study/laws/curve_study.py)."""

from __future__ import annotations

import json

import pytest

from analysis import registry
from scaling.study.laws.fit import run as fit_run
from scaling.study.run.status import collect, discover, render_many
from tests.study.laws.curve_study import SIZES, truth_final, write_study


def _fit(study, *args: str):
    """`scaling.fit` on the study's ce_avg with E fitted and no bootstrap (`args` added)."""
    flags = ["bootstrap=0", "irreducible=fit", "metrics=[ce_avg]"]
    return fit_run([str(study), *args, *(x for f in flags for x in ("--set", f)), "--no-plots"])


def test_backtest_writes_tables_and_scored_registry(tmp_path):
    study = write_study(tmp_path / "s")
    _fit(study, "--set", "backtest=true")
    doc = json.loads((study / "fit" / "backtest.json").read_text())
    lra = doc["curve"]["rows"]["lra"]
    assert len(lra) == 6
    for row, params in zip(lra, SIZES, strict=True):
        # the forecast of each run's end from its first 25% is close to the law's own value
        assert abs(row["predicted"] - truth_final(params)) < 0.01
    assert {r["against"] for r in doc["power"]} == {"N", "Cmin"}
    assert "## Backtest" in (study / "fit" / "fits.md").read_text()
    records = registry.read(study / registry.FILE)
    forecasts = [r for r in records if isinstance(r, registry.ForecastRecord)]
    assert len(forecasts) == len(doc["power"]) + 3 * 6  # three curve laws
    assert registry.pending(records) == []  # a backtest knows its observed values


def test_a_running_runs_forecast_is_scored_when_it_finishes(tmp_path):
    study = write_study(tmp_path / "s", running={"d6": 150})
    _fit(study)
    path = study / registry.FILE
    [f] = registry.pending(registry.read(path))
    assert f.kind == "curve" and f.target.run == "d6" and f.target.step == 600
    assert f.interval[0] < truth_final(SIZES[-1]) < f.interval[1]
    written = path.read_text()

    # status shows the forecast and the band while it runs, and writes it to TensorBoard
    text = render_many(discover([study]))
    assert "forecast d6 (ce_avg, lra law): final" in text
    assert list((study / "d6" / "forecast").glob("events.out.tfevents.*"))

    write_study(tmp_path / "s")  # the same draws, to the end: d6 has finished
    _fit(study)
    after = path.read_text()
    assert after.startswith(written)  # nothing rewritten, only appended
    [(ff, s)] = registry.scored(registry.read(path))
    assert ff.id == f.id
    observed = [
        json.loads(line)
        for line in (study / "d6" / "metrics.jsonl").read_text().split("\n")
        if line
    ][-1]["ce_avg"]
    assert s.observed == pytest.approx(observed)
    assert s.error == pytest.approx(f.predicted - observed)
    report = collect(discover([study]))
    assert report[0]["forecasts"]["scored"][0]["run"] == "d6"
    assert "scored forecasts (s, forecasts.jsonl): 1" in render_many(discover([study]))


def test_backtest_forecasts_each_decay_branch_from_its_parents_constant_phase(tmp_path):
    # WSD runs with decay branches at 25% and 50%, drawn from the lra law with noise 0.003:
    # each branch's end, forecast from its parent's constant phase with the shared parameters
    # of the other sizes (runs and branches), lies near the law's own value
    study = write_study(tmp_path / "s", branches=(0.25, 0.5))
    _fit(study, "--set", "backtest=true")
    doc = json.loads((study / "fit" / "backtest.json").read_text())
    rows = {r["run"]: r for r in doc["branch"]["rows"]["lra"]}
    assert len(rows) == 12
    held = 0
    for i, params in enumerate(SIZES, start=1):
        for at in (0.25, 0.5):
            r = rows[f"d{i}-b{at:g}"]
            truth = truth_final(params, branch=at)
            assert r["prefix_step"] <= 480  # the constant phase only: 600 steps, 20% cool-down
            assert abs(r["predicted"] - truth) < 0.01
            held += r["lo"] < truth < r["hi"]
    assert held >= 11
    # from the evaluations made before each fork (what is known when a branch starts)
    fork = doc["branch"]["at_fork"]["rows"]["lra"]
    assert len(fork) == 12
    assert all(r["prefix_step"] <= 0.5 * 600 for r in fork)
    for r in fork:
        depth, at = r["run"].split("-b")
        assert abs(r["predicted"] - truth_final(SIZES[int(depth[1:]) - 1], branch=float(at))) < 0.02
    # the measured gain exists where the parent was evaluated on both sides of a branch's end
    measured = [r for r in rows.values() if r["gain_observed"] is not None]
    assert measured and all(r["run"].endswith("-b0.25") for r in measured)
    assert "Decay branches" in (study / "fit" / "backtest.md").read_text()
