"""The job lifecycle as a user lives it: status is right at every poll of a local launch
(one slot, three runs, the first fails), SIGTERM to the launcher stops its jobs cleanly and
the next launch resumes them, the launch's exit code and error lines, the run-directory lock,
`--retry-failed --reconfigure`, and a dry run on a machine without SLURM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scaling.core.rundir import RunDir
from scaling.core.runlock import RunLock, RunLocked
from scaling.study.run import launch as launch_mod
from scaling.study.run.checks import ConfigConflict
from scaling.study.run.states import run_states
from scaling.study.sweep.sweep import load_sweep
from scaling.training.job import train_run
from tests.factories import (
    SYNTHETIC,
    TINY_VQVAE,
    make_token_store,
    tiny_run_config,
    tiny_sweep,
    write_run,
    write_sweep,
)
from tests.study.run.test_launch import ROOT, metrics

STEPS = 80
FAIL_D1 = """\
overrides:
  d1: {optim.base_lr: 1.0e+30}   # d1 fails: its loss is not finite within a few steps
"""
# d2 is stopped by SIGTERM after its first checkpoint (step 10): it must still be training
# when the signal reaches it (up to ~1 s through the launcher's poll), on any machine
D2_STEPS = 600
STOP_D2 = FAIL_D1 + f"  d2: {{length.steps: {D2_STEPS}}}\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


def snapshot(sweep) -> dict[str, str]:
    return {run_id: s for run_id, (s, _, _) in run_states(sweep.runs).items()}


def test_status_is_true_at_every_poll_and_sigterm_stops_local_jobs_cleanly(
    tmp_path, store, capsys, one_thread
):
    """array_parallelism 1, runs d1 (fails), d2, d3. Every poll: no run ever reads failed
    or orphaned but d1; d1 never goes back from failed; at most one run is running; runs
    waiting for the slot are queued. SIGTERM to the launcher while d2 trains: d2 checkpoints
    and is `stopped`, d3 goes back to pending, exit code 143. A plain relaunch resumes d2
    (evaluations neither lost nor repeated) and runs d3; it exits 1 naming d1's error."""
    path = tmp_path / "s.yaml"
    tiny_sweep(path, store, tmp_path / "out", depths=(1, 2, 3), steps=STEPS, extra=STOP_D2)
    text = path.read_text().replace("signal_delay_s", "array_parallelism: 1\n  signal_delay_s")
    path.write_text(text)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaling.launch", str(path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sweep = load_sweep(path)
    polls, seen, d1_failed_at, sent = 0, set(), None, False
    d2 = RunDir(sweep.output / "d2")
    try:
        while proc.poll() is None:
            s = snapshot(sweep)
            polls += 1
            seen.add(tuple(sorted(s.items())))
            assert all(s[r] not in ("failed", "orphaned") for r in ("d2", "d3")), s
            assert list(s.values()).count("running") <= 1, s
            if s["d1"] == "failed":
                d1_failed_at = d1_failed_at or polls
            if d1_failed_at:
                assert s["d1"] == "failed", s  # never downgraded
            if s["d2"] in ("queued", "running") or s["d1"] in ("queued", "running"):
                assert s["d3"] in ("pending", "queued"), s
            if not sent and s["d2"] == "running" and d2.checkpoint.exists():
                proc.send_signal(signal.SIGTERM)  # `timeout`, a closed terminal, kill
                sent = True
            time.sleep(0.1)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sent, f"d2 never ran long enough to be stopped:\n{stdout}\n{stderr}"
    assert proc.returncode == 143, (stdout, stderr)
    assert "SIGTERM: stopping 1 running local jobs" in stderr  # progress and notes: stderr
    final = snapshot(sweep)
    assert final == {"d1": "failed", "d2": "stopped", "d3": "pending"}, (final, stdout, stderr)
    rec = d2.read_status()
    assert rec["stopped_by"] == "SIGTERM" and 10 <= rec["step"] < D2_STEPS, rec["step"]
    assert (d2.path / "checkpoint.pt").exists()
    assert (
        "NonFiniteLoss: training loss became non-finite"
        in RunDir(sweep.output / "d1").read_status()["error"]
    )
    print(f"{polls} polls, {len(seen)} distinct status snapshots, all consistent")

    # the next launch (in this process, to save a second start-up) resumes d2 and runs d3;
    # d1 stays failed: exit 1 with its error line
    assert launch_mod.main([str(path), "--backend", "debug"]) == 1
    out, err = capsys.readouterr()
    assert "d1: failed earlier: NonFiniteLoss: training loss became non-finite" in err
    assert "error: 1 runs failed: d1: NonFiniteLoss:" in err
    assert snapshot(sweep) == {"d1": "failed", "d2": "done", "d3": "done"}
    rec = d2.read_status()
    assert rec["restarts"] == 1 and len(rec["job_ids"]) == 2 and rec["backend"] == "debug"
    steps = [m["step"] for m in metrics(d2.path)]
    assert steps == sorted(set(steps)) and steps[-1] == D2_STEPS and len(steps) == 3


def test_second_trainer_on_a_run_directory_is_refused_and_a_stale_lock_is_taken_over(
    tmp_path, store
):
    run_dir = write_run(tmp_path / "r", tiny_run_config(store, steps=4, eval_points=1))
    with RunLock(run_dir) as held:
        assert held.holder()["pid"] == os.getpid()
        before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
        with pytest.raises(
            RunLocked,
            match=r"another trainer is writing this run directory "
            rf"\(host \S+, pid {os.getpid()}, started 20",
        ):
            train_run(run_dir)
        after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
        assert after == before  # the refused trainer wrote nothing
    # a lock file left by a crashed trainer (holder info, no lock held): taken over
    (run_dir / ".lock").write_text(json.dumps({"host": "gone", "pid": 999999, "since": 0}))
    train_run(run_dir)
    assert RunDir(run_dir).read_status()["state"] == "done"
    assert (run_dir / ".lock").read_text() == ""  # released cleanly


def test_retry_failed_reconfigure_keeps_the_old_attempt(tmp_path, store):
    path = tmp_path / "s.yaml"
    bad = tiny_sweep(
        path, store, tmp_path / "out", depths=(1,), steps=6, backend="debug", extra=FAIL_D1
    )
    out = launch_mod.launch(bad, log=lambda s: None)
    assert out.failed and RunDir(tmp_path / "out" / "d1").read_status()["state"] == "failed"
    old_config = (tmp_path / "out" / "d1" / "config.yaml").read_text()
    fixed = tiny_sweep(path, store, tmp_path / "out", depths=(1,), steps=6, backend="debug")
    with pytest.raises(ConfigConflict, match=r"relaunch with --retry-failed --reconfigure"):
        launch_mod.launch(fixed, retry_failed=True, log=lambda s: None)
    assert (tmp_path / "out" / "d1" / "config.yaml").read_text() == old_config  # untouched
    lines = []
    out = launch_mod.launch(fixed, retry_failed=True, reconfigure=True, log=lines.append)
    assert out.submitted == ["d1"] and not out.failed
    attempt = tmp_path / "out" / "d1" / "attempts" / "1"
    assert (attempt / "config.yaml").read_text() == old_config
    reason = json.loads((attempt / "reason.json").read_text())
    assert reason["state"] == "failed" and reason["error"].startswith("NonFiniteLoss")
    assert "--reconfigure" in reason["reason"]
    assert json.loads((attempt / "status.json").read_text())["state"] == "failed"
    rec = RunDir(tmp_path / "out" / "d1").read_status()
    assert rec["state"] == "done" and rec["attempts"] == 1
    assert any("attempt kept in" in line for line in lines)
    # the CLI refuses --reconfigure alone
    with pytest.raises(SystemExit):
        launch_mod.main([str(path), "--reconfigure"])


def test_dry_run_needs_no_slurm(tmp_path, monkeypatch, capsys):
    """No sbatch, no srun on PATH (a laptop): the depth grid's dry run still prints."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find
    assert launch_mod.main([str(ROOT / "sweeps" / "depth_grid.yaml"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    # the launch's own check: here it would run locally, and the dry run says so
    assert "(backend local; no `sbatch` found: running with submitit's local executor" in text
    assert "where SLURM answers (cluster.backend auto), it would submit these jobs" in text
    assert text.count("#!/bin/bash") == 3 and "srun --unbuffered" in text
    assert not (tmp_path / "runs").exists()


def test_dry_run_names_the_backend_the_launch_will_use(tmp_path, monkeypatch, capsys):
    """`sbatch` installed but the controller silent: launch falls back to the local executor,
    and so does the dry run's backend line (the same check), not "slurm"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, code in (("sbatch", 0), ("sinfo", 1)):  # sinfo failing: no controller
        (bin_dir / tool).write_text(f"#!/bin/sh\nexit {code}\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert launch_mod.main([str(ROOT / "sweeps" / "demo.yaml"), "--dry-run"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(
        "(backend local; `sbatch` is installed but the SLURM controller does not answer: "
        "running with submitit's local executor on this machine)"
    )


def test_sigterm_while_a_local_preparation_stage_runs_stops_it_and_the_relaunch_resumes(
    tmp_path, capsys, one_thread
):
    """SIGTERM to a local launcher while its VQVAE trains: the stage stops at once (no
    further stage or run starts), is recorded `stopped` (status says so), the launch exits
    143; the next launch resumes the VQVAE from its last checkpoint and finishes the study."""
    # long enough to be stopped after its first checkpoint (step 20)
    vqvae = {**TINY_VQVAE, "steps": 160, "log_every": 10, "ckpt_every": 20}
    out = tmp_path / "out"
    path = write_sweep(
        tmp_path / "prep.yaml",
        out,
        name="prep",
        data=None,
        depths=(1,),
        prepare={"synthetic": SYNTHETIC, "vqvae": vqvae, "tokenize": {"batch_size": 8}},
        base={"optim": {"batch_size": 4}, "length": {"steps": 6}},
        eval={"points": 2, "batch_size": 8},
        cluster={"backend": "local"},
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    launch = [sys.executable, "-m", "scaling.launch", str(path)]
    proc = subprocess.Popen(
        launch, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    state_file = out / "_data" / "vqvae" / "train_state.pt"
    deadline = time.time() + 240
    try:
        while proc.poll() is None and not state_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert state_file.exists(), "the VQVAE never checkpointed"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, (stdout, stderr)
    assert "SIGTERM: stopping preparation stage vqvae (1 running local jobs)" in stderr
    assert "submitted tokenize" not in stderr and "started as local job" not in stderr
    jobs = out / "_data" / "jobs"
    rec = json.loads((jobs / "vqvae" / "status.json").read_text())
    assert (rec["state"], rec["stopped_by"]) == ("stopped", "SIGTERM"), rec
    assert not (jobs / "tokenize").exists()
    assert not (out / "_data" / "vqvae" / "vqvae.pt").exists()  # stopped before its end
    # the lines up to the first checkpoint (step 20), with their measured images/s
    logged = (out / "_data" / "vqvae" / "vqvae_metrics.jsonl").read_text().splitlines()
    before = [line for line in logged if json.loads(line)["step"] <= 20]
    status = subprocess.run(
        [sys.executable, "-m", "scaling.status", str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert "vqvae stopped" in status and "d1   pending" in status, status

    # the relaunch in this process (debug backend): it saves four job start-ups
    assert launch_mod.main([str(path), "--backend", "debug"]) == 0, capsys.readouterr().err
    rec = json.loads((jobs / "vqvae" / "status.json").read_text())
    assert rec["state"] == "done" and len(rec["job_ids"]) == 2
    # resumed from a checkpoint, not from 0: the early lines are the first job's, byte for
    # byte (a rerun would log its own images/s), and every step is logged once
    logged = (out / "_data" / "vqvae" / "vqvae_metrics.jsonl").read_text().splitlines()
    assert logged[: len(before)] == before
    steps = [json.loads(line)["step"] for line in logged if "loss" in json.loads(line)]
    assert steps == list(range(10, 161, 10)), steps
    assert RunDir(out / "d1").read_status()["state"] == "done"
