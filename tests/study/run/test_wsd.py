"""WSD schedule values, decay-branch layout, bad input, and the exactness of a decay branch."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import time

import pytest
import torch
import yaml

from scaling.core.config_io import ConfigError, build
from scaling.core.rundir import RunDir
from scaling.study.laws.fit import run as fit_run
from scaling.study.run import launch as launch_mod
from scaling.study.run import status as status_mod
from scaling.study.sweep.sweep import load_sweep
from scaling.training import schedule
from scaling.training.config import BranchConfig, LengthConfig, OptimConfig, RunConfig
from scaling.training.job import train_run
from tests.factories import make_token_store, tiny_run_config, tiny_sweep, write_run
from tests.paths import ROOT


def _wsd(**kw) -> OptimConfig:
    return OptimConfig(schedule="wsd", **kw)


# hand-computed: warm-up 0 -> 1 over 2 steps, peak for steps 2..5, cool-down over steps 6..9
# with progress p = 1/4, 2/4, 3/4, 4/4 reaching final_lr_frac at the last step
@pytest.mark.parametrize(
    "shape, cool",
    [
        ("linear", [0.75, 0.5, 0.25, 0.0]),
        ("1-sqrt", [0.5, 1 - math.sqrt(0.5), 1 - math.sqrt(0.75), 0.0]),
        ("cosine", [0.5 + 0.5 * math.sqrt(0.5), 0.5, 0.5 - 0.5 * math.sqrt(0.5), 0.0]),
    ],
)
def test_wsd_values_by_hand(shape, cool):
    optim = _wsd(
        warmup_start=0.0, warmup_steps=2, cooldown_steps=4, cooldown_shape=shape, final_lr_frac=0.1
    )
    config = tiny_run_config("store", steps=10)
    config = dataclasses.replace(config, optim=optim)
    plan = schedule.plan(config, 10)
    assert (plan.total_steps, plan.warmup_steps, plan.decay_start) == (10, 2, 6)
    got = [schedule.lr_factor(s, plan, optim) for s in range(10)]
    want = [0.0, 0.5, 1, 1, 1, 1] + [0.1 + 0.9 * c for c in cool]
    assert got == pytest.approx(want, abs=1e-12)


def test_wsd_fractions_and_official_default():
    # default stays the official lin0; wsd from fractions: 5% warm-up, 20% cool-down of 100
    assert OptimConfig().schedule == "lin0"
    config = dataclasses.replace(tiny_run_config("store"), optim=_wsd(warmup_frac=0.05))
    plan = schedule.plan(config, 100)
    assert (plan.warmup_steps, plan.decay_start, plan.total_steps) == (5, 80, 100)
    lin0 = tiny_run_config("store")
    p0 = schedule.plan(lin0, 100)
    # the official schedule is unchanged: hold, then linear to final_lr_frac at the last step
    assert schedule.lr_factor(99, p0, lin0.optim) == pytest.approx(lin0.optim.final_lr_frac)


def test_branch_layout():
    base = tiny_run_config("store", steps=40)
    branch = dataclasses.replace(
        base,
        optim=_wsd(warmup_steps=2, cooldown_frac=0.25),
        branch=BranchConfig(parent="p", at=0.25, cooldown=0.5),
    )
    plan = schedule.plan(branch, 40)
    # starts after round(0.25 * 40) = 10 steps, cools down 10 * 0.5 / 0.5 = 10 more
    assert (plan.start_step, plan.decay_start, plan.total_steps, plan.warmup_steps) == (
        10,
        10,
        20,
        2,
    )
    parent = dataclasses.replace(base, optim=_wsd(cooldown_frac=0.25), save_at=(0.125, 0.5, 0.75))
    assert schedule.plan(parent, 40).save_steps == (5, 20, 30)


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"save_at": [0.25]}, "save_at", "optim.schedule: wsd"),
        ({"optim": {"schedule": "wsd"}, "save_at": [1.5]}, "save_at", "(0, 1)"),
        ({"optim": {"schedule": "wsd"}, "save_at": [0.0]}, "save_at", "(0, 1)"),
        (
            {"optim": {"schedule": "wsd", "cooldown_frac": 0.3}, "save_at": [0.8]},
            "save_at",
            "cool-down",
        ),
        (
            {"optim": {"schedule": "wsd", "cooldown_frac": 0.99}},
            "optim.cooldown_frac",
            "longer than",
        ),
        (
            {"optim": {"schedule": "wsd", "weight_decay_end": 0.1}},
            "optim.weight_decay_end",
            "constant",
        ),
        (
            {"optim": {"schedule": "wsd"}, "branch": {"parent": "d2", "at": 1.0}},
            "branch.at",
            "(0, 1)",
        ),
        ({"branch": {"parent": "d2", "at": 0.5}}, "branch", "optim.schedule: wsd"),
        ({"optim": {"schedule": "wsd", "cooldown_shape": "exp"}}, "optim.cooldown_shape", "1-sqrt"),
    ],
)
def test_bad_wsd_config_names_the_key(data, key, words):
    with pytest.raises(ConfigError) as e:
        build(RunConfig, {"run_id": "r", "data": {"store": "s"}, **data})
    assert key in str(e.value) and words in str(e.value)


def test_cooldown_longer_than_the_rest_in_steps():
    config = dataclasses.replace(
        tiny_run_config("store"), optim=_wsd(warmup_steps=8, cooldown_steps=5)
    )
    with pytest.raises(schedule.ScheduleError, match="optim.cooldown_steps: the cool-down"):
        schedule.plan(config, 12)
    branch = dataclasses.replace(
        config,
        optim=_wsd(warmup_steps=8, cooldown_steps=2),
        branch=BranchConfig(parent="p", at=0.1),
    )
    with pytest.raises(
        schedule.ScheduleError, match="branch.at: 0.1 .* outside its constant phase"
    ):
        schedule.plan(branch, 40)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


def _last(run_dir) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def test_branch_equals_a_from_scratch_run_truncated_at_its_point(store, tmp_path, one_thread):
    """The decay branch at 0.25 of a 40-step WSD run (a parent run in segments, as SLURM
    runs it; the branch itself interrupted and resumed) ends exactly like a 20-step run from
    scratch: warm-up 2, constant to step 10, cool-down over 10 steps."""
    base = tiny_run_config(store, steps=40, eval_points=3)
    optim = _wsd(
        batch_size=base.optim.batch_size,
        base_lr=base.optim.base_lr,
        warmup_steps=2,
        cooldown_frac=0.25,
        cooldown_shape="1-sqrt",
        final_lr_frac=0.0,
    )
    parent = dataclasses.replace(base, run_id="p", optim=optim, save_at=(0.25, 0.5))
    out = tmp_path / "runs"
    write_run(out / "p", parent)
    train_run(out / "p", until=0.5)  # the segment the branches wait for
    status = RunDir(out / "p").read_status()
    assert status["state"] == "queued" and status["step"] == 20
    assert sorted(p.name for p in (out / "p" / "stable").iterdir()) == ["step_10.pt", "step_20.pt"]

    branch = dataclasses.replace(
        parent, run_id="p-b0.25", save_at=(), branch=BranchConfig(parent="p", at=0.25, cooldown=0.5)
    )
    write_run(out / "p-b0.25", branch)
    train_run(out / "p-b0.25", max_steps=4)  # interrupted in its cool-down: resumes like any run
    assert RunDir(out / "p-b0.25").read_status()["state"] == "running"
    train_run(out / "p-b0.25")
    train_run(out / "p")  # the parent's last segment
    assert RunDir(out / "p").read_status()["state"] == "done"

    scratch = dataclasses.replace(
        parent,
        run_id="scratch",
        save_at=(),
        length=LengthConfig(steps=20),
        optim=dataclasses.replace(optim, cooldown_steps=10),
    )
    write_run(tmp_path / "scratch", scratch)
    train_run(tmp_path / "scratch")

    b, s = _last(out / "p-b0.25"), _last(tmp_path / "scratch")
    assert b["step"] == s["step"] == 20
    for key in ("ce_avg", "ce_last", "err_avg", "err_last", "ce_by_scale", "flops", "tokens", "lr"):
        assert b[key] == s[key], key
    wb = torch.load(out / "p-b0.25" / "checkpoint.pt", weights_only=True)["model"]
    ws = torch.load(tmp_path / "scratch" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(wb[k], ws[k]) for k in ws)
    # the branch's evaluations are its own steps only; its compute counts the parent's 10 steps
    records = [json.loads(x) for x in (out / "p-b0.25" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["step"] > 10 for r in records)
    assert b["flops"] == 20 * base.optim.batch_size * (
        _last(out / "p")["flops"] / (40 * base.optim.batch_size)
    )


def test_branch_without_its_parent_state_is_a_clear_error(store, tmp_path, one_thread):
    base = tiny_run_config(store, steps=40)
    branch = dataclasses.replace(
        base,
        run_id="b",
        optim=_wsd(batch_size=16, base_lr=base.optim.base_lr),
        branch=BranchConfig(parent="missing", at=0.25),
    )
    write_run(tmp_path / "b", branch)
    with pytest.raises(ValueError, match="the parent 'missing' has not kept its state at step 10"):
        train_run(tmp_path / "b")


# ----------------------------------------------------------------------------- sweeps


def _branch_sweep(
    tmp_path, store, branches: str, schedule_line: str = "schedule: wsd, ", backend: str = "debug"
):
    """A one-run sweep with `branches` (YAML text); WSD unless `schedule_line` is empty."""
    optim = f"{{{schedule_line}cooldown_frac: 0.25}}"
    return tiny_sweep(
        tmp_path / "s.yaml",
        store,
        tmp_path / "out",
        depths=(1,),
        steps=40,
        backend=backend,
        extra=f"base: {{optim: {optim}}}\n" + branches,
    )


@pytest.mark.parametrize(
    "branches, schedule_line, words",
    [
        (
            "branches: {at: [0.25, 1.2]}\n",
            "schedule: wsd, ",
            "branches.at: branch points are fractions of the parent's length in (0, 1), got 1.2",
        ),
        (
            "branches: {at: [0.25, 0.8]}\n",
            "schedule: wsd, ",
            "branches.at[1]: branch point 0.8 is not before run d1's cool-down",
        ),
        ("branches: {at: [0.25]}\n", "", "branches: run d1 has optim.schedule 'lin0'"),
        ("branches: {cooldown: 1.5}\n", "schedule: wsd, ", "branches.cooldown: must be in (0, 1)"),
    ],
)
def test_bad_branches_in_a_sweep_are_located(tmp_path, store, branches, schedule_line, words):
    with pytest.raises(ConfigError) as e:
        _branch_sweep(tmp_path, store, branches, schedule_line)
    assert words in str(e.value) and "s.yaml:" in str(e.value)


def test_sweep_branches_default_log_spaced_and_launch_runs_them(tmp_path, store, one_thread):
    sweep = _branch_sweep(tmp_path, store, "branches: {points: 2, cooldown: 0.5}\n")
    # halvings of the constant phase (0.75 of the run): 0.375, 0.1875
    assert [r.run_id for r in sweep.runs] == ["d1", "d1-b0.1875", "d1-b0.375"]
    assert sweep.runs[0].config.save_at == (0.1875, 0.375)
    assert [r.parent for r in sweep.runs] == [None, "d1", "d1"]
    assert sweep.runs[2].config.branch == BranchConfig(parent="d1", at=0.375, cooldown=0.5)
    out = launch_mod.launch(sweep, log=lambda s: None)
    assert out.submitted == ["d1", "d1-b0.1875", "d1-b0.375"]
    for run, steps in zip(sweep.runs, (40, 8 + 8, 15 + 15)):
        rec = RunDir(run.run_dir).read_status()
        assert rec["state"] == "done" and rec["step"] == steps, run.run_id
    assert RunDir(sweep.runs[2].run_dir).read_status()["branch_step"] == 15
    again = launch_mod.launch(sweep, log=lambda s: None)
    assert again.submitted == [] and set(again.skipped.values()) == {"done"}
    table = status_mod.render(sweep).splitlines()
    assert table[2].startswith("d1 ") and table[3].startswith("  `- d1-b0.1875")


@pytest.mark.slurm
def test_slurm_branches_wait_for_their_parents_segment(slurm_cluster, tmp_path, store):
    """On SLURM the parent runs as a chain of segment jobs; each branch depends (afterok) on
    the segment that reaches its point, and everything ends done; a relaunch submits nothing."""
    sweep = tiny_sweep(
        tmp_path / "s.yaml",
        store,
        tmp_path / "out",
        depths=(1,),
        steps=40,
        backend="slurm",
        partition=slurm_cluster.partition,
        extra="base: {optim: {schedule: wsd, cooldown_frac: 0.25}}\n"
        "branches: {at: [0.25, 0.5], cooldown: 0.5}\n",
    )
    out = launch_mod.launch(sweep, log=lambda s: None)
    assert out.submitted == ["d1", "d1-b0.25", "d1-b0.5"]
    parent = RunDir(tmp_path / "out" / "d1").read_status()
    segments = parent["segment_jobs"]
    assert list(segments) == ["0.25", "0.5"] and len(parent["job_ids"]) == 3
    for at in ("0.25", "0.5"):
        job = out.jobs[f"d1-b{at}"].job_id
        shown = subprocess.run(
            ["scontrol", "show", "job", job], capture_output=True, text=True
        ).stdout
        assert (
            f"Dependency=afterok:{segments[at]}" in shown
            or "Dependency=(null)" in shown
            and RunDir(tmp_path / "out" / "d1").read_status().get("step", 0) >= 10
        )
    t0 = time.time()
    while any(
        RunDir(r.run_dir).read_status().get("state") not in ("done", "failed") for r in sweep.runs
    ):
        assert time.time() - t0 < 240, "timed out waiting for the SLURM jobs"
        time.sleep(1)
    for run, steps in zip(sweep.runs, (40, 20, 40)):
        rec = RunDir(run.run_dir).read_status()
        assert rec["state"] == "done" and rec["step"] == steps, (run.run_id, rec.get("error"))
    again = launch_mod.launch(sweep, log=lambda s: None)
    assert again.submitted == []


def test_reduced_demo_wsd_runs_end_to_end(tmp_path, store, one_thread):
    """sweeps/demo_wsd.yaml as shipped, reduced: the test token store instead of preparing
    data, 3 sizes, 48 steps, in-process; then `scaling.fit --set law=nd` on its output."""
    data = yaml.safe_load((ROOT / "sweeps" / "demo_wsd.yaml").read_text())
    assert data["branches"] == {"at": [0.125, 0.25, 0.5], "cooldown": 0.2}
    data.update(
        output=str(tmp_path / "out"), data={"tokens": str(store)}, grid={"depth": [3, 2, 1]}
    )
    data.pop("prepare")
    data["base"]["length"] = {"steps": 48}
    data["base"]["optim"]["batch_size"] = 16
    data["overrides"] = {d: {"model": {"width": 16 * d, "heads": d}} for d in (1, 2, 3)}
    data["eval"].update(points=2, batch_size=32)
    data["cluster"]["backend"] = "debug"
    data["fit"]["bootstrap"] = 20
    path = tmp_path / "demo_wsd.yaml"
    path.write_text(yaml.safe_dump(data))
    sweep = load_sweep(path)
    out = launch_mod.launch(sweep, log=lambda s: None)
    assert len(out.submitted) == 12
    assert all(RunDir(r.run_dir).read_status()["state"] == "done" for r in sweep.runs)
    doc = fit_run(
        [str(tmp_path / "out"), "--no-plots", "--set", "metrics=[ce_avg]"]
    )  # law: nd from fit.yaml
    rec = doc["joint"][0]
    assert doc["law"] == "nd" and doc["settings"]["sources"]["law"] == "fit.yaml"
    assert rec["n_points"] == 12 and rec["n_sizes"] == 3
    # branch points are 6, 12, 24 steps (+ 2, 3, 6 of cool-down), the parents 48: D = steps x 16 x
    # 14
    assert sorted({p["D"] for p in rec["points"]}) == [
        8 * 16 * 14,
        15 * 16 * 14,
        30 * 16 * 14,
        48 * 16 * 14,
    ]
    assert rec["compute_model"]["max_rel_error_on_runs"] < 0.05
