"""Tidy results table: run directories, user tables, cleaning and bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.results import (
    ResultsError,
    ResultsWarning,
    final_rows,
    load_results,
    prepare,
    read_runs,
    read_table,
)
from contracts import ContractWarning


def _line(run: str, step: int, params: int, ce: float, eval_kind: str = "full") -> dict:
    return {
        "run": run,
        "depth": 6,
        "params": params,
        "step": step,
        "images": step * 8,
        "tokens": step * 8 * 680,
        "flops": 1e12 * step,
        "flops_6nd": 6.0 * params * step * 8 * 680,
        "wall_s": 1.0 * step,
        "train_loss": ce + 0.1,
        "ce_avg": ce,
        "ce_last": ce - 0.5,
        "err_avg": 0.9,
        "err_last": 0.95,
        "ce_by_scale": [ce - 1, ce, ce + 1],
        "err_by_scale": [0.5, 0.8, 0.99],
        "eval": eval_kind,
        "eval_images": 100,
    }


def _write_run(root: Path, run: str, lines: list[dict], extra_text: str = "") -> Path:
    d = root / run
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(
        "model:\n  depth: 6\n  patch_nums: [1, 2, 3]\noptim:\n  base_lr: 0.0001\nseed: 3\n"
    )
    text = "".join(json.dumps(x) + "\n" for x in lines) + extra_text
    (d / "metrics.jsonl").write_text(text)
    return d


def test_read_runs_builds_tidy_table_and_skips_corrupt_line(tmp_path):
    _write_run(
        tmp_path,
        "d6",
        [_line("d6", 10, 1000, 8.0), _line("d6", 20, 1000, 7.0)],
        extra_text='{"run": "d6", "step": 30, "ce_av',
    )  # truncated by a crash
    _write_run(
        tmp_path,
        "d8",
        [
            _line("d8", 10, 2000, 7.5),
            _line("d8", 15, 2000, 7.2, "subset"),
            _line("d8", 20, 2000, 6.5),
        ],
    )
    with pytest.warns(ContractWarning, match=r"d6/metrics\.jsonl:3: skipped a torn last line"):
        table = read_runs(tmp_path)
    assert list(table["run"]) == ["d6", "d6", "d8", "d8"]  # subset row left out
    assert list(table["step"]) == [10, 20, 10, 20]
    # config scalars flattened with dotted names; lists are not columns
    assert (table["model.depth"] == 6).all() and (table["optim.base_lr"] == 1e-4).all()
    assert (table["seed"] == 3).all() and "model.patch_nums" not in table.columns
    # per-scale columns from the lists
    assert list(table.loc[0, ["ce_s0", "ce_s1", "ce_s2"]]) == [7.0, 8.0, 9.0]
    assert list(table.loc[0, ["err_s0", "err_s1", "err_s2"]]) == [0.5, 0.8, 0.99]
    assert "ce_by_scale" not in table.columns

    with pytest.warns(ContractWarning):
        with_subset = read_runs(tmp_path, include_subset=True)
    assert list(with_subset["step"]) == [10, 20, 10, 15, 20]


def test_non_object_or_corrupt_middle_line_is_a_located_error(tmp_path):
    _write_run(tmp_path, "r", [_line("r", 1, 10, 8.0)], extra_text="[1, 2]\n")
    with pytest.raises(ResultsError, match=r"r/metrics\.jsonl:2: not a JSON object"):
        read_runs(tmp_path)
    other = tmp_path / "other"
    _write_run(other, "s", [_line("s", 1, 10, 8.0)], extra_text='{"step": 2, "ce\n{"step": 3}\n')
    with pytest.raises(ResultsError, match=r"s/metrics\.jsonl:2: unreadable line"):
        read_runs(other)


def test_empty_runs_dir_is_an_error(tmp_path):
    with pytest.raises(ResultsError, match="no run directories with a metrics.jsonl"):
        read_runs(tmp_path)


def test_csv_and_parquet_round_trip(tmp_path):
    df = pd.DataFrame(
        {
            "run": ["a", "a", "b"],
            "params": [10, 10, 20],
            "step": [1, 2, 1],
            "flops": [1e12, 2e12, 3e12],
            "ce_avg": [8.0, 7.0, 7.5],
        }
    )
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.parquet"):
        got = load_results(tmp_path / name)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), df, check_dtype=False)
    with pytest.raises(ResultsError, match="unknown table format"):
        read_table(tmp_path / "t.txt")


def test_prepare_names_missing_column():
    df = pd.DataFrame({"run": ["a"], "params": [10], "step": [1], "ce_avg": [8.0]})
    with pytest.raises(
        ResultsError,
        match=r"column 'flops' missing; fitting needs columns run, params, step, flops",
    ):
        prepare(df, ["ce_avg"])
    df["flops"] = 1e12
    with pytest.raises(ResultsError, match=r"columns 'ce_last', 'err_avg' missing"):
        prepare(df, ["ce_avg", "ce_last", "err_avg"])


def test_prepare_drops_nan_rows_with_count_and_rejects_non_positive():
    df = pd.DataFrame(
        {
            "run": list("aabbc"),
            "params": [10, 10, 20, 20, 30],
            "step": [1, 2, 1, 2, 1],
            "flops": [1.0, 2.0, 3.0, np.nan, 5.0],
            "ce_avg": [8.0, np.nan, 7.0, 6.0, 5.0],
        }
    )
    with pytest.warns(ResultsWarning, match=r"dropped 2 of 5 rows with NaN in flops, ce_avg"):
        out = prepare(df, ["ce_avg"])
    assert len(out) == 3 and list(out["compute"]) == [1.0, 3.0, 5.0]
    df = df.dropna()
    df.loc[df.index[1], "ce_avg"] = 0.0
    with pytest.raises(ResultsError, match=r"column 'ce_avg' has 1 non-positive values \(runs b\)"):
        prepare(df, ["ce_avg"])


def test_prepare_6nd_derived_from_tokens_and_final_rows():
    df = pd.DataFrame(
        {
            "run": ["a", "a", "b"],
            "params": [10, 10, 20],
            "step": [1, 2, 1],
            "tokens": [100, 200, 100],
            "ce_avg": [8.0, 7.0, 7.5],
        }
    )
    out = prepare(df, ["ce_avg"], compute="6nd")
    assert list(out["compute"]) == [6000.0, 12000.0, 12000.0]
    fin = final_rows(out)
    assert list(fin["run"]) == ["a", "b"] and list(fin["step"]) == [2, 1]
    with pytest.raises(ResultsError, match="compute must be one of exact, 6nd"):
        prepare(df, ["ce_avg"], compute="approx")


def test_subset_only_table_needs_include_subset(tmp_path):
    df = pd.DataFrame(
        {
            "run": ["a"],
            "params": [1],
            "step": [1],
            "flops": [1.0],
            "ce_avg": [1.0],
            "eval": ["subset"],
        }
    )
    df.to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(ResultsError, match="only subset evaluations"):
        read_table(tmp_path / "s.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_table(tmp_path / "s.csv", include_subset=True)) == 1
