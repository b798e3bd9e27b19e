"""Training on several nodes of a real SLURM cluster (scripts/testbed/slurm_cluster.sh
`up --nodes 3`: one slurmd per network namespace, each node its own address and hostname).

A sweep with `cluster: {nodes: 2, tasks_per_node: 2}` is submitted through submitit and
trains with gloo across two nodes; its per-step losses, evaluations and final weights equal a
single process with the same global batch (DDP and FSDP). Faults at scale: a preempted job
(SIGUSR2 to every rank) and a job that lost a node (requeued by SLURM, resumed on the nodes it
got) end with the uninterrupted run's metrics; a rank that crashes fails the whole job within
the collective timeout and `scaling.status` names it. Skipped, with the reason, where the
multi-node cluster cannot be made (not root, no network namespaces).

Module fixtures submit the jobs together and wait (the node loss alone, after the others, as
it kills a node); the tests check the outcome.
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
import yaml

from contracts.rank_errors import read_rank_errors
from scaling.core.config_io import ConfigError
from scaling.core.rundir import RunDir
from scaling.study.run import launch as launch_mod
from scaling.study.run import status as status_mod
from scaling.study.run.prepare import stage_dir
from scaling.study.sweep.sweep import load_sweep
from scaling.training.job import TrainJob
from scaling.training.trainer import Trainer
from tests.factories import make_token_store, merged, sweep_spec, write_run
from tests.study.run.test_slurm import prepared_sweep

pytestmark = pytest.mark.multinode

STEPS = 16
CRASH_RANK, CRASH_STEP = 3, 3
HANG_TIMEOUT_S = 20  # the collective timeout of the run whose rank hangs
TIMING = ("wall_s", "eval_s")


def multinode_spec(
    tmp: Path,
    name: str,
    store: Path,
    partition: str,
    *,
    fsdp: bool = False,
    timeout: int = 60,
    cluster: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sweep of these tests (the tests' template): d2 on two nodes of two tasks each,
    every step agreed and logged; `cluster` is laid over its cluster section."""
    return sweep_spec(
        tmp / name,
        name=name,
        store=store,
        depths=(2,),
        base={
            "model": {"drop_path": 0.0},
            "length": {"steps": STEPS},
            "runtime": {
                "checkpoint_every_steps": 4,
                "agree_every_steps": 1,
                "scalars_every_steps": 1,
                "collective_timeout_s": timeout,
                "fsdp": fsdp,
            },
        },
        cluster=merged(
            {
                "backend": "slurm",
                "partition": partition,
                "nodes": 2,
                "tasks_per_node": 2,
                "cpus_per_task": 1,
                "time_min": 10,
                "signal_delay_s": 60,
            },
            cluster or {},
        ),
    )


def wait_for(what: str, check: Callable[[], bool], timeout: float = 300.0, every: float = 0.5):
    """Poll `check` until true; fail naming `what` after `timeout` seconds."""
    t0 = time.time()
    while not check():
        if time.time() - t0 > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def sweep_file(
    tmp: Path, name: str, store: Path, partition: str, *, fsdp: bool = False, timeout: int = 60
):
    path = tmp / f"{name}.yaml"
    spec = multinode_spec(tmp, name, store, partition, fsdp=fsdp, timeout=timeout)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_sweep(path)


def metrics(run_dir: Path) -> list[dict]:
    """Evaluation records without their timing fields."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.append({k: v for k, v in rec.items() if k not in TIMING})
    return out


def assert_same_metrics(run_dir: Path, reference: Path) -> None:
    """Every evaluation equal to the reference's; the standard errors (`*_se`, from sums of
    squares, where a last-bit difference in the all-reduced sums moves the 7th digit) to 1e-5
    relative, everything else exactly."""
    got, want = metrics(run_dir), metrics(reference)
    assert len(got) == len(want), (len(got), len(want))
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        se = [k for k in g if k.endswith("_se")]
        assert {k: g[k] for k in g if k not in se} == {k: w[k] for k in w if k not in se}
        for k in se:
            assert g[k] == pytest.approx(w[k], rel=1e-5), k


class PacedJob(TrainJob):
    """The training job at a walking pace: every rank sleeps `seconds` before each optimizer
    step, so a node can be killed mid-run on a quiet machine too (the results are unchanged)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, run_dir: str, until: float | None = None):
        original, pause = Trainer.train_step, self.seconds

        def train_step(trainer):
            time.sleep(pause)
            return original(trainer)

        Trainer.train_step = train_step
        return super().__call__(run_dir, until)


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


class CrashingRank(TrainJob):
    """The training job, except that rank `rank` raises before optimizer step `step`."""

    def __init__(self, rank: int, step: int):
        self.rank, self.step = rank, step

    def __call__(self, run_dir: str, until: float | None = None):
        import os

        if int(os.environ.get("SLURM_PROCID", "0")) == self.rank:
            original, crash_at, rank = Trainer.train_step, self.step, self.rank

            def train_step(trainer):
                if trainer.step == crash_at:
                    raise ValueError(f"injected crash of rank {rank} at step {crash_at}")
                return original(trainer)

            Trainer.train_step = train_step
        return super().__call__(run_dir, until)


class HangingRank(TrainJob):
    """The training job, except that rank `rank` stops answering before optimizer step
    `step` (it sleeps; it writes the time it began to `<run>/hang_began`)."""

    def __init__(self, rank: int, step: int):
        self.rank, self.step = rank, step

    def __call__(self, run_dir: str, until: float | None = None):
        import os

        if int(os.environ.get("SLURM_PROCID", "0")) == self.rank:
            original, hang_at = Trainer.train_step, self.step

            def train_step(trainer):
                if trainer.step == hang_at:
                    (Path(run_dir) / "hang_began").write_text(repr(time.time()))
                    time.sleep(3600)
                return original(trainer)

            Trainer.train_step = train_step
        return super().__call__(run_dir, until)


@dataclasses.dataclass
class Outcome:
    single: Path  # one process, same global batch
    prep: Any  # the sweep tokenised in two shards
    reference: Path  # the store made by one process
    runs: dict[str, Any]  # "ddp" / "fsdp" / "preempt" / "crash" -> the sweep's run
    sweeps: dict[str, Any]
    jobs: dict[str, str]  # their SLURM job ids
    preempted_at: int  # evaluations written when the preemption was sent
    seconds: float


@pytest.fixture(scope="module")
def outcome(slurm_nodes, tmp_path_factory) -> Outcome:
    tmp = tmp_path_factory.mktemp("multinode")
    store = make_token_store(tmp / "store")
    part = slurm_nodes.partition
    sweeps = {
        "ddp": sweep_file(tmp, "ddp", store, part),
        "fsdp": sweep_file(tmp, "fsdp", store, part, fsdp=True),
        "preempt": sweep_file(tmp, "preempt", store, part),
        "crash": sweep_file(tmp, "crash", store, part),
        "hang": sweep_file(tmp, "hang", store, part, timeout=HANG_TIMEOUT_S),
    }
    runs = {k: s.runs[0] for k, s in sweeps.items()}
    quiet = dict(log=lambda s: None)
    # tokenisation in two shards, each asking for more than half a node's CPUs: SLURM puts
    # them on two nodes
    (tmp / "prep").mkdir()
    prep = prepared_sweep(tmp / "prep", part, prepare={"resources": {"cpus_per_task": 5}})
    t0 = time.time()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(slurm_nodes.conf))  # submitit's sbatch/squeue/sacct
        launch_mod.launch(prep, **quiet)
        outs = {k: launch_mod.launch(sweeps[k], **quiet) for k in ("ddp", "fsdp")}
        # paced, so that the preemption lands mid-run on a quiet machine too
        outs["preempt"] = launch_mod.launch(
            sweeps["preempt"], job_factory=lambda: PacedJob(0.5), **quiet
        )
        outs["crash"] = launch_mod.launch(
            sweeps["crash"], job_factory=lambda: CrashingRank(CRASH_RANK, CRASH_STEP), **quiet
        )
        outs["hang"] = launch_mod.launch(
            sweeps["hang"], job_factory=lambda: HangingRank(CRASH_RANK, CRASH_STEP), **quiet
        )
        # the reference while SLURM works: one process in this one, same config and batch
        from scaling.training.job import train_run

        single = write_run(tmp / "single", sweeps["ddp"].runs[0].config)
        train_run(single)
        # preempt once the run has a checkpoint: as SLURM does, SIGTERM then SIGUSR2 to
        # every task of the job
        pre = runs["preempt"].run_dir
        wait_for(
            "the first evaluation and checkpoint of the preempted run",
            lambda: (
                (pre / "checkpoint.pt").exists()
                and (pre / "metrics.jsonl").exists()
                and RunDir(pre).read_status()["state"] == "running"
            ),
        )
        outs["preempt"].jobs["d2"]._interrupt()
        preempted_at = len(metrics(pre))
        # the one-process store, from the same images and VQVAE
        from scaling.data.tokenize import tokenize

        reference = tokenize(
            prep.images_dir(), prep.vqvae_path(), tmp / "one_process_store", batch_size=8
        )
        wait_for(
            "the multi-node runs and the tokenisation to end",
            lambda: (
                all(
                    RunDir(r.run_dir).read_status().get("state") in ("done", "failed")
                    or sacct(outs[k].jobs["d2"].job_id, slurm_nodes.env())[:1] == ["FAILED"]
                    for k, r in runs.items()
                )
                and RunDir(stage_dir(prep, "merge")).read_status().get("state")
                in ("done", "failed")
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
    return Outcome(
        single=single,
        prep=prep,
        reference=reference,
        runs=runs,
        sweeps=sweeps,
        jobs=jobs,
        preempted_at=preempted_at,
        seconds=time.time() - t0,
    )


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


def stop_lines(job_folder: Path) -> list[tuple[int, str, int, str, bool]]:
    """(rank, host, step, signal, got it itself) of every rank's "stops at step" log line."""
    pattern = r"rank (\d+) on (\S+) stops at step (\d+) \((\w+); this rank got it: (\w+)\)"
    out = []
    for f in sorted(job_folder.glob("*_log.err")):
        for m in re.finditer(pattern, f.read_text()):
            out.append((int(m[1]), m[2], int(m[3]), m[4], m[5] == "True"))
    return out


def test_preemption_reaches_every_rank_and_the_run_resumes_to_the_same_metrics(outcome):
    run = outcome.runs["preempt"]
    rec = RunDir(run.run_dir).read_status()
    assert rec["state"] == "done", rec.get("error")
    assert rec["restarts"] == 1 and rec["requeued_by"] == "SIGUSR2"
    assert rec["job_ids"] == [outcome.jobs["preempt"]]  # requeued: the same job
    assert 1 <= outcome.preempted_at < 3  # interrupted between its evaluations
    # every rank got SIGUSR2 and all stopped at one step, on both nodes
    lines = stop_lines(run.run_dir.parent / "_submitit" / outcome.jobs["preempt"])
    assert sorted(r for r, *_ in lines) == [0, 1, 2, 3], lines
    assert len({step for _, _, step, _, _ in lines}) == 1
    assert all(sig == "SIGUSR2" and got for _, _, _, sig, got in lines), lines
    assert len({host for _, host, *_ in lines}) == 2
    assert_same_metrics(run.run_dir, outcome.runs["ddp"].run_dir)
    print(f"preempted at step {lines[0][2]} on {sorted({h for _, h, *_ in lines})}")


def test_a_crashing_rank_fails_the_job_within_the_timeout_and_status_names_it(outcome, slurm_nodes):
    run = outcome.runs["crash"]
    first = RunDir(run.run_dir).first_rank_error()
    assert first is not None
    assert first.rank == CRASH_RANK and first.error.startswith(
        f"ValueError: injected crash of rank {CRASH_RANK} at step {CRASH_STEP}"
    )
    state, end = sacct(outcome.jobs["crash"], slurm_nodes.env(), "State,End")
    assert state == "FAILED"
    ended = time.mktime(time.strptime(end, "%Y-%m-%dT%H:%M:%S"))
    # the whole job ended well within the collective timeout (60 s) of the crash: srun's
    # --kill-on-bad-exit ends the others, and the timeout bounds it if that fails
    lag = ended - first.time
    assert -1 <= lag < 60, lag
    line = status_mod.render(outcome.sweeps["crash"])
    assert f"rank {CRASH_RANK} on {first.host}: ValueError: injected crash" in line, line
    others = {}
    for rec in read_rank_errors(RunDir(run.run_dir).rank_errors):
        others[rec.rank] = f"{rec.time - first.time:+.1f} s {rec.error[:40]}..."
    print(
        f"rank {CRASH_RANK} crashed at {time.strftime('%H:%M:%S', time.localtime(first.time))}, "
        f"job {state} at {end} ({lag:+.1f} s); rank errors recorded (time after the crash): "
        f"{others}"
    )


def _without(data: Any, key: str) -> Any:
    """`data` with `key` dropped from every mapping in it."""
    if isinstance(data, dict):
        return {k: _without(v, key) for k, v in data.items() if k != key}
    if isinstance(data, list):
        return [_without(v, key) for v in data]
    return data


def test_tokenisation_shards_on_two_nodes_merge_to_the_one_process_store(outcome, slurm_nodes):
    prep = outcome.prep
    hosts = set()
    for shard in (0, 1):
        rec = RunDir(stage_dir(prep, "tokenize", shard)).read_status()
        assert rec["state"] == "done", rec.get("error")
        hosts.add(sacct(rec["job_ids"][-1], slurm_nodes.env(), "NodeList")[0])
    assert len(hosts) == 2, hosts  # the shard array spread over two nodes
    assert RunDir(stage_dir(prep, "merge")).read_status()["state"] == "done"
    ours, ref = prep.token_store(), outcome.reference
    files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
    assert files, "the reference store is empty"
    for rel in files:
        if rel == Path("plan.json"):  # how the store was made: only the shard count differs
            plans = [json.loads((d / rel).read_text()) for d in (ours, ref)]
            assert _without(plans[0], "num_shards") == _without(plans[1], "num_shards")
            continue
        assert (ours / rel).read_bytes() == (ref / rel).read_bytes(), rel
    extra = sorted(
        str(p.relative_to(ours))
        for p in ours.rglob("*")
        if p.is_file() and not (ref / p.relative_to(ours)).exists()
    )
    assert all("/shards/" in f for f in extra), extra  # only the shards' own files
    print(
        f"tokenisation: shards on {sorted(hosts)}; {len(files) - 1} files byte-identical, "
        "plan.json equal but for num_shards"
    )


def test_more_than_the_cluster_offers_is_refused_before_submitting(slurm_nodes, tmp_path):
    store = make_token_store(tmp_path / "store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(slurm_nodes.conf))
        for shape, words in (
            (
                {"nodes": 4, "tasks_per_node": 1},
                "cluster.nodes: run d2 asks for 4 nodes; debug has 3 (sinfo)",
            ),
            (
                {"nodes": None, "tasks_per_node": None, "gpus_per_node": 2},
                "cluster.gpus_per_node: run d2 asks for 2 GPUs per node",
            ),
        ):
            path = tmp_path / "big.yaml"
            spec = multinode_spec(tmp_path, "big", store, "debug", cluster=shape)
            path.write_text(yaml.safe_dump(spec, sort_keys=False))
            with pytest.raises(ConfigError) as e:
                launch_mod.launch(load_sweep(path), log=lambda s: None)
            assert str(e.value).startswith(f"{path}:") and words in str(e.value), str(e.value)
            assert not (tmp_path / "big").exists()  # nothing written, nothing submitted
        queued = subprocess.run(
            ["squeue", "-h", "-o", "%j"], capture_output=True, text=True, env=slurm_nodes.env()
        ).stdout.split()
        assert "big" not in queued


def _short(error: str) -> str:
    """An error's first 100 characters without gloo's source locations."""
    return re.sub(r"\[/[^\]]*\] ", "", error)[:100]


def test_a_hanging_rank_fails_the_job_at_the_collective_timeout(outcome, slurm_nodes):
    run = outcome.runs["hang"]
    began = float((run.run_dir / "hang_began").read_text())
    first = RunDir(run.run_dir).first_rank_error()
    assert first is not None and first.rank != CRASH_RANK  # the hanging rank says nothing
    waited = first.time - began
    # the others waited in a collective for the timeout, then failed (not a hang)
    assert HANG_TIMEOUT_S - 1 <= waited < HANG_TIMEOUT_S + 30, waited
    state, end = sacct(outcome.jobs["hang"], slurm_nodes.env(), "State,End")
    assert state == "FAILED"
    lag = time.mktime(time.strptime(end, "%Y-%m-%dT%H:%M:%S")) - began
    assert lag < HANG_TIMEOUT_S + 40, lag
    line = status_mod.render(outcome.sweeps["hang"])
    assert f"rank {first.rank} on {first.host}: " in line, line
    print(
        f"rank {CRASH_RANK} hung; rank {first.rank} failed {waited:.1f} s later "
        f"(timeout {HANG_TIMEOUT_S} s): {_short(first.error)}; job {state} "
        f"{lag:.1f} s after the hang began"
    )


@dataclasses.dataclass
class NodeLoss:
    run: Any
    job_id: str
    killed: str  # the node killed (rank 0's)
    nodes_before: str
    nodes_after: str
    timeline: list[tuple[float, str]]  # (seconds after the kill, event)


def _job_fields(job_id: str, env: dict) -> dict[str, str]:
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, env=env
    ).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


@pytest.fixture(scope="module")
def node_loss(outcome, slurm_nodes, tmp_path_factory) -> NodeLoss:
    """After the other jobs (a lost node would take theirs too): a run loses rank 0's node
    mid-training; SLURM requeues it and it resumes on the nodes it gets."""
    tmp = tmp_path_factory.mktemp("nodeloss")
    store = Path(outcome.runs["ddp"].config.data.store)
    sweep = sweep_file(tmp, "lost", store, slurm_nodes.partition)
    run, env = sweep.runs[0], slurm_nodes.env()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(slurm_nodes.conf))
        job_id = (
            launch_mod.launch(sweep, job_factory=lambda: PacedJob(1.0), log=lambda s: None)
            .jobs["d2"]
            .job_id
        )
        wait_for(
            "the first checkpoint of the run that loses a node",
            lambda: (
                (run.run_dir / "checkpoint.pt").exists()
                and RunDir(run.run_dir).read_status()["state"] == "running"
            ),
        )
        before = _job_fields(job_id, env)["NodeList"]
        killed = RunDir(run.run_dir).read_status()["host"]  # rank 0's node
        t0 = time.time()
        kill = slurm_nodes.script("kill-node", killed, timeout=60)
        assert kill.returncode == 0, kill.stderr
        timeline = [(0.0, f"kill-node {killed} (rank 0's node; job on {before})")]
        seen: set[str] = set()

        def note(key: str, what: str) -> None:
            if key not in seen:
                seen.add(key)
                timeline.append((time.time() - t0, what))

        def done() -> bool:
            node = subprocess.run(
                ["sinfo", "-h", "-n", killed, "-o", "%T"], capture_output=True, text=True, env=env
            ).stdout.strip()
            if node.startswith("down"):
                note("down", f"slurmctld marks {killed} {node}")
            job = _job_fields(job_id, env)
            if job.get("Restarts", "0") != "0":
                note("requeued", f"job requeued (Restarts={job['Restarts']}, {job['JobState']})")
            if "requeued" in seen and job.get("JobState") == "RUNNING":
                note("running", f"job running again on {job['NodeList']}")
            rec = RunDir(run.run_dir).read_status()
            if "running" in seen and rec.get("restarts") == 1 and rec["state"] == "running":
                note("resumed", f"rank 0 started again on {rec['host']}")
            if rec["state"] in ("done", "failed"):
                note("end", f"run {rec['state']} (step {rec.get('step')})")
                return True
            return False

        try:
            wait_for("the run that lost a node to end", done, timeout=300)
        finally:
            back = slurm_nodes.script("up", "--nodes", str(len(slurm_nodes.nodes)), timeout=120)
        assert back.returncode == 0, back.stderr
        timeline.append((time.time() - t0, f"{killed} back (slurm_cluster.sh up)"))
    after = _job_fields(job_id, env)["NodeList"]
    return NodeLoss(run, job_id, killed, before, after, timeline)


def test_a_lost_node_requeues_the_job_and_it_resumes_to_the_same_metrics(outcome, node_loss):
    rec = RunDir(node_loss.run.run_dir).read_status()
    assert rec["state"] == "done", rec.get("error")
    assert rec["restarts"] == 1 and rec["job_ids"] == [node_loss.job_id]
    events = [what for _, what in node_loss.timeline]
    assert any("marks" in e for e in events) and any("requeued" in e for e in events), events
    assert node_loss.killed not in node_loss.nodes_after.replace("[", "").split(",") or (
        node_loss.nodes_after != node_loss.nodes_before
    )
    log = (node_loss.run.run_dir.parent / "_submitit" / node_loss.job_id).glob("*_0_log.err")
    resumed = [int(m) for f in log for m in re.findall(r"resumed at step (\d+)/", f.read_text())]
    assert len(resumed) == 1 and resumed[0] > 0 and resumed[0] % 4 == 0, resumed  # a checkpoint
    assert_same_metrics(node_loss.run.run_dir, outcome.runs["ddp"].run_dir)
    print(f"node loss: resumed from the checkpoint of step {resumed[0]}")
    print(
        f"node loss: job {node_loss.job_id} on {node_loss.nodes_before} -> {node_loss.nodes_after}"
    )
    for t, what in node_loss.timeline:
        print(f"  +{t:5.1f} s  {what}")
