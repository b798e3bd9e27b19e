"""`python -m scaling.fit RUNS --set per_scale=true`: each scale's law recovered from runs
drawn from known per-scale laws, and the entropy of each scale's codes over the store's
evaluation split against hand values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from contracts.fits import read_fits
from scaling.study.laws.fit import main, run

# scale k: ce_k = 0.5 + (beta_k x)^alpha_k, x = N in billions
LAWS = [(-0.3, 40.0), (-0.12, 300.0)]
SIZES = [1e4, 3e4, 1e5, 3e5, 1e6]


def _store(path: Path) -> Path:
    """patch_nums (1, 2): L = 5; val codes: scale 0 cycles through 4 codes (entropy ln 4),
    scale 1 is code 7 in three positions and code 1 in one (entropy of (3/4, 1/4))."""
    (path / "val").mkdir(parents=True)
    meta = {
        "format": "var-token-store/1",
        "vocab_size": 8,
        "patch_nums": [1, 2],
        "L": 5,
        "splits": {"val": {"count": 40, "images": 40, "views": 1}},
    }
    (path / "meta.json").write_text(json.dumps(meta))
    tokens = np.zeros((40, 5), dtype=np.uint16)
    tokens[:, 0] = np.arange(40) % 4
    tokens[:, 1:4] = 7
    tokens[:, 4] = 1
    np.save(path / "val" / "tokens.npy", tokens)
    return path


def _runs(tmp_path: Path) -> Path:
    store = _store(tmp_path / "store")
    runs = tmp_path / "runs"
    for N in SIZES:
        d = runs / f"n{int(N)}"
        d.mkdir(parents=True)
        per_scale = [0.5 + (b * N / 1e9) ** a for a, b in LAWS]
        rec = {
            "run": d.name,
            "params": N,
            "step": 100,
            "tokens": 1e6,
            "flops": 6 * N * 1e6,
            "ce_avg": float(np.mean(per_scale)),
            "ce_last": per_scale[-1],
            "err_avg": 0.5,
            "err_last": 0.5,
            "ce_by_scale": per_scale,
            "err_by_scale": [0.5, 0.5],
            "eval": "full",
        }
        (d / "metrics.jsonl").write_text(json.dumps(rec) + "\n")
        (d / "config.yaml").write_text(
            yaml.safe_dump({"data": {"store": str(store), "eval_split": "val"}})
        )
    return runs


def test_each_scale_law_and_its_code_entropy(tmp_path, capsys):
    runs = _runs(tmp_path)
    sets = ["--set", "per_scale=true", "--set", "against=[N]", "--set", "irreducible=0.5"]
    doc = run([str(runs), *sets, "--set", "bootstrap=50"])
    recs = {r["metric"]: r for r in doc["fits"]}
    assert set(recs) == {"ce_scale0", "ce_scale1"}
    for k, (alpha, beta) in enumerate(LAWS):
        r = recs[f"ce_scale{k}"]
        assert r["alpha"] == pytest.approx(alpha, rel=1e-6) and r["beta"] == pytest.approx(beta)
        assert r["scale"] == k and r["pn"] == k + 1 and r["paper"] is None
    assert recs["ce_scale0"]["entropy_nats"] == pytest.approx(math.log(4))
    h1 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert recs["ce_scale1"]["entropy_nats"] == pytest.approx(h1)
    out = runs / "fit-per-scale"
    assert (
        read_fits(out / "fits.json").laws()[("ce_scale1", "N")].alpha == recs["ce_scale1"]["alpha"]
    )
    assert (out / "by_scale_vs_N.png").stat().st_size > 10_000
    assert "| 1 | 2 | 0.562 | N |" in capsys.readouterr().out


def test_per_scale_refuses_the_joint_law_and_runs_without_scales(tmp_path, capsys):
    runs = _runs(tmp_path)
    assert main([str(runs), "--set", "per_scale=true", "--set", "law=nd", "--no-plots"]) == 2
    assert "per_scale" in capsys.readouterr().err
    table = tmp_path / "t.csv"
    table.write_text("run,params,step,flops,ce_last\na,1e4,1,1e9,3\nb,1e5,1,1e10,2.5\n")
    assert main([str(table), "--set", "per_scale=true", "--no-plots"]) == 2
    assert "ce_s0" in capsys.readouterr().err
