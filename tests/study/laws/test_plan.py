"""`python -m scaling.plan`: cost by hand, bad input, no torch, and the end-to-end check that
the planner's predicted interval width is the width `scaling.fit` gives on simulated studies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contracts.plan import read_plan
from scaling.study.laws.plan import main, run
from tests.factories import merged, write_sweep
from tests.paths import ROOT
from tests.study.laws.planned_study import write_planned_study

# a prior with the sweep's E = 3.0 (its fit: irreducible)
LAWS = [
    "--law",
    "ce_last:N=-0.2,3.0,3.0",
    "--law",
    "ce_last:Cmin=-0.1,100,3.0",
]  # consistent: curve check ~1%


def _sweep(tmp_path: Path, file: str = "tiny.yaml", **more) -> Path:
    """The tests' sweep (tests.factories) as the planner sees it: no store yet (`expect`
    describes it), 6 sizes, full and subset evaluations, a fit section; `more`: sections
    laid over it."""
    out = tmp_path / "runs"
    kw = dict(
        store=out / "no-store-yet",
        depths=(2, 3, 4, 6, 8, 11),
        data={
            "expect": {
                "train_images": 1000,
                "val_images": 100,
                "num_classes": 10,
                "vocab_size": 64,
                "patch_nums": [1, 2, 3],
            }
        },
        base={
            "model": None,
            "optim": {"batch_size": 10, "base_lr": None, "final_lr_frac": None},
            "length": {"steps": 400},
            "runtime": None,
        },
        eval={
            "points": 6,
            "first_frac": 0.02,
            "subset_points": 3,
            "subset_images": 20,
            "batch_size": None,
        },
        cluster={
            "gpus_per_node": 1,
            "assumed_tflops_per_gpu": 100,
            "backend": None,
            "cpus_per_task": None,
        },
        fit={"irreducible": 3.0, "metrics": ["ce_last"]},
    )
    return write_sweep(tmp_path / file, out, **merged(kw, more))


def _plan(sweep, *args: str, replicates: int = 2, bootstrap: int = 0, alt_replicates: int = 0):
    """`scaling.plan` on `sweep` without figures: `args`, then the simulation's sizes (small by
    default: these tests check what the plan says, not how precisely)."""
    return run(
        [str(sweep), *args, "--replicates", str(replicates), "--bootstrap", str(bootstrap)]
        + ["--alt-replicates", str(alt_replicates), "--no-plots"]
    )


def test_cost_is_the_hand_count(tmp_path, capsys):
    from var_core.counting import forward_flops

    doc = _plan(_sweep(tmp_path), *LAWS, replicates=4, alt_replicates=2)
    L = 1 + 4 + 9
    run2 = next(r for r in doc["cost"]["runs"] if r["run"] == "d2")
    fwd = forward_flops(depth=2, num_classes=10, vocab_size=64, patch_nums=(1, 2, 3))
    assert run2["train_flops"] == 3 * fwd * 10 * 400  # 3 x forward x batch x steps
    # full evaluations at 8 * 50^(k/5) = steps 8, 17, 38, 83, 181, 400 (100 val images each);
    # subset ones at 8, 57, 400, of which only 57 stays subset (full wins where both fall): 20
    # images
    assert run2["eval_flops"] == fwd * (6 * 100 + 1 * 20)
    assert run2["tokens"] == 400 * 10 * L
    assert run2["gpu_hours"] == pytest.approx(
        (run2["train_flops"] + run2["eval_flops"]) / 100e12 / 3600
    )
    assert doc["cost"]["token_store_bytes"] == (1000 + 100) * (
        L * 2 + 4
    )  # uint16 tokens + int32 label
    assert run2["eval_compute"][-1] == run2["train_flops"] and len(run2["eval_compute"]) == 6
    out = capsys.readouterr().out
    assert "## Cost" in out and "## Expected precision" in out and "## Alternatives" in out
    assert "decay branches" in out
    written = read_plan(tmp_path / "runs" / "plan" / "plan.json")
    assert [r.run for r in written.cost.runs] == [r["run"] for r in doc["cost"]["runs"]]
    assert written.cost.token_store_bytes == doc["cost"]["token_store_bytes"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prior", "missing/fits.json"], "no such file"),
        (["--law", "ce_last:N=oops"], "expected METRIC:AGAINST=alpha,beta"),
        (["--law", "ce_last:N=0.2,3.0"], "alpha must be negative"),
        (["--replicates", "1"], "--replicates must be at least 2"),
        (["--set", "metrics=[ce_first]"], "ce_first"),
        (["--metrics", "ce_last"], "--metrics was replaced by --set metrics=[...]"),
        (["--set", "method=fancy"], "--set method=fancy: method: must be one of"),
        (["--noise-sd", "-1"], "--noise-sd must be >= 0"),
        (["--eval-noise", "-0.1"], "--eval-noise must be >= 0"),
        (["--bootstrap", "-5"], "--bootstrap must be >= 0"),
        (["--alt-replicates", "-1"], "--alt-replicates must be >= 0"),
        (["--compare", "err_avg"], "--compare err_avg: not among the planned metrics"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(tmp_path, capsys, args, message):
    assert main([str(_sweep(tmp_path)), "--no-plots", *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_prior_file_and_noise_table(tmp_path, capsys):
    bad = tmp_path / "fits.json"
    bad.write_text("{not json")
    assert main([str(_sweep(tmp_path)), "--prior", str(bad), "--no-plots"]) == 2
    assert "not a fits.json" in capsys.readouterr().err
    table = tmp_path / "one_seed.csv"
    table.write_text("run,params,step,flops,ce_last,seed\na,1e6,1,1e15,5.0,0\nb,2e6,1,2e15,4.8,0\n")
    assert main([str(_sweep(tmp_path)), "--noise-from", str(table), "--no-plots"]) == 2
    assert "no model size has two or more seeds" in capsys.readouterr().err
    bad_val = tmp_path / "bad_val.yaml"
    bad_val.write_text(_sweep(tmp_path).read_text().replace("val_images: 100", "val_images: 0"))
    assert main([str(bad_val)]) == 2
    assert "val_images" in capsys.readouterr().err
    bad_sweep = tmp_path / "bad.yaml"
    bad_sweep.write_text(_sweep(tmp_path).read_text().replace("- 2\n", "- zero\n", 1))
    assert main([str(bad_sweep)]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_prior_from_a_fits_json(tmp_path):
    fits = {
        "fits": [
            {"metric": "ce_last", "against": "N", "alpha": -0.21, "beta": 3.5, "E": 3.0},
            {"metric": "ce_last", "against": "Cmin", "alpha": -0.09, "beta": 120.0, "E": 3.0},
        ]
    }
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(fits))
    doc = _plan(_sweep(tmp_path), "--prior", str(path), replicates=3)
    assert doc["prior"]["laws"]["ce_last"]["N"] == {"alpha": -0.21, "beta": 3.5, "E": 3.0}
    assert {p["against"]: p["prior_alpha"] for p in doc["precision"]} == {"N": -0.21, "Cmin": -0.09}
    fits["fits"].pop()  # no Cmin law: the planner says which metric lacks one
    path.write_text(json.dumps(fits))
    with pytest.raises(Exception, match="no law vs both N and Cmin for ce_last"):
        run([str(_sweep(tmp_path)), "--prior", str(path), "--no-plots"])


def test_a_study_s_own_error_rate_laws_come_back_from_the_planned_grid(tmp_path, capsys):
    """A fits.json's laws were measured on a grid: the planner's noise-free draw of the
    planned grid, fitted as scaling.fit fits it, returns them (within 2%). The demo's err_last
    laws (E = 0) need curves of their own per law; the table says so."""
    fits = {
        "fits": [
            {"metric": "err_last", "against": "N", "alpha": -0.07062, "beta": 2.58e6, "E": 0.0},
            {"metric": "err_last", "against": "Cmin", "alpha": -0.0524, "beta": 2.402e6, "E": 0.0},
        ]
    }
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(fits))
    sweep = _sweep(tmp_path, fit={"metrics": ["err_last"]})
    doc = run(
        [str(sweep), "--prior", str(path), "--replicates", "3", "--bootstrap", "0"]
        + ["--alt-replicates", "0", "--no-plots"]
    )
    assert doc["not_simulated"] == {}
    for law in doc["precision"]:
        assert law["noise_free_alpha"] == pytest.approx(law["prior_alpha"], rel=0.02), law
    assert doc["curves"]["err_last"]["cmin_curves"] is not None
    assert "(own curves)" in capsys.readouterr().out


def test_a_study_without_gpus_is_costed_in_cpu_hours(tmp_path, capsys):
    sweep = _sweep(tmp_path, cluster={"gpus_per_node": 0, "assumed_gflops_per_cpu": 4.0})
    doc = run(
        [str(sweep), *LAWS, "--replicates", "2", "--bootstrap", "0", "--alt-replicates", "0"]
        + ["--no-plots"]
    )
    run2 = next(r for r in doc["cost"]["runs"] if r["run"] == "d2")
    flops = run2["train_flops"] + run2["eval_flops"]
    assert run2["cpu_hours"] == pytest.approx(flops / 4e9 / 3600)
    assert doc["cost"]["hours_unit"] == "CPU-h"
    out = capsys.readouterr().out
    assert "CPU-hours (core-hours: no GPUs) at 4 GFLOP/s per CPU core" in out
    assert "| CPU-h |" in out and "GPU-h" not in out
    total = sum(r["cpu_hours"] for r in doc["cost"]["runs"])
    assert f"| {total:.3g} |" in out  # the total row, in CPU-hours (not a rounded "0")


def test_noise_of_a_fits_json_prior_is_its_own_scatter(tmp_path):
    # a study's final points drawn about a known N law; its fits.json (alpha, r, sizes as
    # scaling.fit writes them) must give the residual sd of its own log-log line, computed
    # here from the residuals themselves, not the paper's scatter
    rng = np.random.default_rng(4)
    sizes = np.array([1.1e4, 5.0e4, 1.5e5, 3.3e5, 6.2e5, 1.05e6])
    lx = np.log(sizes / 1e9)
    ly = np.log(0.9) - 0.27 * lx + 0.03 * rng.standard_normal(len(sizes))  # log(final - E)
    slope, icpt = np.polyfit(lx, ly, 1)
    resid_sd = float(np.sqrt(np.mean((ly - icpt - slope * lx) ** 2)))
    r = float(np.corrcoef(lx, ly)[0, 1])
    beta = float(np.exp(icpt / slope))
    fits = {
        "sizes": sizes.astype(int).tolist(),
        "fits": [
            {"metric": "ce_last", "against": "N", "alpha": slope, "beta": beta, "E": 3.0, "r": r},
            {"metric": "ce_last", "against": "Cmin", "alpha": -0.1, "beta": 100.0, "E": 3.0},
        ],
    }
    path = tmp_path / "fits.json"
    path.write_text(json.dumps(fits))
    doc = _plan(_sweep(tmp_path), "--prior", str(path))
    assert doc["noise"]["sd"]["ce_last"] == pytest.approx(resid_sd, rel=1e-6)
    assert "its own N laws" in doc["noise"]["source"] and str(path) in doc["noise"]["source"]
    # without r (an older fits.json) the paper's scatter stands in, and the source says so
    del fits["fits"][0]["r"]
    path.write_text(json.dumps(fits))
    doc = _plan(_sweep(tmp_path), "--prior", str(path))
    assert "ce_last: the paper's" in doc["noise"]["source"]


def test_the_plan_shows_how_cmin_from_moves_the_cmin_exponents(tmp_path):
    # the tiny grid evaluates from 2% of each run (first_frac): 0 and 0.01 keep every
    # evaluation, so they give one exponent; 0.1 leaves the first ones out and moves it; the
    # warm-up (5% of the steps here) lies between
    sweep = _sweep(tmp_path, base={"optim": {"warmup_frac": 0.05}})
    doc = _plan(sweep, *LAWS)
    effect = doc["cmin_from_effect"]
    assert effect["setting"] == 0.0
    alpha = {k: v["ce_last"] for k, v in effect["alpha"].items()}
    assert set(alpha) == {"0 (every evaluation)", "0.01", "0.1", "warmup_end"}
    assert alpha["0.01"] == alpha["0 (every evaluation)"]
    assert alpha["0.1"] != pytest.approx(alpha["0 (every evaluation)"], abs=1e-4)
    # the noise-free study with every evaluation: the plan's own noise-free Cmin fit (E given)
    cmin = next(p for p in doc["precision"] if p["against"] == "Cmin")
    assert alpha["0 (every evaluation)"] == pytest.approx(cmin["noise_free_alpha"], abs=1e-9)
    md = (tmp_path / "runs" / "plan" / "plan.md").read_text()
    assert "The Cmin frontier's early evaluations (fit: cmin_from)" in md


def test_noise_measured_from_seed_replicates(tmp_path):
    # log(final - E) deviates by -0.05, +0.05, -0.05, +0.05 over the 4 seeds of every size:
    # pooled sample variance 4 * 0.05^2 / 3 per size, so sd = 0.05 * sqrt(4/3) = 0.0577
    rows = ["run,params,step,flops,ce_last,seed"]
    for i, n in enumerate((1e6, 4e6, 1.6e7)):
        for s, eps in enumerate((-0.05, 0.05, -0.05, 0.05)):
            rows.append(
                f"d{i}-s{s},{n},10,{n * 1e6},{3.0 + (n / 1e9 * 3.0) ** -0.2 * np.exp(eps)},{s}"
            )
    table = tmp_path / "seeds.csv"
    table.write_text("\n".join(rows) + "\n")
    doc = _plan(_sweep(tmp_path), *LAWS, "--noise-from", str(table), replicates=3)
    assert doc["noise"]["sd"]["ce_last"] == pytest.approx(0.05 * np.sqrt(4 / 3), rel=1e-9)
    assert "measured from the seed replicates" in doc["noise"]["source"]
    assert "9 degrees of freedom" in doc["noise"]["source"]


def test_planner_never_imports_torch(tmp_path):
    code = (
        "import sys; from scaling.study.laws.plan import main; "
        f"rc = main([{str(_sweep(tmp_path))!r}, '--replicates', '3', '--bootstrap', '0', "
        "'--alt-replicates', '0', '--no-plots']); "
        "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr


def test_predicted_interval_width_matches_end_to_end_fits(tmp_path):
    """The planner's median 95% interval width for a 6-size grid vs the widths `scaling.fit`
    reports on 30 studies of that grid drawn independently here, written as run directories
    and fitted by the CLI: they agree within 25% (the sampling error of a median of 30
    widths is about 10%), and so does the spread of the fitted exponents (within 35%). The
    numbers of a larger run of this check are in docs/planning.md
    (scripts/validation/plan_validation.py)."""
    from scaling.study.laws.fit import run as fit_run

    sweep = _sweep(tmp_path)
    sd = 0.03
    doc = _plan(sweep, *LAWS, "--noise-sd", str(sd), "--seed", "3", replicates=60, bootstrap=200)
    rng = np.random.default_rng(11)
    widths, alphas = {"N": [], "Cmin": []}, {"N": [], "Cmin": []}
    for rep in range(30):
        root = write_planned_study(tmp_path / f"study{rep}", doc, sd, rng)
        fitted = fit_run([str(root), "--no-plots", "--set", f"seed={rep}"])
        for f in fitted["fits"]:
            widths[f["against"]].append(f["alpha_ci"][1] - f["alpha_ci"][0])
            alphas[f["against"]].append(f["alpha"])
    for law in doc["precision"]:
        a = law["against"]
        assert law["median_ci_width"] == pytest.approx(np.median(widths[a]), rel=0.25), a
        # 95% range of a normal = 3.92 sd (the sd of 30 draws is steadier than their 2.5% quantiles)
        assert law["spread95"] == pytest.approx(3.92 * np.std(alphas[a], ddof=1), rel=0.35), a


def _wsd_sweep(tmp_path: Path) -> Path:
    return _sweep(
        tmp_path,
        "tiny_wsd.yaml",
        base={"optim": {"schedule": "wsd", "warmup_frac": 0.05}},
        branches={"at": [0.25, 0.5], "cooldown": 0.2},
    )


def test_decay_branches_cost_their_cooldown_and_plan_the_joint_law(tmp_path):
    """A branch pays for its own steps, evaluates after its start only, and its compute and
    data count the parent's steps (as the trainer and scaling.fit count them); the branches
    laid out by the planner for alternatives are those the sweep loader makes."""
    from scaling.study.laws.plan_cost import branch_cost, run_costs
    from scaling.study.sweep.estimates import store_meta
    from scaling.study.sweep.sweep import load_sweep

    sweep = load_sweep(_wsd_sweep(tmp_path))
    meta, _ = store_meta(sweep)
    costs = {c.run_id: c for c in run_costs(sweep, meta)}
    assert len(costs) == 18
    parent, branch = costs["d2"], costs["d2-b0.25"]
    assert (branch.start_step, branch.steps) == (100, 125)  # 0.25 x 400, then 100 x 0.2 / 0.8 more
    assert (
        branch.train_flops == parent.train_flops * 25 / 400
        and branch.compute == parent.compute * 125 / 400
    )
    assert branch.data("tokens") == 125 * 10 * 14 and branch.tokens == 25 * 10 * 14
    assert all(s > 100 for s in branch.schedule()) and branch.eval_compute()[-1] == branch.compute
    for c in costs.values():
        if c.parent:
            again = branch_cost(costs[c.parent], c.config.branch.at, c.config.branch.cooldown)
            assert (again.run_id, again.steps, again.start_step) == (
                c.run_id,
                c.steps,
                c.start_step,
            )

    doc = _plan(_wsd_sweep(tmp_path), *LAWS, replicates=3, bootstrap=5, alt_replicates=2)
    assert doc["joint"]["planned"] and len(doc["joint"]["points"]) == 18
    assert (
        len({p["family"] for p in doc["joint"]["points"]}) == 6
    )  # a parent and its branches: one seed
    assert [(p["param"], p["replicates"]) for p in doc["joint"]["precision"]] == [
        ("alpha", 3),
        ("beta", 3),
    ]
    assert "ASSUMED" in doc["joint"]["prior_source"]
    assert sum(r["gpu_hours"] for r in doc["cost"]["runs"]) == pytest.approx(
        doc["cost"]["total_gpu_hours"]
    )
    rows = {a["design"]: a for a in doc["alternatives"]}
    assert rows["no decay branches (parents only)"]["joint_why_not"] is not None
    assert {law["against"] for law in rows["as planned"]["laws"]} == {"N", "Cmin", "ND"}
    scratch = rows["each branch a run from scratch (own seed)"]
    assert scratch["gpu_hours"] > rows["as planned"]["gpu_hours"]


def test_decay_branch_alternatives_of_a_grid_without_them(tmp_path, capsys):
    """One run per size ties D to N: the joint law is not planned for the grid, but for the
    alternatives that add decay branches (one of them at the planned budget)."""
    doc = _plan(_sweep(tmp_path), *LAWS, replicates=3, alt_replicates=2)
    assert not doc["joint"]["planned"] and "1 data amounts" in doc["joint"]["why_not"]
    rows = {a["design"]: a for a in doc["alternatives"]}
    planned = rows["as planned"]["gpu_hours"]
    two = rows["WSD + 2 decay branches per size (at 0.25, 0.5)"]
    assert two["runs"] == 18 and two["joint_why_not"] is None
    assert two["gpu_hours"] / planned == pytest.approx(
        1 + (25 + 50) / 400, rel=0.02
    )  # cool-downs of 25 and 50 steps
    assert rows["WSD + 3 decay branches, runs shortened to the planned budget"][
        "gpu_hours"
    ] == pytest.approx(planned, rel=0.01)
    assert {law["against"] for law in two["laws"]} == {"N", "Cmin", "ND"}
    assert "N,D alpha: 95% range" in capsys.readouterr().out


def test_joint_prior_from_the_command_line_and_a_joint_fits_json(tmp_path, capsys):
    from analysis.calibration import CurveModel
    from analysis.simulate import joint_prior

    # the curve read as a joint law gives the curve's values where C = kappa N D
    curve = CurveModel("ce_last", 3.0, 0.4, 0.3, 2.0, 0.25)
    law = joint_prior(curve, kappa=5.0)
    N, D = 3e5, 2e7
    assert law.predict(N, D) == pytest.approx(
        curve.E + curve.reducible(N / 1e9, 5.0 * N * D / 1e15), rel=1e-12
    )

    doc = _plan(
        _wsd_sweep(tmp_path), *LAWS, "--joint-law", "ce_last=3.0,40,0.3,900,0.35", replicates=3
    )
    assert doc["joint"]["prior"]["ce_last"] == {
        "E": 3.0,
        "A": 40.0,
        "alpha": 0.3,
        "B": 900.0,
        "beta": 0.35,
    }
    assert "ce_last: --joint-law" in doc["joint"]["prior_source"]
    # a fits.json of `scaling.fit --set law=nd` (D in images): its law, D converted at 14 tokens per
    # image;
    # the laws vs N and Cmin of such a file are the paper's (it has none)
    fits = tmp_path / "fits.json"
    fits.write_text(
        json.dumps(
            {
                "law": "nd",
                "joint": [
                    {
                        "metric": "ce_last",
                        "E": 3.0,
                        "A": 40.0,
                        "alpha": 0.3,
                        "B": 900.0,
                        "beta": 0.35,
                        "D_unit": "training images",
                    }
                ],
            }
        )
    )
    doc = _plan(_wsd_sweep(tmp_path), "--prior", str(fits), replicates=3)
    assert doc["joint"]["prior"]["ce_last"]["B"] == pytest.approx(900.0 * 14**0.35)
    assert "the paper's laws" in doc["prior"]["source"]
    for bad, message in [
        ("ce_last=1,2,3", "expected METRIC=E,A,alpha,B,beta"),
        ("err_avg=3,40,0.3,900,0.35", "losses"),
        ("ce_last=3,40,-0.3,900,0.35", "positive"),
    ]:
        assert main([str(_wsd_sweep(tmp_path)), "--joint-law", bad, "--no-plots"]) == 2
        assert message in capsys.readouterr().err


def test_a_seed_axis_is_planned_as_replicates(tmp_path):
    path = _sweep(tmp_path, "seeds.yaml", grid={"seed": [0, 1]})
    doc = _plan(path, *LAWS, replicates=3, bootstrap=20, alt_replicates=2)
    assert len(doc["cost"]["runs"]) == 12
    rows = {a["design"]: a["runs"] for a in doc["alternatives"]}
    assert (
        rows["all sizes, 4 seeds each"] == 24
        and rows["every other size (3 of 6), 4 seeds each"] == 12
    )
    assert all(p["replicates"] == 3 for p in doc["precision"])


def test_joint_interval_width_matches_end_to_end_fits(tmp_path):
    """The planner's joint-law intervals are those `fit_joint_table` (the fit of `scaling.fit
    --set law=nd`, with its full grid of starts) prints for the same studies: the 6-size WSD
    grid with 3 decay branches per size (24 points, 6 families of a parent and its branches),
    12 studies drawn again here from the planner's own random stream, each fitted end to end
    with a family column (both bootstraps resample families). The median widths and the
    coverages agree (the planner starts each study from the noise-free fit, a shortcut; on
    these draws its bounds match the full fit's to 1e-4), and both cover the prior at about the
    nominal rate (noise independent per point: over 120 such studies the family bootstrap
    covered alpha 98% and beta 88%; asserted: at least 9 of 12 each). Medians of 12 widths of
    independently drawn studies would not do: with 6 families the widths spread over a factor
    4 (10-90%: 0.11-0.44 for alpha), so two such medians differ by up to 1.7x by chance.
    scripts/validation/plan_validation.py compares independent studies through the CLI."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from analysis.jointlaw import JointLaw, fit_joint_table
    from analysis.results import prepare
    from analysis.simulate import JointPoints, draw_joint

    E, A, alpha, B, beta, sd, boot, studies, seed = 3.0, 22.0, 0.3, 33.0, 0.4, 0.01, 40, 12, 5
    sweep = _sweep(
        tmp_path,
        "wsd3.yaml",
        base={"optim": {"schedule": "wsd", "warmup_frac": 0.05}},
        branches={"at": [0.125, 0.25, 0.5], "cooldown": 0.2},
    )
    doc = _plan(
        sweep,
        *LAWS,
        "--joint-law",
        f"ce_last={E},{A},{alpha},{B},{beta}",
        "--noise-sd",
        "0",
        "--eval-noise",
        str(sd),
        "--seed",
        str(seed),
        replicates=studies,
        bootstrap=boot,
    )
    points = pd.DataFrame(doc["joint"]["points"])
    assert len(points) == 24 and points["family"].nunique() == 6
    planned = JointPoints(
        tuple(points["run"]),
        points["N"].to_numpy(float),
        points["D"].to_numpy(float),
        points["family"].to_numpy(),
    )
    # the planner's stream for its first metric (analysis.simulate.simulate_joint)
    rng = np.random.default_rng(seed)
    widths, hits = {"alpha": [], "beta": []}, {"alpha": 0, "beta": 0}
    with threadpool_limits(1):  # as in the planner: BLAS threads only slow these tiny fits down
        for rep in range(studies):
            loss = draw_joint(planned, JointLaw(E, A, alpha, B, beta), 0.0, sd, rng)
            table = pd.DataFrame(
                {
                    "run": points["run"],
                    "params": points["N"],
                    "step": 1,
                    "tokens": points["D"],
                    "flops": 4.5 * points["N"] * points["D"],
                    "ce_last": loss,
                    "family": points["family"],  # as the planner's: a parent and its branches
                }
            )
            fit = fit_joint_table(
                prepare(table, ["ce_last"]),
                "ce_last",
                "tokens",
                bootstrap=boot,
                seed=rep,
                holdout=False,
            )
            for p, truth in (("alpha", alpha), ("beta", beta)):
                lo, hi = fit.ci(p)
                widths[p].append(hi - lo)
                hits[p] += lo <= truth <= hi
    for law in doc["joint"]["precision"]:
        p = law["param"]
        assert law["median_ci_width"] == pytest.approx(np.median(widths[p]), rel=0.02), p
        assert law["coverage"] == pytest.approx(hits[p] / studies), p
        assert hits[p] >= 9, (p, hits[p])
