"""`python -m scaling.fit --set law=nd-repeat`: from a table with unique_tokens and from run
directories whose unique tokens come from their token store (and data.subset); R* and its
interval in fits.json through the contract; the not-identified case printed as n/a."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from analysis.repeatlaw import RepeatLaw
from analysis.synthetic import repeat_law_table
from contracts.fits import read_fits
from scaling.study.laws.fit import main, run

TRUE = RepeatLaw(E=1.8, A=60.0, alpha=0.34, B=80.0, beta=0.28, R_star=15.0)
SETS = ["--set", "law=nd-repeat", "--set", "metrics=[ce_avg]", "--set", "bootstrap=40"]


def _table(**kw):
    return repeat_law_table(
        TRUE, np.geomspace(1e4, 1e6, 4), [3e5, 3e6], [1, 4, 16, 64], seed=5, **kw
    )


def test_table_fit_writes_r_star_with_its_interval(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    _table().drop(columns=["views"]).to_csv(path, index=False)
    out = tmp_path / "fit"
    doc = run([str(path), *SETS, "--out", str(out)])
    rec = doc["joint"][0]
    assert rec["law"] == "nd-repeat" and rec["D_unit"] == "training tokens"
    lo, hi = rec["R_star_ci"]
    assert lo <= 15.0 <= hi and abs(rec["R_star"] - 15.0) < 3
    assert rec["V_star"] is None and "K = 1" in rec["V_star_note"]
    law = read_fits(out / "fits.json").joint_laws()["ce_avg"]
    assert law.record["R_star"] == rec["R_star"] and law.alpha == rec["alpha"]
    printed = capsys.readouterr().out
    assert "R* = " in printed and "V* = n/a (not fitted: every run has K = 1" in printed
    assert (out / "effective_data_ce_avg.png").stat().st_size > 10_000
    draws = json.loads((out / "draws.json").read_text())["draws"]["ce_avg"]
    assert len(draws) >= 30 and all(d["R_star"] > 0 for d in draws)


def test_barely_repeated_runs_print_n_a_with_the_reason(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    repeat_law_table(TRUE, np.geomspace(1e4, 1e6, 4), [3e5, 3e6], [0.25, 0.5, 1, 2], seed=6).to_csv(
        path, index=False
    )
    doc = run([str(path), *SETS, "--no-plots", "--out", str(tmp_path / "f")])
    assert doc["joint"][0]["R_star"] is None
    assert "R* = n/a (not identified: the most repeated run" in capsys.readouterr().out


def _store(path: Path, images: int, views: int) -> Path:
    path.mkdir(parents=True)
    split = {"count": images * views, "images": images, "views": views, "flip": False}
    meta = {"format": "var-token-store/1", "L": 30, "splits": {"train": split}}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def test_run_directories_take_unique_tokens_from_the_store_and_subset(tmp_path):
    """U = images of the split (or data.subset: a count, or a fraction below 1) x L."""
    full = _store(tmp_path / "store_full", 100_000, 1)  # U = 3e6 tokens
    runs = tmp_path / "runs"
    table = _table().drop(columns=["views", "images"])
    for i, row in enumerate(table.itertuples()):
        d = runs / f"r{i:02d}"
        d.mkdir(parents=True)
        subset = {3e5: (10_000 if i % 2 else 0.1), 3e6: None}[row.unique_tokens]
        data = {"store": str(full), "train_split": "train", "subset": subset}
        (d / "config.yaml").write_text(yaml.safe_dump({"data": data}))
        rec = {
            "run": d.name,
            "params": row.params,
            "step": 1,
            "tokens": row.tokens,
            "flops": row.flops,
            "ce_avg": row.ce_avg,
            "eval": "full",
        }
        (d / "metrics.jsonl").write_text(json.dumps(rec) + "\n")
    doc = run([str(runs), *SETS, "--no-plots"])
    pts = {p["run"]: p for p in doc["joint"][0]["points"]}
    for i, row in enumerate(table.itertuples()):
        assert pts[f"r{i:02d}"]["U"] == pytest.approx(row.unique_tokens)
    assert abs(doc["joint"][0]["R_star"] - 15.0) < 3
    assert (runs / "fit-nd-repeat" / "fits.json").exists()


def test_unreadable_store_is_a_located_input_error(tmp_path, capsys):
    runs = tmp_path / "runs"
    for i in range(2):
        d = runs / f"r{i}"
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump({"data": {"store": "/nonexistent"}}))
        rec = {"params": 1e4 * (i + 1), "step": 1, "tokens": 1e6, "flops": 1e12, "ce_avg": 3.0}
        (d / "metrics.jsonl").write_text(json.dumps({**rec, "eval": "full"}) + "\n")
    assert main([str(runs), *SETS, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "r0" in err and "/nonexistent" in err and "unique_tokens" in err


def test_subset_fallback_follows_the_trainers_rule_and_names_a_bad_value():
    """Older runs without unique_tokens: U's image count is the trainer's own subset rule
    (a fraction rounds to at least one image); a value outside the split names run and value."""
    from analysis.results import ResultsError
    from scaling.study.laws.fit_repeat import subset_images

    assert subset_images(None, 100, "d2") == 100
    assert subset_images(0.25, 100, "d2") == 25  # 0.25 x 100, by hand
    assert subset_images(0.001, 100, "d2") == 1  # as DataConfig.subset_images trains
    for bad, why in ((200, "not within the split's 100 images"), ("x", "is not a number")):
        with pytest.raises(ResultsError, match=why) as e:
            subset_images(bad, 100, "d2-n200")
        assert "run d2-n200" in str(e.value)
