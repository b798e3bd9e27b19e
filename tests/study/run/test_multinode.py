"""Training on several nodes of a real SLURM cluster (scripts/testbed/slurm_cluster.sh
`up --nodes 3`: one slurmd per network namespace, each node its own address and hostname).

A sweep with `cluster: {nodes: 2, tasks_per_node: 2}` is submitted through submitit and
trains with gloo across two nodes; its per-step losses, evaluations and final weights equal a
single process with the same global batch (DDP and FSDP). Skipped, with the reason, where the
multi-node cluster cannot be made (not root, no network namespaces).

One module fixture submits the jobs together and waits; the tests check the outcome.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scaling.core.rundir import RunDir
from scaling.study.run import launch as launch_mod
from scaling.study.sweep.sweep import load_sweep
from tests.factories import make_token_store, write_run

pytestmark = pytest.mark.multinode

STEPS = 12
TIMING = ("wall_s", "eval_s")

SWEEP = """\
name: {name}
output: {output}
data:
  tokens: {store}
base:
  model: {{width: 32, heads: 2, init_adaln_gamma: 1.0e-3, drop_path: 0.0}}
  optim: {{batch_size: 16, base_lr: 0.005, final_lr_frac: 0.1}}
  length: {{steps: {steps}}}
  runtime:
    num_threads: 1
    checkpoint_every_steps: 4
    agree_every_steps: 1
    scalars_every_steps: 1
    collective_timeout_s: 60
    fsdp: {fsdp}
eval: {{points: 3, first_frac: 0.2, batch_size: 32}}
grid:
  depth: [2]
cluster:
  backend: slurm
  partition: {partition}
  nodes: 2
  tasks_per_node: 2
  cpus_per_task: 1
  time_min: 10
  signal_delay_s: 60
"""


def wait_for(what: str, check: Callable[[], bool], timeout: float = 300.0, every: float = 0.5):
    """Poll `check` until true; fail naming `what` after `timeout` seconds."""
    t0 = time.time()
    while not check():
        if time.time() - t0 > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def sweep_file(tmp: Path, name: str, store: Path, partition: str, *, fsdp: bool = False):
    path = tmp / f"{name}.yaml"
    path.write_text(
        SWEEP.format(
            name=name,
            output=tmp / name,
            store=store,
            steps=STEPS,
            partition=partition,
            fsdp=str(fsdp).lower(),
        )
    )
    return load_sweep(path)


def metrics(run_dir: Path) -> list[dict]:
    """Evaluation records without their timing fields."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.append({k: v for k, v in rec.items() if k not in TIMING})
    return out


def step_losses(run_dir: Path) -> dict[int, float]:
    """{step: training loss} as the run's TensorBoard event files hold it (every step)."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars("train/loss")}


def rank_hosts(job_folder: Path) -> dict[int, str]:
    """{rank: host} from the job's task logs (each rank logs where it runs)."""
    out = {}
    for f in sorted(job_folder.glob("*_log.err")):
        for m in re.finditer(r"rank (\d+) of \d+ \(local rank \d+\) on host (\S+),", f.read_text()):
            out[int(m.group(1))] = m.group(2)
    return out


def sacct(job_id: str, env: dict, fields: str = "State,NodeList") -> list[str]:
    """The job's allocation line of `sacct` (-X), split on '|'."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", job_id, "-o", fields],
        capture_output=True,
        text=True,
        env=env,
    ).stdout.strip()
    return out.splitlines()[-1].split("|") if out else []


@dataclasses.dataclass
class Outcome:
    single: Path  # one process, same global batch
    runs: dict[str, Any]  # "ddp" / "fsdp" -> the sweep's run
    jobs: dict[str, str]  # their SLURM job ids
    seconds: float


@pytest.fixture(scope="module")
def outcome(slurm_nodes, tmp_path_factory) -> Outcome:
    tmp = tmp_path_factory.mktemp("multinode")
    store = make_token_store(tmp / "store")
    part = slurm_nodes.partition
    sweeps = {
        "ddp": sweep_file(tmp, "ddp", store, part),
        "fsdp": sweep_file(tmp, "fsdp", store, part, fsdp=True),
    }
    t0 = time.time()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(slurm_nodes.conf))  # submitit's sbatch/squeue/sacct
        outs = {k: launch_mod.launch(s, log=lambda s: None) for k, s in sweeps.items()}
        # the reference while SLURM works: one process in this one, same config and batch
        from scaling.training.job import train_run

        config = sweeps["ddp"].runs[0].config
        single = write_run(tmp / "single", config)
        train_run(single)
        runs = {k: s.runs[0] for k, s in sweeps.items()}
        wait_for(
            "the multi-node runs to end",
            lambda: all(
                RunDir(r.run_dir).read_status().get("state") in ("done", "failed")
                for r in runs.values()
            ),
        )
    jobs = {k: o.jobs["d2"].job_id for k, o in outs.items()}
    wait_for(
        "SLURM to end the jobs",
        lambda: all(
            sacct(j, slurm_nodes.env())[:1] not in ([], ["RUNNING"], ["PENDING"])
            for j in jobs.values()
        ),
        timeout=60,
    )
    return Outcome(single=single, runs=runs, jobs=jobs, seconds=time.time() - t0)


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_two_nodes_equal_one_process(outcome, slurm_nodes, kind):
    import torch

    run = outcome.runs[kind]
    rec = RunDir(run.run_dir).read_status()
    assert rec["state"] == "done", rec.get("error")
    # four ranks on two distinct hosts, node-major (ranks 0, 1 on the job's first node)
    job_folder = run.run_dir.parent / "_submitit" / outcome.jobs[kind]
    hosts = rank_hosts(job_folder)
    assert sorted(hosts) == [0, 1, 2, 3], hosts
    assert len(set(hosts.values())) == 2 and hosts[0] == hosts[1] and hosts[2] == hosts[3]
    state, nodelist = sacct(outcome.jobs[kind], slurm_nodes.env())
    assert state == "COMPLETED"
    # only rank 0 writes: the checkpoint says who wrote it, status.json where rank 0 ran
    ckpt = torch.load(run.run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["writer"] == {"rank": 0, "host": hosts[0]} and rec["host"] == hosts[0]
    assert not (run.run_dir / "rank_errors").exists()
    ref = torch.load(outcome.single / "checkpoint.pt", weights_only=True)
    worst_rel = worst_abs = 0.0
    for key, a in ref["model"].items():
        b = ckpt["model"][key]
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=key)
        diff = (b - a).abs().max().item() if a.numel() else 0.0
        worst_abs = max(worst_abs, diff)
        if a.numel():
            worst_rel = max(worst_rel, (diff / max(a.abs().max().item(), 1e-12)))
    # per-step training losses (every step) and the evaluations
    ours, theirs = step_losses(run.run_dir), step_losses(outcome.single)
    assert sorted(ours) == sorted(theirs) == list(range(1, STEPS + 1))
    loss_rel = max(abs(ours[s] - theirs[s]) / abs(theirs[s]) for s in theirs)
    assert loss_rel <= 1e-5
    m, ref_m = metrics(run.run_dir), metrics(outcome.single)
    assert [r["step"] for r in m] == [r["step"] for r in ref_m]
    for a, b in zip(ref_m, m, strict=True):
        for k in ("train_loss", "ce_avg", "ce_last", "err_avg"):
            assert b[k] == pytest.approx(a[k], rel=1e-5), k
    print(
        f"{kind} on {nodelist} (ranks {hosts}): per-step loss max rel diff {loss_rel:.2e}, "
        f"weights max abs diff {worst_abs:.2e} (max rel to the tensor's max {worst_rel:.2e}); "
        f"jobs ended after {outcome.seconds:.0f} s"
    )
