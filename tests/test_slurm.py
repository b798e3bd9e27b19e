"""The launcher on a real single-node SLURM cluster (scripts/slurm_cluster.sh): a tiny sweep
runs to the end, a relaunch submits nothing, a preempted job is requeued and resumes to the
same metrics as an uninterrupted run, a cancelled job shows as failed and is resubmitted by
--retry-failed. Skipped, with the reason, where no cluster can be started."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from scaling import launch as launch_mod
from scaling import status as status_mod
from scaling.rundir import RunDir
from tests.factories import make_token_store
from tests.test_launch import metrics, tiny_sweep

pytestmark = pytest.mark.slurm

STEPS = 150  # a few seconds of training: long enough to interrupt in the middle


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0, every: float = 0.5):
    """Poll `check` until true; fail naming `what` after `timeout` seconds."""
    t0 = time.time()
    while not check():
        if time.time() - t0 > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def states(sweep) -> dict[str, tuple]:
    return {k: v[:2] for k, v in status_mod.run_states(sweep.runs).items()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


@pytest.fixture(scope="module")
def finished(slurm_cluster, store, tmp_path_factory):
    """Two launches of the same tiny sweep at once: A (d1, d2) runs uninterrupted; in B (d2
    only) the job is preempted in the middle of training. Returns both after all ended."""
    tmp = tmp_path_factory.mktemp("slurm")
    a = tiny_sweep(tmp / "a.yaml", store, tmp / "a", steps=STEPS, backend="slurm",
                   partition=slurm_cluster.partition)
    b = tiny_sweep(tmp / "b.yaml", store, tmp / "b", steps=STEPS, backend="slurm",
                   partition=slurm_cluster.partition)
    t0 = time.time()
    out_a = launch_mod.launch(a, log=lambda s: None)
    out_b = launch_mod.launch(b, only="d2", log=lambda s: None)
    assert out_a.backend == "slurm" and out_a.submitted == ["d1", "d2"] and out_b.submitted == ["d2"]
    b_dir = b.output / "d2"
    wait_for("the first evaluation of B/d2", lambda: (b_dir / "metrics.jsonl").exists()
             and RunDir(b_dir).read_status().get("state") == "running")
    out_b.jobs["d2"]._interrupt()  # as SLURM on preemption: SIGTERM, then USR2 -> requeue
    interrupted_at = len(metrics(b_dir))

    def ended() -> bool:
        recs = [RunDir(r.run_dir).read_status() for r in a.runs] + [RunDir(b_dir).read_status()]
        return all(rec.get("state") in ("done", "failed") for rec in recs)

    wait_for("both launches to end", ended, timeout=240)
    return a, out_a, b, out_b, interrupted_at, time.time() - t0


def test_tiny_sweep_runs_to_the_end_and_relaunch_submits_nothing(finished):
    sweep, out, _, _, _, seconds = finished
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
    wait_for("SLURM to report the jobs completed",
             lambda: status_mod.SlurmQueue().states(ids) == {i: "COMPLETED" for i in ids})
    print(f"two tiny launches on SLURM (one preempted): {seconds:.1f} s")


def test_preempted_job_is_requeued_and_resumes_to_the_same_metrics(finished):
    a, _, b, out_b, interrupted_at, _ = finished
    rec = RunDir(b.output / "d2").read_status()
    assert rec["state"] == "done", rec.get("error")
    # interrupted after its first evaluation and before the last one
    assert 1 <= interrupted_at < 3
    assert rec["restarts"] == 1 and rec["requeued_by"] == "SIGUSR2"
    assert rec["job_ids"] == [out_b.jobs["d2"].job_id] and rec["attempts"] == 1  # requeued
    assert metrics(b.output / "d2") == metrics(a.output / "d2")


def test_cancelled_job_is_failed_and_retried(slurm_cluster, store, tmp_path):
    sweep = tiny_sweep(tmp_path / "c.yaml", store, tmp_path / "out", depths=(1,), steps=10**6,
                       backend="slurm", partition=slurm_cluster.partition)
    out = launch_mod.launch(sweep, log=lambda s: None)
    first = out.jobs["d1"].job_id
    assert launch_mod.launch(sweep, log=lambda s: None).submitted == []  # queued: not again
    wait_for("the run to start training", lambda: states(sweep)["d1"] == ("running", "RUNNING")
             and RunDir(sweep.runs[0].run_dir).read_status()["state"] == "running")
    again = launch_mod.launch(sweep, retry_failed=True, log=lambda s: None)
    assert again.submitted == [] and again.skipped == {"d1": f"running (job {first})"}
    subprocess.run(["scancel", first], check=True)
    wait_for("SLURM to report the job cancelled", lambda: states(sweep)["d1"] == ("failed", "CANCELLED"))
    assert "failed (CANCELLED)" in status_mod.render(sweep)
    skipped = launch_mod.launch(sweep, log=lambda s: None)
    assert skipped.submitted == [] and skipped.skipped == {"d1": "failed (use --retry-failed)"}
    retried = launch_mod.launch(sweep, retry_failed=True, log=lambda s: None)
    assert retried.submitted == ["d1"]
    second = retried.jobs["d1"].job_id
    rec = RunDir(sweep.runs[0].run_dir).read_status()
    assert rec["job_ids"] == [first, second] and rec["attempts"] == 2 and second != first
    assert states(sweep)["d1"][0] in ("queued", "running")
    subprocess.run(["scancel", second], check=True)
    wait_for("the retried job to end", lambda: states(sweep)["d1"][0] == "failed")


@pytest.mark.slow
def test_preparation_stages_run_as_dependent_jobs(slurm_cluster, tmp_path):
    """images + VQVAE -> tokenisation shards (array) -> merge -> training, in one launch."""
    pytest.importorskip("scaling.tokenize", reason="the tokenisation stage is not installed")
    import torch

    from scaling.synthetic import generate
    from var_core import VQVAE, save_model

    generate(tmp_path / "images", num_classes=4, train_per_class=6, val_per_class=4, resolution=16)
    torch.manual_seed(0)
    save_model(tmp_path / "vq.pt", VQVAE(vocab_size=32, z_channels=8, ch=32, ch_mult=(1, 2),
                                         num_res_blocks=1, patch_nums=(1, 2, 4)))
    path = tmp_path / "p.yaml"
    path.write_text(f"""\
name: prep
output: {tmp_path / 'out'}
data: {{images: {tmp_path / 'images'}, vqvae: {tmp_path / 'vq.pt'}}}
prepare:
  tokenize: {{shards: 2, batch_size: 8}}
base:
  model: {{width: 32, heads: 2}}
  optim: {{batch_size: 8}}
  length: {{steps: 6}}
  runtime: {{num_threads: 1}}
eval: {{points: 2, first_frac: 0.5, batch_size: 16}}
grid:
  depth: [1]
cluster: {{backend: slurm, partition: {slurm_cluster.partition}, time_min: 10}}
""")
    from scaling.sweep import load_sweep

    sweep = load_sweep(path)
    out = launch_mod.launch(sweep, log=lambda s: None)
    assert out.stages == ["tokenize[0]", "tokenize[1]", "merge"] and out.submitted == ["d1"]
    merge_id = RunDir(launch_mod.stage_dir(sweep, "merge")).read_status()["job_ids"][-1]
    shown = subprocess.run(["scontrol", "show", "job", out.jobs["d1"].job_id],
                           capture_output=True, text=True).stdout
    assert f"Dependency=afterok:{merge_id}" in shown  # training waits for the store
    run_dir = sweep.runs[0].run_dir
    wait_for("the prepared run to end", lambda: RunDir(run_dir).read_status().get("state")
             in ("done", "failed"), timeout=240)
    rec = RunDir(run_dir).read_status()
    if rec["state"] == "failed" and "quantizer.pt is missing" in str(rec.get("error")):
        # the chain ran (shards -> merge -> training started on the merged store); the
        # trainer then needs the store's quantizer.pt, which scaling.tokenize does not write yet
        pytest.xfail("integration gap: scaling.tokenize does not write quantizer.pt")
    assert rec["state"] == "done", rec.get("error")
    meta = json.loads((sweep.token_store() / "meta.json").read_text())
    assert meta["splits"]["train"]["count"] == 24 and meta["patch_nums"] == [1, 2, 4]
    assert metrics(run_dir)[-1]["step"] == 6
    again = launch_mod.launch(sweep, log=lambda s: None)
    assert again.submitted == [] and again.stages == []
