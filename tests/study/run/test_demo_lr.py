"""sweeps/demo_lr.yaml in reduced form: the same file on a tiny token store, three sizes x its
two learning rates, trained for a few steps; then both views of the study through the CLI:
one law per lr (the default) and each size at its best lr (--set best_over=lr)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from scaling.study.laws import fit as fit_mod
from scaling.study.run import launch as launch_mod
from scaling.study.sweep.sweep import load_sweep
from tests.factories import make_token_store
from tests.paths import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_lr_both_views(tmp_path, capsys):
    spec = yaml.safe_load((ROOT / "sweeps" / "demo_lr.yaml").read_text())
    full = load_sweep(ROOT / "sweeps" / "demo_lr.yaml")
    assert len(full.runs) == 8 and full.spec.grid["optim.base_lr"] == (2.4e-2, 4.8e-2)
    depths = [3, 2, 1]
    spec.update(
        output=str(tmp_path / "out"), data={"tokens": str(make_token_store(tmp_path / "store"))}
    )
    spec.pop("prepare")
    spec["grid"]["depth"] = depths
    spec["overrides"] = {d: v for d, v in spec["overrides"].items() if d in depths}
    spec["base"]["length"] = {"steps": 8}
    spec["base"]["runtime"].update(checkpoint_every_s=600)
    spec["eval"] = {"points": 2, "first_frac": 0.5, "batch_size": 64}
    spec["fit"]["bootstrap"] = 0
    path = tmp_path / "demo_lr_small.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert launch_mod.main([str(path), "--backend", "debug"]) == 0
    capsys.readouterr()

    # default view: one law per lr, read from the sweep file (= its output folder)
    assert fit_mod.main([str(path), "--set", "against=[N]", "--no-plots"]) == 0
    per_lr = json.loads((tmp_path / "out" / "fit" / "fits.json").read_text())
    assert sorted({f["group_label"] for f in per_lr["fits"]}) == ["lr=0.024", "lr=0.048"]
    assert per_lr["axes"]["law_axes"] == ["optim.base_lr"] and all(
        f["n_points"] == 3 for f in per_lr["fits"]
    )
    tidy = pd.read_csv(tmp_path / "out" / "fit" / "results.csv")
    for column in (
        "grid.depth",
        "grid.optim.base_lr",
        "width",
        "batch",
        "peak_lr",
        "epochs",
        "seed",
    ):
        assert column in tidy.columns, column
    final = tidy.sort_values("step").groupby("run").tail(1).set_index("run")
    assert final.loc["d3-lr0.048", "peak_lr"] == pytest.approx(0.048 * 32 / 256)
    assert final.loc["d3-lr0.048", "width"] == 48 and final.loc["d2-lr0.024", "grid.depth"] == 2

    # best over lr: each size's lower final ce_avg, by hand from the tidy table
    out = tmp_path / "best"
    assert (
        fit_mod.main(
            [
                str(tmp_path / "out"),
                "--set",
                "against=[N]",
                "--no-plots",
                "--set",
                "best_over=lr",
                "--set",
                "metrics=[ce_avg]",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (law,) = json.loads((out / "fits.json").read_text())["fits"]
    for pick in law["best_over"]["picked"]:
        rows = final[final["params"] == pick["params"]]
        assert (
            pick["run"] == rows["ce_avg"].idxmin()
            and pick["value"] == rows["grid.optim.base_lr"][pick["run"]]
        )
    assert "Best run per size over `optim.base_lr`" in capsys.readouterr().out
