"""`python -m scaling.fit --set law=nd` and `--optimal-for`: outputs, answers, bad input, no
torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.jointlaw import JointLaw
from analysis.synthetic import joint_law_table
from scaling.study.laws.fit import main, run
from tests.paths import ROOT

TRUE = JointLaw(E=1.8, A=60.0, alpha=0.34, B=80.0, beta=0.28)


@pytest.fixture(scope="module")
def table_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("jl") / "runs.csv"
    joint_law_table(
        TRUE, np.geomspace(1e4, 1e6, 6), np.geomspace(3e5, 3e7, 5), seed=3, tokens_per_image=30
    ).to_csv(path, index=False)
    return path


def test_law_nd_writes_the_joint_law_and_figures(table_path, tmp_path):
    out = tmp_path / "fit"
    doc = run(
        [
            str(table_path),
            "--set",
            "law=nd",
            "--set",
            "metrics=[ce_avg]",
            "--set",
            "bootstrap=20",
            "--out",
            str(out),
        ]
    )
    rec = doc["joint"][0]
    assert rec["form"] == "L = E + A / N^alpha + B / D^beta" and rec["D_unit"] == "training tokens"
    assert abs(rec["alpha"] - TRUE.alpha) < 0.03 and abs(rec["beta"] - TRUE.beta) < 0.04
    assert rec["alpha_ci"][0] < rec["alpha"] < rec["alpha_ci"][1] and rec["n_points"] == 30
    # compute model: the table's flops are 6 N D exactly
    assert rec["compute_model"]["k"] == pytest.approx(6.0) and rec["compute_model"][
        "gamma"
    ] == pytest.approx(1.0)
    assert rec["holdout"]["held_out_N"] == pytest.approx(1e6)
    on_disk = json.loads((out / "fits.json").read_text())
    assert on_disk["joint"][0]["alpha"] == rec["alpha"]
    assert "| ce_avg |" in (out / "fits.md").read_text()
    for name in ("isoflop_ce_avg", "optimal_ce_avg"):
        assert (out / f"{name}.png").stat().st_size > 10_000 and (out / f"{name}.pdf").exists()


def test_optimal_for_prints_size_depth_and_epochs(table_path, tmp_path, capsys):
    from var_core import counting

    doc = run(
        [
            str(table_path),
            "--optimal-for",
            "1e21",
            "--dataset-images",
            "1281167",
            "--set",
            "metrics=[ce_avg]",
            "--set",
            "bootstrap=0",
            "--no-plots",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    rep = doc["optimal_for"]
    text = capsys.readouterr().out
    assert (
        f"nearest depth: d{rep['nearest_depth']['depth']}" in text
        and "epochs of the dataset" in text
    )
    assert rep["N"] * 6 * rep["D"] == pytest.approx(1e21, rel=1e-9)  # the table's C = 6 N D
    assert rep["epochs"] == pytest.approx(rep["D"] / 30 / 1281167, rel=1e-12)

    # the nearest depth under the official rule (no model columns in this table), ImageNet store
    def n(d):
        return counting.params(depth=d)

    d = rep["nearest_depth"]["depth"]
    assert rep["nearest_depth"]["params"] == n(d)
    assert all(
        abs(math.log(n(d) / rep["N"])) <= abs(math.log(n(e) / rep["N"])) for e in (d - 1, d + 1)
    )


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--optimal-for", "-5"], "--optimal-for: the compute budget must be a positive number"),
        (["--optimal-for", "lots"], "a compute budget in FLOPs"),
        (["--set", "law=nd", "--set", "metrics=[err_avg]"], "--set law=nd fits losses"),
        (
            ["--set", "law=nd", "--set", "data_unit=images", "--dataset-images", "0"],
            "--dataset-images: must be a positive",
        ),
    ],
)
def test_bad_joint_cli_input(table_path, tmp_path, capsys, argv, words):
    with (
        pytest.raises(SystemExit)
        if "--optimal-for" in argv[:1] or "--dataset-images" in argv
        else _nothing()
    ):
        code = main(
            [
                str(table_path),
                "--no-plots",
                "--set",
                "bootstrap=0",
                "--out",
                str(tmp_path / "x"),
                *argv,
            ]
        )
        assert code == 2
    assert words in capsys.readouterr().err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_too_few_points_and_missing_store_name_the_problem(tmp_path, capsys):
    small = tmp_path / "small.csv"
    joint_law_table(TRUE, [1e4, 1e5], [1e6, 1e7], seed=0).to_csv(small, index=False)
    assert main([str(small), "--set", "law=nd", "--no-plots", "--set", "metrics=[ce_avg]"]) == 2
    assert (
        "needs more distinct (N, D) points than its 5 parameters; got 4" in capsys.readouterr().err
    )
    t = tmp_path / "t.csv"
    joint_law_table(TRUE, np.geomspace(1e4, 1e6, 3), np.geomspace(1e6, 1e7, 3), seed=0).to_csv(
        t, index=False
    )
    assert (
        main(
            [
                str(t),
                "--optimal-for",
                "1e20",
                "--no-plots",
                "--set",
                "bootstrap=0",
                "--set",
                "metrics=[ce_avg]",
            ]
        )
        == 2
    )
    assert "give the dataset size with --dataset-images" in capsys.readouterr().err
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "fit.yaml").write_text("law: joint\n")
    assert main([str(tmp_path / "runs")]) == 2
    assert "fit.yaml:1: law: must be one of 'power', 'nd'" in capsys.readouterr().err


def test_law_nd_never_imports_torch(table_path, tmp_path):
    code = (
        "import sys; from scaling.study.laws.fit import run; run([sys.argv[1], '--set', 'law=nd', "
        "'--set', 'bootstrap=3', "
        "'--set', 'metrics=[ce_avg]', '--no-plots', '--out', sys.argv[2]]); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'var_core')]; "
        "assert not bad, bad; print('NO_TORCH')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(table_path), str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "NO_TORCH" in done.stdout
