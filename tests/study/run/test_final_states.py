"""A finished run stays done, a job whose controller died is never launched again while its
trainer lives (or starts), and `array_parallelism` counts the live jobs of earlier launches.

The trainer of a local job is found by its environment (SUBMITIT_LOCAL_JOB_ID, set by
submitit's controller for the tasks it starts), so a process started with that variable stands
in for a trainer that outlived its controller: it is a real process of this machine, and
the launcher must see it as the job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from scaling.core.rundir import RunDir
from scaling.core.runlock import process_start
from scaling.study.run import launch as launch_mod
from scaling.study.run.states import job_tasks, run_states
from scaling.study.run.submit import Submitted, Submitter
from tests.factories import make_token_store
from tests.study.run.test_launch import ROOT, tiny_sweep


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


def dead_pid() -> int:
    """The pid of a process that has ended (a controller killed with SIGKILL)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def stand_in_trainer(job_id: int, seconds: float) -> subprocess.Popen:
    """A process whose environment names local job `job_id`, as submitit's task has."""
    env = dict(os.environ, SUBMITIT_LOCAL_JOB_ID=str(job_id))
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"], env=env)


def test_a_late_failed_never_replaces_done(tmp_path):
    run = RunDir(tmp_path / "r")
    run.update_status(state="running", force=True)
    run.update_status(state="done", force=True, step=6)
    # the launcher's report after a stale read: a state and its outcome fields are dropped
    rec = run.update_status(state="failed", error="the job ended", finished_at=1.0, note="x")
    assert rec["state"] == "done" and "error" not in rec and rec["note"] == "x"
    assert run.read_status()["state"] == "done"
    # the launcher's failed while the trainer still trains is replaced by the trainer's done
    run.update_status(state="running", force=True)
    run.update_status(state="failed", error="the job ended")
    assert run.update_status(state="done", force=True)["state"] == "done"


def test_report_keeps_the_done_the_trainer_wrote_after_its_controller_died(tmp_path, store):
    """The launcher's report reads `running`, the trainer then writes `done`, the report
    writes `failed`: the run stays done and is counted done, not failed."""
    sweep = tiny_sweep(tmp_path / "s.yaml", store, tmp_path / "out", depths=(1,))
    run = RunDir(sweep.output / "d1")
    run.update_status(state="running", force=True)

    class ControllerGone:  # submitit's view of a job whose controller was SIGKILLed
        paths = type("P", (), {"stderr": "log"})()

        def exception(self):
            run.update_status(state="done", force=True)  # the trainer finishes meanwhile
            return RuntimeError("controller killed")

    out = Submitted(backend="local", jobs={"d1": ControllerGone()})
    lines: list[str] = []
    Submitter(sweep, out, lambda: None, lines.append, True, None).report()
    assert out.failed == {} and run.read_status()["state"] == "done"
    assert lines[-1] == "1 runs finished, 0 failed"


def test_status_is_repaired_from_the_run_files_and_fit_names_what_it_leaves_out(
    tmp_path, store, capsys
):
    sweep = tiny_sweep(
        tmp_path / "s.yaml",
        store,
        tmp_path / "out",
        depths=(1, 2, 3, 4),
        steps=6,
        backend="debug",
    )
    assert not launch_mod.launch(sweep, log=lambda s: None).failed
    d1, d2 = RunDir(sweep.output / "d1"), RunDir(sweep.output / "d2")
    # what the stale report of the old launcher wrote over a finished run
    d1.update_status(state="failed", force=True, error="job 42 ended without finishing the run")
    # a run that really did not finish: its checkpoint is before the end
    d2.update_status(state="failed", force=True, error="NonFiniteLoss: boom")
    lines = d2.metrics.read_text().splitlines(keepends=True)
    d2.metrics.write_text("".join(lines[:-1]))
    states = run_states(sweep.runs)
    assert states["d1"][0] == "done" and "job 42 ended" in states["d1"][2]["repaired"]
    assert states["d2"][0] == "failed"
    assert launch_mod.main([str(tmp_path / "s.yaml")]) == 1  # d2 failed, d1 not resubmitted
    assert d1.read_status()["state"] == "done" and d1.read_status()["final"]["step"] == 6
    assert len(d1.read_status().get("job_ids")) == 1
    from scaling.study.laws import fit as fit_mod

    capsys.readouterr()
    fit_mod.main([str(sweep.output), "--no-plots", "--out", str(tmp_path / "fit")])
    err = capsys.readouterr().err
    assert "unfinished run(s): d2 (failed: NonFiniteLoss: boom)" in err


def test_a_trainer_that_outlived_its_controller_is_running_not_orphaned(tmp_path, store):
    """The controller died while the trainer was starting (no lock yet, nothing in status
    but `queued` and the job id): status says running and a launch starts nothing."""
    sweep = tiny_sweep(tmp_path / "s.yaml", store, tmp_path / "out", depths=(1,))
    job = dead_pid()
    start = process_start(os.getpid())  # the controller started before its task
    trainer = stand_in_trainer(job, 60)
    try:
        time.sleep(0.2)
        assert str(job) in job_tasks()
        RunDir(sweep.output / "d1").update_status(
            state="queued", force=True, job_ids=[str(job)], job_start=start, backend="local"
        )
        assert run_states(sweep.runs)["d1"][0] == "running"
        out = launch_mod.launch(sweep, wait=False, log=lambda s: None)
        assert out.submitted == [] and out.skipped["d1"].startswith("running")
    finally:
        trainer.kill()
        trainer.wait()
    assert run_states(sweep.runs)["d1"][0] == "orphaned"  # gone now: the next launch resumes


def test_array_parallelism_counts_the_jobs_of_earlier_launches(tmp_path, store):
    """One slot; d1 trains in a job of an earlier launch whose controller died: the launch
    of d2 waits until d1's trainer has ended before it starts d2."""
    path = tmp_path / "s.yaml"
    tiny_sweep(path, store, tmp_path / "out", depths=(1, 2), steps=6)
    path.write_text(
        path.read_text().replace("signal_delay_s", "array_parallelism: 1\n  signal_delay_s")
    )
    sweep = launch_mod.load_sweep_or_runs(path)
    job = dead_pid()
    t0 = time.time()
    trainer = stand_in_trainer(job, 8)
    RunDir(sweep.output / "d1").update_status(
        state="running", force=True, job_ids=[str(job)], backend="local"
    )
    try:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        proc = subprocess.run(
            [sys.executable, "-m", "scaling.launch", str(path), "--only", "d2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        trainer.kill()
        trainer.wait()
    assert proc.returncode == 0, proc.stderr
    rec = RunDir(sweep.output / "d2").read_status()
    assert rec["state"] == "done"
    # d2's trainer started only after the stand-in for d1's trainer had ended (>= 8 s)
    assert rec["started_at"] >= t0 + 8, (rec["started_at"] - t0, proc.stdout)
