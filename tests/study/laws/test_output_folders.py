"""Each fit view writes its own folder, a rerun replaces only that folder, and --optimal-for
answers from the saved joint fit and its bootstrap draws instead of refitting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.jointlaw import JointLaw
from analysis.synthetic import joint_law_table
from contracts.atomic import replacing_folder
from contracts.draws import read_draws
from contracts.optimal import read_optimal
from scaling.study.laws.fit import run
from scaling.study.laws.folders import optimal_folder_name
from tests.analysis.test_axes import grid_table

QUICK = [
    "--set",
    "against=[N]",
    "--set",
    "metrics=[ce_avg]",
    "--set",
    "bootstrap=0",
    "--no-plots",
    "--set",
    "irreducible=none",
]


def test_the_two_lr_views_keep_their_own_folders(tmp_path):
    path = tmp_path / "grid.csv"
    grid_table().to_csv(path, index=False)
    per_lr = run([str(path), *QUICK])
    best = run([str(path), *QUICK, "--set", "best_over=lr"])
    plain, picked = tmp_path / "grid_fit", tmp_path / "grid_fit-best-over-lr"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "grid.csv",
        "grid_fit",
        "grid_fit-best-over-lr",
    ]
    # each folder holds its own view: one law per lr there, the picked runs here
    assert {f["group_label"] for f in per_lr["fits"]} == {"lr=0.001", "lr=0.003"}
    assert json.loads((plain / "fits.json").read_text())["fits"][0].get("best_over") is None
    assert json.loads((picked / "fits.json").read_text())["fits"][0]["best_over"]["axis"]
    assert best["fits"][0]["best_over"]["axis"] == "optim.base_lr"

    # a rerun replaces its own folder whole (a file it no longer writes goes) and no other
    (plain / "left_by_an_older_version.txt").write_text("stale")
    before = (picked / "fits.json").read_bytes()
    run([str(path), *QUICK])
    assert not (plain / "left_by_an_older_version.txt").exists()
    assert (plain / "fits.json").exists() and (picked / "fits.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


TRUE = JointLaw(E=1.8, A=60.0, alpha=0.34, B=80.0, beta=0.28)
JOINT = ["--set", "metrics=[ce_avg]", "--no-plots", "--dataset-images", "1000"]


def test_optimal_for_reuses_the_saved_joint_fit_and_its_draws(tmp_path, capsys):
    path = tmp_path / "jl.csv"
    joint_law_table(
        TRUE, np.geomspace(1e4, 1e6, 6), np.geomspace(3e5, 3e7, 5), seed=3, tokens_per_image=30
    ).to_csv(path, index=False)
    fitted = run([str(path), "--set", "law=nd", "--set", "bootstrap=20", *JOINT])
    joint = tmp_path / "jl_fit-nd"
    saved = (joint / "fits.json").read_bytes()
    assert len(read_draws(joint / "draws.json").draws["ce_avg"]) == 20
    capsys.readouterr()

    answer = run([str(path), "--optimal-for", "1e17", "--set", "bootstrap=20", *JOINT])
    err = capsys.readouterr().err
    assert "reused the joint fit" in err and "fitting" not in err
    assert (joint / "fits.json").read_bytes() == saved  # not refitted, not rewritten
    folder = tmp_path / "jl_optimal-1e17"
    assert read_optimal(folder / "optimal.json").as_dict() == answer
    assert "nearest depth" in (folder / "optimal.md").read_text()
    # the same N*, D* and intervals the fresh fit computed at 1e17 with its draws in memory
    budgets = fitted["joint"][0]["optimal"]["budgets"]
    j = budgets["C"].index(1e17)
    rep = answer["optimal_for"]
    assert rep["N"] == budgets["N"][j] and rep["D"] == budgets["D"][j]
    assert list(rep["N_ci"]) == list(budgets["N_ci"][j])
    assert list(rep["D_ci"]) == list(budgets["D_ci"][j])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jl.csv", "jl_fit-nd", "jl_optimal-1e17"]

    # other settings than the saved fit's: it is refitted (and saved) first, not reused
    run([str(path), "--optimal-for", "1e17", "--set", "bootstrap=10", *JOINT])
    assert "fitting the joint law into" in capsys.readouterr().err
    assert len(read_draws(joint / "draws.json").draws["ce_avg"]) == 10


@pytest.mark.parametrize(
    "budget, name", [(1e13, "optimal-1e13"), (2.5e14, "optimal-2.5e14"), (123456, "optimal-1.23e5")]
)
def test_optimal_folder_names(budget, name):
    assert optimal_folder_name(budget) == name


def test_a_failed_write_keeps_the_previous_folder(tmp_path):
    folder = tmp_path / "fit"
    folder.mkdir()
    (folder / "fits.json").write_text("the earlier result")
    with pytest.raises(RuntimeError), replacing_folder(folder) as stage:
        (stage / "fits.json").write_text("half")
        raise RuntimeError("the fit failed midway")
    assert (folder / "fits.json").read_text() == "the earlier result"
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]
