"""The launcher on a real single-node SLURM cluster (scripts/testbed/slurm_cluster.sh): a tiny sweep
runs to the end, a relaunch submits nothing, a preempted job is requeued and resumes to the
same metrics as an uninterrupted run, a cancelled job shows as failed and is resubmitted by
--retry-failed, preparation stages run as jobs the training depends on. Skipped, with the
reason, where no cluster can be started.

To keep the wall time small, one module fixture submits all the launches at once, plays the
scheduler events (preemption, cancellation) and waits; the tests then check the outcome.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scaling.core.rundir import RunDir
from scaling.data.synthetic import generate
from scaling.study.run import launch as launch_mod
from scaling.study.run import status as status_mod
from scaling.study.run.prepare import stage_dir
from scaling.study.run.states import SlurmQueue, run_states
from scaling.study.sweep.sweep import load_sweep
from tests.factories import make_token_store, merged, tiny_sweep, write_sweep
from tests.study.run.test_launch import metrics
from var_core import VQVAE, save_model

pytestmark = pytest.mark.slurm

STEPS = 150  # a few seconds of training: long enough to interrupt in the middle


def wait_for(what: str, check: Callable[[], bool], timeout: float = 180.0, every: float = 0.5):
    """Poll `check` until true; fail naming `what` after `timeout` seconds."""
    t0 = time.time()
    while not check():
        if time.time() - t0 > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def states(sweep) -> dict[str, tuple]:
    return {k: v[:2] for k, v in run_states(sweep.runs).items()}


def state(run_dir: Path) -> str | None:
    return RunDir(run_dir).read_status().get("state")


def prepared_sweep(tmp: Path, partition: str, prepare: dict[str, Any] | None = None):
    """A sweep that tokenises an image folder (2 shards + merge) before training d1;
    `prepare` is laid over its prepare section."""
    import torch

    generate(tmp / "images", num_classes=4, train_per_class=6, val_per_class=4, resolution=16)
    torch.manual_seed(0)
    save_model(
        tmp / "vq.pt",
        VQVAE(
            vocab_size=32,
            z_channels=8,
            ch=32,
            ch_mult=(1, 2),
            num_res_blocks=1,
            patch_nums=(1, 2, 4),
        ),
    )
    path = tmp / "p.yaml"
    write_sweep(
        path,
        tmp / "p",
        name="prep",
        depths=(1,),
        data={"tokens": None, "images": str(tmp / "images"), "vqvae": str(tmp / "vq.pt")},
        prepare=merged({"tokenize": {"shards": 2, "batch_size": 8}}, prepare or {}),
        base={  # the defaults' init and lr schedule: only the preparation matters here
            "model": {"init_adaln_gamma": None},
            "optim": {"batch_size": 8, "base_lr": None, "final_lr_frac": None},
            "length": {"steps": 6},
            "runtime": {"checkpoint_every_steps": None},
        },
        eval={"points": 2, "first_frac": 0.5, "batch_size": 16},
        cluster={
            "backend": "slurm",
            "partition": partition,
            "time_min": 10,
            "cpus_per_task": None,
        },
    )
    return load_sweep(path)


@dataclasses.dataclass
class Outcome:
    a: Any  # sweep A: d1, d2 uninterrupted
    out_a: Any
    b: Any  # sweep B: the same d2, preempted mid-training
    out_b: Any
    interrupted_at: int  # evaluations written before the preemption
    c: Any  # sweep C: d1 with a very long run, cancelled
    first_c: str
    c_states: dict  # what launch/status said along the way
    p: Any  # sweep P: preparation stages
    out_p: Any
    p_dependency: str
    seconds: float


@pytest.fixture(scope="module")
def outcome(slurm_cluster, tmp_path_factory) -> Outcome:
    tmp = tmp_path_factory.mktemp("slurm")
    store = make_token_store(tmp / "store")
    part = slurm_cluster.partition
    a = tiny_sweep(tmp / "a.yaml", store, tmp / "a", steps=STEPS, backend="slurm", partition=part)
    b = tiny_sweep(tmp / "b.yaml", store, tmp / "b", steps=STEPS, backend="slurm", partition=part)
    c = tiny_sweep(
        tmp / "c.yaml", store, tmp / "c", depths=(1,), steps=10**6, backend="slurm", partition=part
    )
    p = prepared_sweep(tmp, part)
    quiet = dict(log=lambda s: None)
    t0 = time.time()
    out_a = launch_mod.launch(a, **quiet)
    out_b = launch_mod.launch(b, only="d2", **quiet)
    out_c = launch_mod.launch(c, **quiet)
    out_p = launch_mod.launch(p, **quiet)
    assert (
        out_a.backend == "slurm" and out_a.submitted == ["d1", "d2"] and out_b.submitted == ["d2"]
    )
    c_states = {"relaunch while queued": launch_mod.launch(c, **quiet)}
    dependency = subprocess.run(
        ["scontrol", "show", "job", out_p.jobs["d1"].job_id], capture_output=True, text=True
    ).stdout
    # preempt B/d2 once it has written its first evaluation
    b_dir = b.output / "d2"
    wait_for(
        "the first evaluation of B/d2",
        lambda: (b_dir / "metrics.jsonl").exists() and state(b_dir) == "running",
    )
    out_b.jobs["d2"]._interrupt()  # as SLURM on preemption: SIGTERM, then USR2 -> requeue
    interrupted_at = len(metrics(b_dir))
    # cancel C/d1 once it trains
    c_dir = c.output / "d1"
    first_c = out_c.jobs["d1"].job_id
    wait_for(
        "C/d1 to train",
        lambda: state(c_dir) == "running" and states(c)["d1"] == ("running", "RUNNING"),
    )
    c_states["relaunch while running"] = launch_mod.launch(c, retry_failed=True, **quiet)
    subprocess.run(["scancel", first_c], check=True)

    # ended: done, or failed, by status.json or because SLURM no longer has the job
    sweeps = [a, b, c] + ([p] if p else [])
    wait_for(
        "the launches to end",
        lambda: all(
            s in ("done", "failed")
            for sw in sweeps
            for s, _ in states(sw).values()
            if s != "pending"
        ),
        timeout=300,
    )
    return Outcome(
        a,
        out_a,
        b,
        out_b,
        interrupted_at,
        c,
        first_c,
        c_states,
        p,
        out_p,
        dependency,
        time.time() - t0,
    )


def test_tiny_sweep_runs_to_the_end_and_relaunch_submits_nothing(outcome):
    sweep, out = outcome.a, outcome.out_a
    array_id = out.jobs["d1"].job_id.split("_")[0]
    assert [out.jobs[r].job_id for r in ("d1", "d2")] == [f"{array_id}_0", f"{array_id}_1"]
    for run in sweep.runs:
        rec = RunDir(run.run_dir).read_status()
        assert rec["state"] == "done", rec.get("error")
        assert rec["step"] == STEPS and rec["attempts"] == 1 and rec["restarts"] == 0
        m = metrics(run.run_dir)
        assert len(m) == 3 and m[-1]["step"] == STEPS
        assert all(k in m[-1] for k in ("ce_avg", "ce_last", "err_avg", "err_last", "flops"))
        assert Path(rec["log"]).exists()
    again = launch_mod.launch(sweep, log=lambda s: None)
    assert again.submitted == [] and again.skipped == {"d1": "done", "d2": "done"}
    assert states(sweep) == {"d1": ("done", None), "d2": ("done", None)}
    # and SLURM (squeue, then sacct) says the jobs ended well
    ids = [out.jobs[r].job_id for r in ("d1", "d2")]
    wait_for(
        "SLURM to report the jobs completed",
        lambda: SlurmQueue().states(ids) == {i: "COMPLETED" for i in ids},
    )
    print(
        f"SLURM launches (A, B preempted, C cancelled, P prepared) ended after "
        f"{outcome.seconds:.1f} s"
    )


def test_preempted_job_is_requeued_and_resumes_to_the_same_metrics(outcome):
    rec = RunDir(outcome.b.output / "d2").read_status()
    assert rec["state"] == "done", rec.get("error")
    # interrupted after its first evaluation and before the last one
    assert 1 <= outcome.interrupted_at < 3
    assert rec["restarts"] == 1 and rec["requeued_by"] == "SIGUSR2"
    assert rec["job_ids"] == [outcome.out_b.jobs["d2"].job_id] and rec["attempts"] == 1
    assert metrics(outcome.b.output / "d2") == metrics(outcome.a.output / "d2")


def test_cancelled_job_is_failed_and_retried(outcome):
    sweep, first = outcome.c, outcome.first_c
    queued = outcome.c_states["relaunch while queued"]
    running = outcome.c_states["relaunch while running"]
    assert queued.submitted == [] and running.submitted == []  # never a second job on a run
    assert running.skipped == {"d1": f"running (job {first})"}
    assert states(sweep)["d1"] == ("failed", "CANCELLED")
    assert "failed (CANCELLED)" in status_mod.render(sweep)
    skipped = launch_mod.launch(sweep, log=lambda s: None)
    assert skipped.submitted == [] and skipped.skipped == {"d1": "failed (use --retry-failed)"}
    rec = RunDir(sweep.runs[0].run_dir).read_status()
    assert (rec["state"], rec["slurm_state"]) == ("failed", "CANCELLED")
    retried = launch_mod.launch(sweep, retry_failed=True, log=lambda s: None)
    assert retried.submitted == ["d1"]
    second = retried.jobs["d1"].job_id
    rec = RunDir(sweep.runs[0].run_dir).read_status()
    assert rec["job_ids"] == [first, second] and rec["attempts"] == 2 and second != first
    assert states(sweep)["d1"][0] in ("queued", "running")
    subprocess.run(["scancel", second], check=True)
    wait_for("the retried job to end", lambda: states(sweep)["d1"][0] == "failed")


def test_preparation_stages_run_as_dependent_jobs(outcome):
    """image folder + VQVAE -> tokenisation shards (array) -> merge -> training, one launch."""
    sweep, out = outcome.p, outcome.out_p
    assert out.stages == ["tokenize[0]", "tokenize[1]", "merge"] and out.submitted == ["d1"]
    merge_id = RunDir(stage_dir(sweep, "merge")).read_status()["job_ids"][-1]
    assert f"Dependency=afterok:{merge_id}" in outcome.p_dependency  # training waited
    line = status_mod.render(sweep).splitlines()[-1]
    assert line.startswith("preparation: ") and "merge done" in line and "tokenize-1 done" in line
    rec = RunDir(sweep.runs[0].run_dir).read_status()
    assert rec["state"] == "done", rec.get("error")
    meta = json.loads((sweep.token_store() / "meta.json").read_text())
    assert meta["splits"]["train"]["count"] == 24 and meta["patch_nums"] == [1, 2, 4]
    assert metrics(sweep.runs[0].run_dir)[-1]["step"] == 6
    again = launch_mod.launch(sweep, log=lambda s: None)
    assert again.submitted == [] and again.stages == []
