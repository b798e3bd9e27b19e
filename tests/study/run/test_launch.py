"""The launcher without SLURM: dry run of the paper's grid, idempotency against a faked
queue, the local and debug backends running a tiny sweep for real, and the status table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scaling.core.cli import RuntimeFailure
from scaling.core.config_io import ConfigError, dump_yaml, load_yaml
from scaling.core.rundir import RunDir
from scaling.study.run import launch as launch_mod
from scaling.study.run import status as status_mod
from scaling.study.run.checks import ConfigConflict
from scaling.study.run.outputs import output_lock
from scaling.study.run.progress import progress_line, progress_update
from scaling.study.run.states import _in_range, effective_state
from tests.factories import line_of, make_token_store, tiny_sweep, write_sweep
from tests.paths import ROOT


def metrics(run_dir: Path) -> list[dict]:
    """The run's evaluation records without the timing fields (which differ run to run)."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for k in ("wall_s", "eval_s"):
            rec.pop(k, None)
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


# ----------------------------------------------------------------------------- dry run


def test_dry_run_of_depth_grid_prints_plan_and_sbatch(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # output runs/depth_grid is relative: nothing may appear here
    assert launch_mod.main([str(ROOT / "sweeps" / "depth_grid.yaml"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line.split() and line.split()[0].startswith("d") and line.split()[0][1:].isdigit()
    }
    assert list(rows) == [
        "d6",
        "d8",
        "d10",
        "d12",
        "d14",
        "d16",
        "d18",
        "d20",
        "d22",
        "d24",
        "d26",
        "d30",
    ]
    d16 = rows["d16"]
    assert d16[1:3] == ["16", "310,283,520"]
    # 200 epochs x 1,281,167 images x 680 tokens = 174.2e9 tokens
    assert d16[3] == "174G" and 200 * 1_281_167 * 680 == 174_238_712_000
    assert d16[-1] == "2x8" and rows["d30"][-1] == "4x8" and rows["d6"][-1] == "1x8"
    assert rows["d30"][3] == "305G"  # 350 epochs
    # GPU-hours = FLOPs / (300 TFLOP/s) / 3600
    assert float(d16[5].replace(",", "")) == pytest.approx(float(d16[4]) / 300e12 / 3600, abs=1)
    assert text.count("#!/bin/bash") == 3  # one array per resource shape
    for flag in (
        "#SBATCH --array=0-3%4",
        "#SBATCH --nodes=2",
        "#SBATCH --nodes=4",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=2880",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --job-name=depth_grid",
        "source .venv/bin/activate",
    ):
        assert flag in text, flag
    assert not (tmp_path / "runs").exists()


def test_dry_run_shows_preparation_dependency(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    write_sweep(
        path,
        tmp_path / "out",
        name="p",
        depths=(1,),
        data={"tokens": None},
        prepare={"synthetic": {"num_classes": 4}, "vqvae": {}, "tokenize": {"shards": 2}},
        base={"length": {"steps": 10}},
        eval={"points": 2},
        cluster={"backend": "slurm"},
    )
    assert launch_mod.main([str(path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "preparation stages (training waits for them): synthetic -> vqvae -> tokenize" in text
    assert "#SBATCH --dependency=afterok:PREPARE_JOB_IDS" in text


def test_bad_sweep_is_a_located_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    write_sweep(path, "o", depths=(4,), cluster={"nodez": 1})
    assert launch_mod.main([str(path), "--dry-run"]) == 2
    assert (
        f"error: {path}:{line_of(path.read_text(), 'nodez')}: cluster.nodez: unknown key "
        "(did you mean 'nodes'?)" in capsys.readouterr().err
    )


# ----------------------------------------------------------------------------- idempotency


class FakeQueue:
    """A scheduler that knows some job ids."""

    def __init__(self, states: dict[str, str]):
        self.known = states
        self.asked: list[str] = []

    def states(self, job_ids):
        self.asked += list(job_ids)
        return {j: self.known[j] for j in job_ids if j in self.known}


def test_launch_submits_only_what_needs_it(tmp_path, store):
    sweep = tiny_sweep(
        tmp_path / "s.yaml",
        store,
        tmp_path / "out",
        depths=(1, 2, 3, 4, 5, 6),
        backend="debug",
        extra="fit: {irreducible: paper, holdout: 1}\n",
    )
    ids = [r.run_id for r in sweep.runs]
    assert ids == ["d1", "d2", "d3", "d4", "d5", "d6"]
    given = {
        "d1": {"state": "done", "job_ids": ["100"]},
        "d2": {"state": "queued", "job_ids": ["101"]},
        "d3": {"state": "running", "job_ids": ["99", "102"]},
        "d4": {"state": "running", "job_ids": ["103"]},  # its job is gone
        "d5": {"state": "failed", "job_ids": ["104"], "error": "boom"},
    }
    for run_id, rec in given.items():
        RunDir(tmp_path / "out" / run_id).update_status(backend="slurm", **rec)
    queue = FakeQueue({"101": "PENDING", "102": "RUNNING", "103": "CANCELLED"})
    calls = []
    out = launch_mod.launch(
        sweep,
        queues={"slurm": queue},
        wait=False,
        job_factory=lambda: calls.append,
        log=lambda s: None,
    )
    assert out.submitted == ["d6"]
    assert out.skipped == {
        "d1": "done",
        "d2": "queued (job 101)",
        "d3": "running (job 102)",
        "d4": "failed (use --retry-failed)",
        "d5": "failed (use --retry-failed)",
    }
    assert sorted(queue.asked) == ["101", "102", "103"]  # the latest job of live records only
    d4 = RunDir(tmp_path / "out" / "d4").read_status()
    assert (d4["state"], d4["slurm_state"]) == ("failed", "CANCELLED")
    d6 = RunDir(tmp_path / "out" / "d6").read_status()
    assert (d6["state"], d6["attempts"], d6["backend"]) == ("queued", 1, "debug")
    # every run's resolved config is written, and the fit defaults
    for run in sweep.runs:
        assert (run.run_dir / "config.yaml").read_text() == dump_yaml(run.config)
    fit, _ = load_yaml(tmp_path / "out" / "fit.yaml")
    assert fit == {"irreducible": "paper", "holdout": 1}  # as given in the sweep

    # again, with --retry-failed: the failed ones go; d6's (debug) job counts as alive here
    queue.known[d6["job_ids"][-1]] = "RUNNING"
    out = launch_mod.launch(
        sweep,
        queues={"slurm": queue, "debug": queue},
        wait=False,
        retry_failed=True,
        job_factory=lambda: calls.append,
        log=lambda s: None,
    )
    assert out.submitted == ["d4", "d5"]
    d5 = RunDir(tmp_path / "out" / "d5").read_status()
    assert (d5["state"], d5["attempts"], d5["job_ids"][0], d5["error"]) == (
        "queued",
        1,
        "104",
        None,
    )
    assert calls == []  # debug jobs only run when waited for; nothing ran


def test_launch_refuses_a_changed_config_and_a_second_launcher(tmp_path, store):
    sweep = tiny_sweep(tmp_path / "s.yaml", store, tmp_path / "out", depths=(1,), backend="debug")
    RunDir(tmp_path / "out" / "d1").update_status(state="done", job_ids=["1"])
    launch_mod.launch(sweep, wait=False, log=lambda s: None)
    changed = tiny_sweep(
        tmp_path / "s.yaml", store, tmp_path / "out", depths=(1,), steps=99, backend="debug"
    )
    with pytest.raises(ConfigConflict, match="d1/config.yaml holds another config"):
        launch_mod.launch(changed, wait=False, log=lambda s: None)
    with output_lock(tmp_path / "out"):
        with pytest.raises(RuntimeFailure, match="another launch is running"):
            launch_mod.launch(sweep, wait=False, log=lambda s: None)


def test_effective_state():
    eff = effective_state
    assert eff({"state": "running", "job_ids": ["7"]}, {"7": "RUNNING"}) == ("running", "RUNNING")
    assert eff({"state": "running", "job_ids": ["7"]}, {"7": "REQUEUED"}) == ("queued", "REQUEUED")
    assert eff({"state": "queued", "job_ids": ["7"]}, {"7": "RUNNING"}) == ("running", "RUNNING")
    assert eff({"state": "queued", "job_ids": ["7"]}, {"7": "TIMEOUT"}) == ("failed", "TIMEOUT")
    # a job the scheduler no longer knows, that left no final state: orphaned
    assert eff({"state": "running", "job_ids": ["7"]}, {}) == ("orphaned", "GONE")
    assert eff({"state": "queued"}, {}) == ("orphaned", None)
    # held by a local launcher until a slot frees: queued while that launcher lives
    waiting = {"state": "queued", "job_ids": ["6"], "waiting_in": {"pid": 42}}
    assert eff(waiting, {"launcher:42": "RUNNING"}) == ("queued", None)
    assert eff(waiting, {"6": "RUNNING"}) == ("orphaned", None)  # an old job id does not count
    assert eff({"state": "stopped", "job_ids": ["7"]}, {}) == ("stopped", None)
    assert eff({"state": "failed", "job_ids": ["7"]}, {"7": "RUNNING"}) == ("failed", "RUNNING")
    assert eff({"state": "done", "job_ids": ["7"]}, {"7": "COMPLETED"}) == ("done", "COMPLETED")
    assert eff({"state": "pending"}, {}) == ("pending", None)
    assert _in_range(5, "4-7%2") and _in_range(3, "1,3,5-6")
    assert not _in_range(8, "4-7%2")


# ----------------------------------------------------------------------------- real runs


def test_local_backend_runs_the_tiny_sweep(tmp_path, store, capsys):
    """submitit's local executor: both runs train to the end; a relaunch submits nothing."""
    sweep = tiny_sweep(tmp_path / "s.yaml", store, tmp_path / "out", backend="local")
    assert launch_mod.main([str(tmp_path / "s.yaml")]) == 0
    printed = capsys.readouterr()
    assert "d1" in printed.out.split("\n", 1)[1]  # the plan table: a result, on stdout
    text = printed.err  # progress: on stderr
    assert (
        "submitting 2 runs (CPU, 10 min) as local jobs" in text
        and "2 runs finished, 0 failed" in text
    )
    for run in sweep.runs:
        rec = RunDir(run.run_dir).read_status()
        assert rec["state"] == "done" and rec["backend"] == "local" and rec["step"] == 24
        m = metrics(run.run_dir)
        assert len(m) == 3 and m[-1]["step"] == 24 and m[-1]["ce_avg"] > 0
    again = launch_mod.launch(sweep, log=lambda s: None)
    assert again.submitted == [] and set(again.skipped.values()) == {"done"}
    assert status_mod.main([str(tmp_path / "s.yaml"), "--only", "d2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"tiny: 1 runs in {tmp_path / 'out'} (1 done)"
    assert table[1].split() == [
        "run",
        "state",
        "progress",
        "latest",
        "test",
        "metrics",
        "jobs",
        "log",
    ]
    row = table[2]
    last = metrics(tmp_path / "out" / "d2")[-1]
    assert row.startswith("d2  ") and " done " in row and "step 24, 5.38K tok (100%)" in row
    assert f"ce_avg {last['ce_avg']:.4f} ce_last {last['ce_last']:.4f}" in row
    assert row.endswith(RunDir(tmp_path / "out" / "d2").read_status()["log"])


def test_debug_backend_runs_in_process_and_status_shows_failures(tmp_path, store):
    sweep = tiny_sweep(
        tmp_path / "s.yaml", store, tmp_path / "out", depths=(1,), steps=6, backend="debug"
    )
    out = launch_mod.launch(sweep, log=lambda s: None)
    assert out.submitted == ["d1"]
    assert RunDir(tmp_path / "out" / "d1").read_status()["state"] == "done"
    assert metrics(tmp_path / "out" / "d1")[-1]["step"] == 6
    # a missing store is found by the launcher, before anything is written
    bad = tiny_sweep(
        tmp_path / "b.yaml", tmp_path / "no-store", tmp_path / "out2", depths=(1,), backend="debug"
    )
    with pytest.raises(
        ConfigError, match=r"b.yaml: data.tokens: token store .*no-store does not exist"
    ):
        launch_mod.launch(bad, log=lambda s: None)
    assert not (tmp_path / "out2").exists()
    # a store with one token outside the vocabulary: the run fails at start, status says why
    broken = make_token_store(tmp_path / "broken")
    tokens = np.load(broken / "val" / "tokens.npy")
    tokens[5, 3] = 32  # vocab is 32
    np.save(broken / "val" / "tokens.npy", tokens)
    bad = tiny_sweep(tmp_path / "b.yaml", broken, tmp_path / "out2", depths=(1,), backend="debug")
    out = launch_mod.launch(bad, log=lambda s: None)
    rec = RunDir(tmp_path / "out2" / "d1").read_status()
    assert rec["state"] == "failed" and out.failed == {"d1": rec["error"]}
    assert "val/tokens.npy: row 5 holds token 32, outside the vocabulary [0, 32)" in rec["error"]
    assert "failed: TokenStoreError" in status_mod.render(bad).splitlines()[2]


def test_progress_line_follows_the_runs(tmp_path):
    store = make_token_store(tmp_path / "store")
    sweep = tiny_sweep(tmp_path / "s.yaml", store, tmp_path / "out", depths=(1, 2, 3))
    assert progress_line(sweep) == "d1 pending | d2 pending | d3 pending"
    RunDir(tmp_path / "out" / "d1").update_status(state="done", final={"ce_avg": 2.71828})
    RunDir(tmp_path / "out" / "d2").update_status(state="running", step=6, total_steps=24)
    RunDir(tmp_path / "out" / "d3").update_status(state="queued", job_ids=["7"])
    assert progress_line(sweep) == "d1 done (ce_avg 2.718) | d2 25% | d3 queued"


def test_progress_updates_name_only_what_changed(tmp_path):
    """16 runs: each line is a summary plus the runs whose part changed, so it fits a terminal."""
    store = make_token_store(tmp_path / "store")
    depths = tuple(range(1, 17))
    sweep = tiny_sweep(tmp_path / "s.yaml", store, tmp_path / "out", depths=depths)
    for d in depths:
        RunDir(tmp_path / "out" / f"d{d}").update_status(state="queued", job_ids=[str(d)])
    RunDir(tmp_path / "out" / "d1").update_status(state="running", step=6, total_steps=24)
    RunDir(tmp_path / "out" / "d2").update_status(state="running", step=12, total_steps=24)
    line, seen = progress_update(sweep, {})
    assert line == "2 of 16 running, 14 queued | d1 25% | d2 50%"
    assert progress_update(sweep, seen) == (None, seen)  # nothing changed: no line
    RunDir(tmp_path / "out" / "d1").update_status(state="done", final={"ce_avg": 2.71828})
    RunDir(tmp_path / "out" / "d3").update_status(state="running", step=0, total_steps=24)
    line, seen = progress_update(sweep, seen)
    assert line == "1 of 16 done, 2 running, 13 queued | d1 done (ce_avg 2.718) | d3 0%"
    assert len(line) < 80
