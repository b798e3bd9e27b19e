"""Kill soak: a tiny sweep is killed at random moments and relaunched until done; its
metrics.jsonl must equal an uninterrupted run's line for line and its final weights be
bitwise equal.

    python scripts/testbed/kill_soak.py --backend local --kills 14 --seed 0
    python scripts/testbed/kill_soak.py --backend slurm --kills 8 --seed 1   # needs the cluster up

Kinds of kill. Local backend: SIGKILL of a trainer, SIGTERM to a trainer (it checkpoints and
is recorded stopped), SIGUSR2 to a trainer (it checkpoints and submitit requeues it in place),
SIGTERM to the launcher (it stops its jobs cleanly), SIGKILL of the launcher (its jobs go on;
the relaunch must not start duplicates), SIGKILL of a job's submitit controller while its
trainer trains, launcher alive (the trainer finishes; the launcher adopts it and must not
record it failed), and while its trainer is still starting (before it takes the run lock: no
relaunch may start a second trainer). SLURM: `scancel`, `scontrol requeue`, `scancel
--signal=USR2` (preemption), SIGKILL of a trainer. After each kill the sweep is relaunched
with `--retry-failed` whenever no launcher or job is left for a run. At the end the script
prints the counts: kills by kind, resumes (trainer restarts from a checkpoint), evaluations
lost or duplicated (both must be 0), final states that changed (a run read `done` that later
read otherwise: must be 0), the largest number of trainers alive at once against the sweep's
`array_parallelism` (slots) and the runs compared bitwise.

The same engine runs in the test suite (tests/study/run/test_kill_soak.py): a reduced version in CI
and
the full one under `pytest -m soak`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `python scripts/testbed/kill_soak.py` from anywhere

from scaling.core.runlock import RunLock, same_process  # noqa: E402
from scaling.study.run import launch as launch_mod  # noqa: E402
from scaling.study.run.states import job_tasks, run_states  # noqa: E402
from scaling.study.sweep.sweep import load_sweep  # noqa: E402
from tests.factories import make_token_store  # noqa: E402

LOCAL_KINDS = (
    "sigkill-trainer",
    "sigterm-trainer",
    "sigusr2-trainer",
    "sigterm-launcher",
    "sigkill-launcher",
    "sigkill-controller",
    "sigkill-controller-starting",
)
SLURM_KINDS = ("scancel", "scontrol-requeue", "sigusr2-job", "sigkill-trainer")
TIMING = ("wall_s", "eval_s")

SWEEP = """\
name: soak
output: {output}
data:
  tokens: {store}
base:
  model: {{width: 32, heads: 2, init_adaln_gamma: 1.0e-3}}
  optim: {{batch_size: 16, base_lr: 0.005, final_lr_frac: 0.1}}
  length: {{steps: {steps}}}
  runtime: {{num_threads: 1, checkpoint_every_steps: {ckpt_every}, log_every_s: 0.1}}
eval: {{points: {points}, first_frac: 0.05, batch_size: 32}}
grid:
  depth: {depths}
cluster:
  backend: {backend}
  partition: debug
  array_parallelism: {parallel}
  time_min: 30
  signal_delay_s: 60
"""


@dataclass
class Counts:
    """What a soak did and found."""

    kills: dict[str, int] = field(default_factory=dict)
    launches: int = 0
    resumes: int = 0
    lost: int = 0
    duplicated: int = 0
    mismatched_lines: int = 0
    weights_equal: int = 0
    runs: int = 0
    final_changed: int = 0  # runs read `done` that later read another state
    max_alive: int = 0  # the most trainers alive at once
    slots: int = 0  # the sweep's array_parallelism

    @property
    def total_kills(self) -> int:
        return sum(self.kills.values())

    def line(self, backend: str) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kills.items()))
        return (
            f"kill soak [{backend}]: {self.total_kills} kills ({kinds}), {self.launches} "
            f"launches, {self.resumes} resumes from a checkpoint, {self.lost} evaluations "
            f"lost, {self.duplicated} duplicated, {self.mismatched_lines} lines differing, "
            f"{self.final_changed} final states changed, at most {self.max_alive} trainers "
            f"alive at once ({self.slots} slots), final weights bitwise equal in "
            f"{self.weights_equal}/{self.runs} runs"
        )


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _metrics(run_dir: Path) -> list[dict]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for k in TIMING:
            rec.pop(k, None)
        out.append(rec)
    return out


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-6
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


class Soak:
    """One soak over a fresh output folder (see the module docstring)."""

    def __init__(
        self,
        work: Path,
        store: Path,
        backend: str,
        *,
        depths=(1, 2),
        steps: int = 400,
        ckpt_every: int = 4,
        points: int = 6,
        seed: int = 0,
        env: dict | None = None,
        log=print,
        slots: int | None = None,
    ):
        self.work, self.backend, self.log = Path(work), backend, log
        self.work.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.spec = dict(
            store=store,
            steps=steps,
            ckpt_every=ckpt_every,
            points=points,
            depths=list(depths),
            backend=backend,
            parallel=slots or len(depths),
        )
        self.round = 0
        self.new_round()
        self.run_ids = [f"d{d}" for d in depths]
        self.env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), **(env or {}))
        self.launcher: subprocess.Popen | None = None
        self.counts = Counts(slots=self.spec["parallel"])
        self.seen_done: set[str] = set()  # runs of this round read `done`

    def new_round(self) -> None:
        """A fresh output folder (the runs start over)."""
        self.round += 1
        self.seen_done = set()
        self.output = self.work / f"round{self.round}"
        self.sweep = self.work / f"soak{self.round}.yaml"
        self.sweep.write_text(SWEEP.format(output=self.output, **self.spec))

    # ------------------------------------------------------------------ launching
    def launch(self) -> None:
        """Start `launch --retry-failed` (local: it waits; SLURM: it submits and returns)."""
        cmd = [sys.executable, "-m", "scaling.launch", str(self.sweep), "--retry-failed"]
        self.launcher = subprocess.Popen(
            cmd, cwd=self.work, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.counts.launches += 1
        if self.backend == "slurm":
            self.launcher.wait(timeout=300)
            self.launcher = None

    def launcher_alive(self) -> bool:
        return self.launcher is not None and self.launcher.poll() is None

    def states(self) -> dict[str, str]:
        """Every run's state; also watches the invariants: a run read `done` stays done (its
        status.json), and no more trainers are alive at once than the sweep's slots."""
        sweep = load_sweep(self.sweep)
        states = {r: s for r, (s, _, _) in run_states(sweep.runs).items()}
        for run_id in self.run_ids:
            recorded = _status(self.output / run_id).get("state")
            if recorded == "done":
                self.seen_done.add(run_id)
            elif run_id in self.seen_done and recorded is not None:
                self.counts.final_changed += 1
                self.seen_done.discard(run_id)
                self.log(f"  ! {run_id}: recorded {recorded} after done")
        self.counts.max_alive = max(self.counts.max_alive, self.trainers_alive())
        return states

    def trainers_alive(self) -> int:
        """Trainer processes of this round alive now: a run lock's live holder, or a task
        process of one of the runs' local jobs (a trainer still starting holds no lock)."""
        alive = set()
        tasks = job_tasks() if self.backend == "local" else {}
        for run_id in self.run_ids:
            d = self.output / run_id
            holder = RunLock(d).holder()
            if same_process(holder.get("pid"), holder.get("start")):
                alive.add(run_id)
            for job in _status(d).get("job_ids") or []:
                if tasks.get(str(job)):
                    alive.add(run_id)
        return len(alive)

    def all_done(self) -> bool:
        return all(s == "done" for s in self.states().values())

    def keep_going(self) -> None:
        """Relaunch when nothing is left working on an unfinished run."""
        if self.backend == "local" and self.launcher_alive():
            return
        states = self.states()
        if any(s not in ("done", "queued", "running") for s in states.values()):
            self.launch()

    # ------------------------------------------------------------------ killing
    def _training(self) -> list[str]:
        """Runs whose trainer is running and has saved a checkpoint since it started."""
        out = []
        for run_id in self.run_ids:
            d = self.output / run_id
            rec = _status(d)
            t = rec.get("trainer") or {}
            ckpt = d / "checkpoint.pt"
            if (
                rec.get("state") == "running"
                and same_process(t.get("pid"), t.get("start"))
                and ckpt.exists()
                and ckpt.stat().st_mtime > rec.get("started_at", 0)
                and rec.get("step", 0) < rec.get("total_steps", 1) - 8
            ):
                out.append(run_id)
        return out

    def _starting(self) -> list[str]:
        """Runs whose local job's trainer process has started but holds no run lock yet."""
        out = []
        tasks = job_tasks()
        for run_id in self.run_ids:
            d = self.output / run_id
            rec = _status(d)
            jobs = rec.get("job_ids") or []
            if (
                rec.get("state") == "queued"
                and jobs
                and not rec.get("waiting_in")
                and same_process(jobs[-1], rec.get("job_start"))
                and tasks.get(str(jobs[-1]))
                and not same_process(
                    RunLock(d).holder().get("pid"), RunLock(d).holder().get("start")
                )
            ):
                out.append(run_id)
        return out

    def kill_starting_controller(self, timeout: float = 600) -> bool:
        """SIGKILL a local job's controller while its trainer starts (before the run lock)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.all_done():
                return False
            self.keep_going()
            starting = self._starting()
            if starting:
                run_id = self.rng.choice(starting)
                rec = _status(self.output / run_id)
                job = str(rec["job_ids"][-1])
                try:
                    os.kill(int(job), signal.SIGKILL)
                except ProcessLookupError:
                    continue
                kind = "sigkill-controller-starting"
                self.counts.kills[kind] = self.counts.kills.get(kind, 0) + 1
                self.log(f"  kill {self.counts.total_kills}: {kind} on {run_id} (job {job})")
                return True
            time.sleep(0.02)
        raise TimeoutError(f"no job was starting for {timeout:.0f} s")

    def kill(self, kind: str, timeout: float = 600) -> bool:
        """Wait for a run that trains, after a random delay kill it by `kind`."""
        if kind == "sigkill-controller-starting":
            return self.kill_starting_controller(timeout)
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.all_done():
                return False
            self.keep_going()
            if self.all_done():
                return False
            if self._training() and (not kind.endswith("launcher") or self.launcher_alive()):
                # a random moment, then a run that still trains then (on a fast machine a run
                # may end during the delay: a kill after its last step tests no resume)
                time.sleep(self.rng.uniform(0.0, 1.5))
                training = self._training()
                if training:
                    break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"no run trained for {timeout:.0f} s (kill {kind})")
        run_id = self.rng.choice(training)
        rec = _status(self.output / run_id)
        pid, job = (rec.get("trainer") or {}).get("pid"), str((rec.get("job_ids") or ["?"])[-1])
        slurm_env = dict(self.env)
        try:
            if kind == "sigkill-trainer":
                os.kill(pid, signal.SIGKILL)
            elif kind == "sigterm-trainer":
                os.kill(pid, signal.SIGTERM)
            elif kind == "sigusr2-trainer":
                os.kill(pid, signal.SIGUSR2)
            elif kind == "sigkill-controller":  # the trainer goes on; the launcher adopts it
                if not self.launcher_alive() or not same_process(job, rec.get("job_start")):
                    return False
                os.kill(int(job), signal.SIGKILL)
            elif kind in ("sigterm-launcher", "sigkill-launcher"):
                if not self.launcher_alive():
                    return False
                self.launcher.send_signal(
                    signal.SIGTERM if kind == "sigterm-launcher" else signal.SIGKILL
                )
                self.launcher.wait(timeout=300)
            elif kind == "scancel":
                subprocess.run(["scancel", job], env=slurm_env, check=True)
            elif kind == "scontrol-requeue":
                subprocess.run(["scontrol", "requeue", job], env=slurm_env, check=True)
            elif kind == "sigusr2-job":
                subprocess.run(["scancel", "--signal=USR2", job], env=slurm_env, check=True)
            else:
                raise ValueError(f"unknown kill {kind!r}")
        except ProcessLookupError:
            return False
        self.counts.kills[kind] = self.counts.kills.get(kind, 0) + 1
        self.log(
            f"  kill {self.counts.total_kills}: {kind} on {run_id} (job {job}, trainer "
            f"pid {pid}) at step {rec.get('step')}"
        )
        if kind == "sigkill-controller":
            return True  # the trainer goes on to the end
        # wait for the kill to land: the trainer pid ends
        t = rec.get("trainer") or {}
        t1 = time.time()
        while same_process(t.get("pid"), t.get("start")) and time.time() - t1 < 120:
            time.sleep(0.1)
        return True

    def finish(self, timeout: float = 900) -> None:
        t0 = time.time()
        while not self.all_done():
            if time.time() - t0 > timeout:
                raise TimeoutError(f"the soak's runs did not finish: {self.states()}")
            self.keep_going()
            time.sleep(0.3)
        if self.launcher is not None:
            self.launcher.wait(timeout=300)

    def run(self, kills: int, reference: Path, kinds=None) -> Counts:
        """Kill `kills` times (kinds in turn, shuffled), in as many rounds as it takes (a round
        ends when its runs are done); each round is compared with `reference`."""
        kinds = list(kinds or (LOCAL_KINDS if self.backend == "local" else SLURM_KINDS))
        schedule = [kinds[i % len(kinds)] for i in range(kills)]
        self.rng.shuffle(schedule)
        self.launch()
        while schedule:
            if self.kill(schedule[0]):
                schedule.pop(0)
            elif self.all_done():  # this round is over: check it, start another
                self.finish()
                self.compare(reference)
                self.new_round()
                self.launch()
        self.finish()
        self.compare(reference)
        return self.counts

    # ------------------------------------------------------------------ checking
    def compare(self, reference: Path) -> Counts:
        """Compare every run with the uninterrupted reference runs under `reference`."""
        import torch

        c = self.counts
        for run_id in self.run_ids:
            ref, got = _metrics(reference / run_id), _metrics(self.output / run_id)
            ref_steps, got_steps = [r["step"] for r in ref], [r["step"] for r in got]
            c.lost += len(set(ref_steps) - set(got_steps))
            c.duplicated += len(got_steps) - len(set(got_steps))
            c.mismatched_lines += abs(len(ref) - len(got)) + sum(
                not (a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a))
                for a, b in zip(ref, got)
            )
            c.resumes += int(_status(self.output / run_id).get("restarts", 0))
            wa = torch.load(reference / run_id / "checkpoint.pt", weights_only=True)["model"]
            wb = torch.load(self.output / run_id / "checkpoint.pt", weights_only=True)["model"]
            c.weights_equal += int(
                wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
            )
            c.runs += 1
        return c


def reference_runs(work: Path, store: Path, **kw) -> Path:
    """The same sweep trained without interruption (debug backend, in this process)."""
    soak = Soak(work, store, "debug", **kw)
    with contextlib.redirect_stdout(io.StringIO()):
        out = launch_mod.launch(load_sweep(soak.sweep), log=lambda s: None)
    assert not out.failed, out.failed
    return soak.output


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["local", "slurm"], default="local")
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="a fresh folder (default: a temp one)")
    a = p.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="kill-soak-"))
    store = make_token_store(work / "store")
    ref = reference_runs(work / "ref", store, steps=a.steps)
    env = {}
    if a.backend == "slurm":
        env["SLURM_CONF"] = os.environ.get("SLURM_CONF", "/tmp/var-scaling-slurm/slurm.conf")
        os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    soak = Soak(work / a.backend, store, a.backend, steps=a.steps, seed=a.seed, env=env)
    counts = soak.run(a.kills, ref)
    print(counts.line(a.backend))
    ok = (
        counts.lost == counts.duplicated == counts.mismatched_lines == 0
        and counts.weights_equal == counts.runs
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
