"""Studies with more axes than size: laws per axis value, each size's best value, seeds averaged.

The tables are drawn from known laws with small noise: an lr axis whose two values follow two
different laws that cross, replicated over two seeds. The expected laws, picks and averages
are computed here from those laws and the drawn values, not by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import axes
from analysis.paper import PaperLaw
from analysis.results import ResultsError, read_runs
from analysis.synthetic import final_points_table, paper_sizes
from scaling.study.laws.fit import main, run

SIZES = paper_sizes()[::2]  # 6 sizes, 16M-1.3B params
# lr 1e-3 is better for small models, 3e-3 for large ones: the laws cross at N = 0.1 B
# lr 1e-3 is better for small models, 3e-3 for large ones: (beta N)^alpha with beta = 10 cross
# at N = 0.1 B params (both are 1 there), between the third and fourth size
LAWS = {1e-3: (-0.10, 10.0), 3e-3: (-0.30, 10.0)}  # (alpha, beta)
X_CROSS = 0.1


def _laws(alpha: float, beta: float) -> dict[str, PaperLaw]:
    return {
        m: PaperLaw(m, "N", alpha, beta, 0.0, -1.0)
        for m in ("ce_avg", "ce_last", "err_avg", "err_last")
    }


def grid_table(seeds=(0, 1), sigma=0.002) -> pd.DataFrame:
    """Final points of 6 sizes x 2 lrs x len(seeds) seeds, with grid.* columns."""
    frames = []
    for k, (lr, (alpha, beta)) in enumerate(LAWS.items()):
        for seed in seeds:
            t = final_points_table(SIZES, sigma=sigma, seed=10 * k + seed, laws=_laws(alpha, beta))
            t["run"] = [f"d{i}-lr{lr:g}-s{seed}" for i in range(len(t))]
            t["grid.depth"] = np.arange(len(t))
            t["grid.optim.base_lr"] = lr
            t["grid.seed"] = seed
            frames.append(t)
    return pd.concat(frames, ignore_index=True)


def run_table(table: pd.DataFrame, *args: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.csv"
        table.to_csv(path, index=False)
        return run([str(path), "--out", str(Path(d) / "fit"), *args])


def test_one_law_per_lr_recovers_each_law(tmp_path):
    path = tmp_path / "grid.csv"
    grid_table().to_csv(path, index=False)
    doc = run(
        [
            str(path),
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
    )  # drawn with E = 0
    fits = {f["group"]["optim.base_lr"]: f for f in doc["fits"]}
    assert sorted(fits) == [1e-3, 3e-3]
    for lr, (alpha, beta) in LAWS.items():
        assert fits[lr]["alpha"] == pytest.approx(alpha, abs=0.005)
        assert fits[lr]["beta"] == pytest.approx(beta, rel=0.1)
        assert fits[lr]["group_label"] == f"lr={lr:g}"
    assert doc["axes"] == {
        "size_axes": ["depth"],
        "seed_axes": ["seed"],
        "law_axes": ["optim.base_lr"],
        "best_over": None,
        "labels": {"depth": "d", "seed": "s", "optim.base_lr": "lr"},
    }
    # --pool draws one law through both lrs: an exponent neither lr follows
    pooled = run(
        [
            str(path),
            "--set",
            "against=[N]",
            "--set",
            "metrics=[ce_avg]",
            "--set",
            "bootstrap=0",
            "--no-plots",
            "--set",
            "pool=true",
            "--out",
            str(tmp_path / "pooled"),
        ]
    )["fits"]
    assert len(pooled) == 1 and -0.28 < pooled[0]["alpha"] < -0.12


def test_best_over_lr_picks_each_sizes_best_run_and_says_which(tmp_path, capsys):
    table = grid_table()
    path = tmp_path / "grid.csv"
    table.to_csv(path, index=False)
    doc = run(
        [
            str(path),
            "--set",
            "against=[N]",
            "--set",
            "metrics=[ce_avg]",
            "--set",
            "bootstrap=0",
            "--set",
            "best_over=lr",
            "--no-plots",
        ]
    )
    (fit,) = doc["fits"]
    picked = fit["best_over"]["picked"]
    # by hand: the seed mean of each (size, lr), the lower lr wins
    means = table.groupby(["params", "grid.optim.base_lr"])["ce_avg"].mean().unstack()
    assert [p["params"] for p in picked] == sorted(SIZES.astype(int))
    for p in picked:
        row = means.loc[p["params"]]
        assert p["value"] == row.idxmin() and p["ce_avg"] == pytest.approx(row.min(), rel=1e-12)
        assert p["run"].startswith(
            f"d{list(SIZES.astype(int)).index(p['params'])}-lr{row.idxmin():g}-s0"
        )
        assert [c["value"] for c in p["candidates"]] == [row.idxmin(), row.idxmax()]
    x = SIZES / 1e9
    assert [p["value"] for p in picked] == [1e-3 if xi < X_CROSS else 3e-3 for xi in x]
    # the fitted points are the per-size minima of the two laws (up to the 0.2% noise)
    lower = np.minimum(*[(beta * x) ** alpha for alpha, beta in LAWS.values()])
    assert fit["y_min"] == pytest.approx(lower.min(), rel=0.01) and fit["y_max"] == pytest.approx(
        lower.max(), rel=0.01
    )
    printed = capsys.readouterr().out
    assert "Best run per size over `optim.base_lr`" in printed and "seed-averaged" in printed
    assert printed.count("| ce_avg | ce_avg |") == 6


def test_axis_roles_and_per_lr_fit_on_seed_means():
    table = grid_table()
    table["compute"] = table["flops"]
    roles = axes.split_axes(table)
    assert roles == axes.Axes(
        size=("grid.depth",), seed=("grid.seed",), other=("grid.optim.base_lr",)
    )
    # one lr's law is the straight line through its seed means (by hand: numpy least squares)
    doc = run_table(
        table,
        "--set",
        "against=[N]",
        "--set",
        "metrics=[ce_avg]",
        "--set",
        "bootstrap=0",
        "--no-plots",
    )
    fit = next(f for f in doc["fits"] if f["group"]["optim.base_lr"] == 3e-3)
    one = table[table["grid.optim.base_lr"] == 3e-3].groupby("params")["ce_avg"].mean()
    slope = np.polyfit(np.log(one.index.to_numpy(float) / 1e9), np.log(one.to_numpy()), 1)[0]
    assert fit["alpha"] == pytest.approx(slope, rel=1e-6)


def test_axis_names_and_wrong_axes_are_clear(tmp_path, capsys):
    table = grid_table(seeds=(0,))
    assert axes.resolve_axis(table, "optim.base_lr") == "grid.optim.base_lr"
    assert axes.resolve_axis(table, "base_lr") == "grid.optim.base_lr"
    assert axes.resolve_axis(table, "lr", {"lr": "optim.base_lr"}) == "grid.optim.base_lr"
    with pytest.raises(
        ResultsError, match="'tokenizer' is not a grid axis.*depth, optim.base_lr, seed"
    ):
        axes.resolve_axis(table, "tokenizer")
    with pytest.raises(ResultsError, match="no grid-axis columns"):
        axes.resolve_axis(
            table.drop(columns=["grid.depth", "grid.optim.base_lr", "grid.seed"]), "lr"
        )
    path = tmp_path / "grid.csv"
    table.to_csv(path, index=False)
    base = [str(path), "--set", "against=[N]", "--set", "bootstrap=0", "--no-plots"]
    assert main(base + ["--set", "best_over=depth"]) == 2
    assert "depth is a size axis" in capsys.readouterr().err
    assert main(base + ["--set", "best_over=tokenizer"]) == 2
    assert "'tokenizer' is not a grid axis" in capsys.readouterr().err
    assert main(base + ["--set", "best_by=ce_avg"]) == 2
    assert "--set best_by=ce_avg: best_by: needs best_over" in capsys.readouterr().err
    assert main(base + ["--set", "best_over=lr", "--set", "best_by=loss"]) == 2
    assert "--set best_by=loss: best_by: must be one of" in capsys.readouterr().err
    assert main(base + ["--set", "best_over=lr", "--set", "pool=true"]) == 2
    # a table that names no axis but has two runs per size: fitted together, with a warning
    plain = table.drop(columns=["grid.depth", "grid.optim.base_lr", "grid.seed"])
    plain.to_csv(tmp_path / "plain.csv", index=False)
    doc = run(
        [
            str(tmp_path / "plain.csv"),
            "--set",
            "against=[N]",
            "--set",
            "bootstrap=0",
            "--no-plots",
            "--set",
            "metrics=[ce_avg]",
        ]
    )
    assert any("6 sizes have more than one run" in w for w in doc["warnings"])


def test_best_over_refuses_the_lrs_old_names_naming_the_one_spelling(tmp_path, capsys):
    """best_over has one spelling per axis: the lr's old names (the official trainer's tblr,
    a peak lr...) are refused with a located error naming best_over=lr, from --set and from
    a runs folder's fit.yaml alike; the accepted spelling still fits."""
    path = tmp_path / "grid.csv"
    grid_table(seeds=(0,)).to_csv(path, index=False)
    base = [str(path), "--set", "against=[N]", "--set", "bootstrap=0", "--no-plots"]
    for old in ("tblr", "blr", "peak_lr", "learning_rate", "optim.lr", "grid.optim.tblr"):
        assert main(base + ["--set", f"best_over={old}"]) == 2
        err = capsys.readouterr().err
        assert f"--set best_over={old}: best_over: {old!r} is an old name" in err
        assert "spelled best_over=lr" in err
    out = tmp_path / "fit"
    assert (
        main(base + ["--set", "metrics=[ce_avg]", "--set", "best_over=lr", "--out", str(out)]) == 0
    )
    assert json.loads((out / "fits.json").read_text())["fits"][0]["best_over"]["axis"] == (
        "optim.base_lr"
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "fit.yaml").write_text("bootstrap: 0\nbest_over: peak_lr\n")
    assert main([str(runs)]) == 2
    assert "fit.yaml:2: best_over: 'peak_lr' is an old name" in capsys.readouterr().err


def test_runs_folder_gets_grid_columns_and_settings(tmp_path):
    """read_runs: grid.<axis> columns from grid.yaml; a bad grid.yaml names the file."""
    for run_id, depth, lr in (("d1-lr0.1", 1, 0.1), ("d2-lr0.1", 2, 0.1), ("d1-lr0.2", 1, 0.2)):
        d = tmp_path / run_id
        d.mkdir()
        (d / "metrics.jsonl").write_text(
            json.dumps(
                {
                    "run": run_id,
                    "params": 100 * depth,
                    "step": 1,
                    "flops": 1.0,
                    "ce_avg": 1.0,
                    "width": 16 * depth,
                    "batch": 32,
                    "peak_lr": lr / 8,
                    "epochs": 6.0,
                    "seed": 0,
                }
            )
            + "\n"
        )
    (tmp_path / "grid.yaml").write_text(
        "sweep: s\naxes: [depth, optim.base_lr]\nlabels: {depth: d, optim.base_lr: lr}\nruns:\n"
        "  d1-lr0.1: {depth: 1, optim.base_lr: 0.1}\n  d2-lr0.1: {depth: 2, optim.base_lr: 0.1}\n"
        "  d1-lr0.2: {depth: 1, optim.base_lr: 0.2}\n"
    )
    table = read_runs(tmp_path).set_index("run")
    assert (
        table.loc["d1-lr0.2", "grid.optim.base_lr"] == 0.2
        and table.loc["d2-lr0.1", "grid.depth"] == 2
    )
    assert table.loc["d2-lr0.1", "width"] == 32 and table.loc["d1-lr0.2", "peak_lr"] == 0.025
    (tmp_path / "grid.yaml").write_text("axes: depth\nruns: [1, 2]\n")
    with pytest.raises(ResultsError, match=r"grid.yaml: expected a mapping with 'axes'"):
        read_runs(tmp_path)
    (tmp_path / "grid.yaml").write_text("axes: [depth\n")
    with pytest.raises(ResultsError, match=r"grid.yaml:2: unreadable YAML"):
        read_runs(tmp_path)


def test_grouped_figures_have_a_legend_entry_per_lr(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from analysis import plots, powerlaw, results

    table = results.prepare(grid_table(seeds=(0,)), ["ce_avg"])
    fits, labels = [], []
    for group, sub in axes.groups(table, ["grid.optim.base_lr"]):
        fits.append(powerlaw.fit_vs_n(sub, "ce_avg", bootstrap=0))
        labels.append(axes.group_label(group, {"optim.base_lr": "lr"}))
    fig = plots.plot_vs_n(fits, labels=labels)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [t.split(":")[0] for t in texts] == ["lr=0.001", "lr=0.003"]
    markers = {line.get_marker() for line in ax.get_lines() if line.get_linestyle() == "None"}
    assert markers == {"o", "s"}  # one marker per lr
