"""`python -m scaling.fit`: outputs, fit.yaml defaults and overrides, bad input, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.synthetic import paper_sizes, training_curves_table
from scaling.study.laws.fit import main, run
from tests.paths import ROOT


def _small_table(**kw) -> pd.DataFrame:
    return training_curves_table(sizes=paper_sizes()[::2], evals=6, seed=1, **kw)  # 6 sizes


def _write_runs(root: Path, table: pd.DataFrame) -> Path:
    for run_id, df in table.groupby("run"):
        d = root / run_id
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(
            f"model:\n  depth: {int(round((df['params'].iloc[0] / 73728) ** (1 / 3)))}\n"
        )
        lines = []
        for rec in df.to_dict("records"):
            rec.update(
                ce_by_scale=[rec["ce_avg"] + 1, rec["ce_last"]],
                err_by_scale=[0.5, rec["err_last"]],
                eval="full",
                images=1,
                wall_s=1.0,
                train_loss=rec["ce_avg"],
            )
            lines.append(json.dumps(rec))
        (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_cli_on_small_table_writes_all_outputs(tmp_path, capsys):
    path = tmp_path / "results.csv"
    _small_table().to_csv(path, index=False)
    doc = run(
        [str(path), "--set", "bootstrap=40", "--set", "irreducible=paper", "--set", "paper=true"]
    )
    out = tmp_path / "results_fit"
    for name in (
        "fits.json",
        "fits.md",
        "results.csv",
        "fit_vs_N.png",
        "fit_vs_N.pdf",
        "fit_vs_Cmin.png",
        "fit_vs_Cmin.pdf",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "fit_vs_N.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "fit_vs_Cmin.pdf").read_bytes()[:5] == b"%PDF-"
    saved = json.loads((out / "fits.json").read_text())
    assert saved["fits"] == json.loads(json.dumps(doc["fits"]))
    assert [(f["against"], f["metric"]) for f in saved["fits"]] == [
        (a, m) for a in ("N", "Cmin") for m in ("ce_avg", "ce_last", "err_avg", "err_last")
    ]
    for f in saved["fits"]:
        assert f["alpha_ci"][0] <= f["alpha_ci"][1] and f["ci"]["bootstrap_samples"] == 40
        assert f["E"] == {"ce_avg": 5.0, "ce_last": 4.5}.get(f["metric"], 0.0)
        assert f["paper"]["alpha"] < 0 and f["x_unit"] in saved["conventions"]["x_units"].values()
        assert f["holdout"]["k"] == 2  # auto: 6 sizes
    assert (
        saved["settings"]["compute"] == "exact"
        and saved["conventions"]["compute"]["column"] == "flops"
    )
    assert (
        saved["settings"]["sources"]["irreducible"] == "cli"
        and saved["settings"]["sources"]["ci"] == "default"
    )
    assert saved["n_runs"] == 6 and len(saved["sizes"]) == 6
    printed = capsys.readouterr().out
    assert "| ce_last | Cmin | 4.5 |" in printed and printed.count("\n|") >= 10
    assert (out / "fits.md").read_text() in printed
    fitted = pd.read_csv(out / "results.csv")
    assert len(fitted) == 36 and "compute" in fitted.columns


def test_fit_yaml_defaults_and_cli_override(tmp_path):
    runs = _write_runs(tmp_path / "runs", _small_table())
    (runs / "fit.yaml").write_text(
        "irreducible: paper\ncompute: 6nd\nmetrics: [ce_last, err_last]\n"
        "holdout: 1\nbootstrap: 20\n"
    )
    doc = run([str(runs), "--no-plots", "--set", "metrics=[ce_last]", "--set", "against=[N]"])
    s = doc["settings"]
    assert (s["irreducible"], s["compute"], s["holdout"], s["bootstrap"]) == ("paper", "6nd", 1, 20)
    assert s["metrics"] == ["ce_last"] and s["sources"]["metrics"] == "cli"
    assert s["sources"]["compute"] == "fit.yaml" and s["sources"]["seed"] == "default"
    assert doc["conventions"]["compute"]["column"] == "flops_6nd"
    assert [f["metric"] for f in doc["fits"]] == ["ce_last"] and doc["fits"][0]["E"] == 4.5
    assert (runs / "fit" / "fits.json").exists() and not (runs / "fit" / "fit_vs_N.png").exists()
    table = pd.read_csv(runs / "fit" / "results.csv")
    assert {"model.depth", "ce_s0", "err_s1"} <= set(table.columns)


def test_bad_fit_yaml_key_is_located(tmp_path, capsys):
    runs = _write_runs(tmp_path / "runs", _small_table())
    (runs / "fit.yaml").write_text("compute: exact\nbootstrapp: 10\n")
    assert main([str(runs)]) == 2
    err = capsys.readouterr().err
    assert "fit.yaml:2: bootstrapp: unknown key (did you mean 'bootstrap'?)" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--set", "metrics=[ce_avg,loss]"],
            "--set metrics=[ce_avg,loss]: metrics: must be a non-empty list of ce_avg, ce_last, "
            "err_avg, err_last",
        ),
        (
            ["--set", "irreducible=lots"],
            "--set irreducible=lots: irreducible: must be 'auto', 'paper', 'none', 'fit' or a "
            "number",
        ),
        (["--set", "holdout=9"], "hold-out k=9 leaves"),
        (["--set", "methd=ols"], "--set methd=ols: methd: unknown key (did you mean 'method'?)"),
        (["--set", "bootstrap"], "--set 'bootstrap': expected KEY=VALUE"),
        # the settings' old flags: exit 2 naming the new form
        (["--method", "robust"], "--method was replaced by --set method=VALUE"),
        (["--bootstrap=10"], "--bootstrap was replaced by --set bootstrap=VALUE"),
        (["-E4.5"], "-E was replaced by --set irreducible=VALUE"),
        (["--paper"], "--paper was replaced by --set paper=VALUE (e.g. --set paper=true)"),
    ],
)
def test_bad_options_give_one_line_errors(tmp_path, capsys, args, message):
    path = tmp_path / "t.csv"
    _small_table().to_csv(path, index=False)
    assert main([str(path), "--no-plots", "--set", "bootstrap=0", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_tables_give_clear_errors(tmp_path, capsys):
    table = _small_table()
    table.drop(columns=["err_last"]).to_csv(tmp_path / "nocol.csv", index=False)
    assert main([str(tmp_path / "nocol.csv"), "--set", "bootstrap=0", "--no-plots"]) == 2
    assert (
        "column 'err_last' missing; fitting needs columns run, params, step, flops"
        in capsys.readouterr().err
    )

    two = table[table["params"].isin(sorted(table["params"].unique())[:2])]
    two.to_csv(tmp_path / "two.csv", index=False)
    assert (
        main(
            [
                str(tmp_path / "two.csv"),
                "--set",
                "bootstrap=0",
                "--no-plots",
                "--set",
                "against=[N]",
            ]
        )
        == 2
    )
    assert "needs at least 3 model sizes (distinct params); got 2" in capsys.readouterr().err

    one = table[table["run"] == table["run"].iloc[0]]
    one.to_csv(tmp_path / "one.csv", index=False)
    assert (
        main(
            [
                str(tmp_path / "one.csv"),
                "--set",
                "bootstrap=0",
                "--no-plots",
                "--set",
                "against=[Cmin]",
            ]
        )
        == 2
    )
    assert "Cmin frontier needs training curves from at least 2 runs" in capsys.readouterr().err

    neg = table.copy()
    neg.loc[3, "ce_avg"] = -1.0
    neg.to_csv(tmp_path / "neg.csv", index=False)
    assert main([str(tmp_path / "neg.csv"), "--set", "bootstrap=0", "--no-plots"]) == 2
    assert "column 'ce_avg' has 1 non-positive values" in capsys.readouterr().err

    nan = table.copy()
    nan.loc[[0, 7], "ce_last"] = float("nan")
    nan.to_csv(tmp_path / "nan.csv", index=False)
    doc = run([str(tmp_path / "nan.csv"), "--set", "bootstrap=0", "--no-plots"])
    assert any("dropped 2 of 36 rows with NaN in ce_last" in w for w in doc["warnings"])
    assert "warning: " in capsys.readouterr().err and doc["n_rows"] == 34

    assert main([str(tmp_path / "missing.csv")]) == 2
    assert "no such sweep file, runs directory or table file" in capsys.readouterr().err


def test_help_is_fast_and_the_cli_never_imports_torch(tmp_path):
    help_ = subprocess.run(
        [sys.executable, "-m", "scaling.fit", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert help_.returncode == 0 and "--set KEY=VALUE" in help_.stdout
    path = tmp_path / "t.csv"
    _small_table().to_csv(path, index=False)
    code = (
        "import sys; from scaling.study.laws.fit import run; run([sys.argv[1], '--set', "
        "'bootstrap=5', '--set', 'metrics=[ce_last]']); "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'var_core')]; "
        "assert not bad, bad; print('NO_TORCH')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "NO_TORCH" in done.stdout
