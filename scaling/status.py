"""Where every run of a sweep stands: `python -m scaling.status SWEEP.yaml [--watch]`.

One row per run: state, progress (step, tokens, % of the run's budget), the latest test
metrics, job ids and the log path. States: pending (never submitted), queued (a job waits, or
the local launcher holds it until a slot is free), running, done, failed (with the first line
of the error), stopped (asked to stop; it checkpointed and resumes on the next launch) and
orphaned (recorded queued/running, but its job no longer exists and left no final state: the
next launch resubmits it, and it resumes from its checkpoint). A run's state comes from its
status.json *and* from the scheduler: a recorded queued/running whose job the scheduler says
ended (CANCELLED, TIMEOUT, NODE_FAIL ...) is failed, with that state. Local jobs are checked
by pid *and* process start time, so a reused pid is not mistaken for the job. The launcher
uses the same logic (`effective_state`) to decide what to (re)submit.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

from scaling.config_io import ConfigError

# SLURM states in which a job still exists and may (again) run on its run directory
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED",
          "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "STOPPED"}


class Queue(Protocol):
    """What the scheduler says about job ids: {job_id: STATE}; ids it does not know are left
    out. Local jobs (backend 'local') are process ids."""

    def states(self, job_ids: list[str]) -> dict[str, str]: ...


class QueueError(RuntimeError):
    """The scheduler could not be asked (so nothing can be said about running jobs)."""


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(cmd, 1, "", str(e))


class SlurmQueue:
    """Asks `squeue` (live jobs) and then `sacct` (finished ones) about job ids."""

    def states(self, job_ids: list[str]) -> dict[str, str]:
        """{job_id: SLURM state} for the ids SLURM knows (array tasks as '123_4').

        A job that squeue does not list is not alive, whatever sacct says about it; so if
        squeue itself fails this raises QueueError instead of guessing.
        """
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        # all of this user's jobs (asking for ids fails as soon as one was purged);
        # -r: one line per array task
        proc = _run(["squeue", "--me", "-h", "-r", "-o", "%i %T"])
        if proc.returncode != 0:
            raise QueueError(f"squeue failed: {(proc.stderr or proc.stdout).strip()[:300]}")
        live: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                live[parts[0]] = parts[1]
        out = {i: live[i] for i in ids if i in live}
        # array tasks not started yet may be listed as 123_[4-7%2]
        for i in ids:
            if i not in out and "_" in i:
                base, task = i.split("_", 1)
                for job, state in live.items():
                    if job.startswith(base + "_[") and _in_range(int(task), job[len(base) + 2:-1]):
                        out[i] = state
        missing = [i for i in ids if i not in out]
        if missing and shutil.which("sacct"):
            proc = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(missing)])
            for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
                job, _, state = line.partition("|")
                state = state.split()[0] if state else ""  # 'CANCELLED by 0' -> 'CANCELLED'
                # not in squeue means not alive: a stale 'RUNNING' in accounting is ignored
                if job in missing and state and state not in ACTIVE:
                    out[job] = state
        return out


def _in_range(task: int, spec: str) -> bool:
    """Whether array task `task` is in a squeue range like '4-7%2' or '1,3,5-6'."""
    for part in spec.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        try:
            if int(lo) <= task <= int(hi or lo):
                return True
        except ValueError:
            continue
    return False


class LocalQueue:
    """Local jobs are processes of this machine: a live pid is RUNNING, a gone one unknown.

    `starts` ({pid: start time}, recorded at submission) rules out a reused pid.
    """

    def __init__(self, starts: dict[str, int | None] | None = None):
        self.starts = starts or {}

    def states(self, job_ids: list[str]) -> dict[str, str]:
        """{pid: 'RUNNING'} for the pids that still run a submitit job."""
        from scaling.runlock import same_process

        out = {}
        for pid in job_ids:
            try:
                cmd = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if b"submitit" in cmd and same_process(pid, self.starts.get(pid)):
                out[pid] = "RUNNING"
        return out


class NoQueue:
    """Backend 'debug': jobs ran in the launcher's process; nothing outlives it."""

    def states(self, job_ids: list[str]) -> dict[str, str]:
        return {}


def queue_for(backend: str) -> Queue:
    """The queue that knows jobs of this backend ('slurm', 'local', 'debug')."""
    return {"slurm": SlurmQueue, "local": LocalQueue}.get(backend, NoQueue)()


def effective_state(status: dict[str, Any], sched: dict[str, str]) -> tuple[str, str | None]:
    """(state, scheduler state) of a run from its status.json record and the queue's answer.

    done, failed, stopped and pending are as recorded; queued/running is checked against the
    scheduler for the latest job id: a live job gives queued or running (from the
    scheduler), a job the scheduler says ended gives failed (with that state), a job it does
    not know gives orphaned ('GONE'). A run held by the local launcher until a slot is free
    (no job id yet, `waiting_in` the launcher's pid) is queued while that launcher lives.
    `sched` may hold 'launcher:<pid>' keys for such launchers.
    """
    state = status.get("state", "pending")
    jobs = status.get("job_ids") or []
    job = str(jobs[-1]) if jobs else None
    slurm = sched.get(job) if job is not None else None
    if state in ("queued", "running"):
        waiting = status.get("waiting_in") or {}
        if state == "queued" and waiting:
            if sched.get(f"launcher:{waiting.get('pid')}") == "RUNNING":
                return "queued", None
            return "orphaned", None
        if job is None:
            return "orphaned", None
        if slurm in ACTIVE:
            return ("running" if slurm in ("RUNNING", "COMPLETING") else "queued"), slurm
        if slurm is None:
            return "orphaned", "GONE"
        return "failed", slurm
    return state, slurm if state != "pending" else None


def run_states(runs: Iterable[Any], queue_by_backend: dict[str, Queue] | None = None
               ) -> dict[str, tuple[str, str | None, dict]]:
    """{run_id: (state, scheduler state, status record)} for runs (sweep.Run objects)."""
    from scaling.rundir import RunDir

    from scaling.runlock import same_process

    runs = list(runs)
    records = {r.run_id: RunDir(r.run_dir).read_status() for r in runs}
    by_backend: dict[str, list[str]] = {}
    starts: dict[str, int | None] = {}
    sched: dict[str, str] = {}
    for rec in records.values():
        if rec.get("state") in ("queued", "running") and rec.get("job_ids"):
            job = str(rec["job_ids"][-1])
            by_backend.setdefault(rec.get("backend", "slurm"), []).append(job)
            starts[job] = rec.get("job_start")
        waiting = rec.get("waiting_in") or {}
        if waiting.get("host") == socket.gethostname() and \
                same_process(waiting.get("pid"), waiting.get("start")):
            sched[f"launcher:{waiting['pid']}"] = "RUNNING"
    for backend, ids in by_backend.items():
        queue = (queue_by_backend or {}).get(backend) or (
            LocalQueue(starts) if backend == "local" else queue_for(backend))
        sched.update(queue.states(ids))
    for rec in records.values():  # a local trainer whose controller was killed still trains
        trainer = rec.get("trainer") or {}
        jobs = rec.get("job_ids") or []
        if rec.get("backend") == "local" and jobs and str(jobs[-1]) not in sched and \
                rec.get("state") == "running" and trainer.get("host") == socket.gethostname() \
                and same_process(trainer.get("pid"), trainer.get("start")):
            sched[str(jobs[-1])] = "RUNNING"
    out = {}
    for run_id, rec in records.items():
        state, slurm = effective_state(rec, sched)
        out[run_id] = (state, slurm, rec)
    return out


# ----------------------------------------------------------------------------- table

@dataclass
class Row:
    """One line of the status table."""

    run: str
    state: str
    progress: str
    metrics: str
    jobs: str
    log: str


def _last_metrics(run_dir: Path) -> dict | None:
    from scaling.rundir import RunDir

    records = RunDir(run_dir).read_metrics()  # a torn last line is skipped there
    return records[-1] if records else None


def _percent(m: dict, rec: dict) -> str:
    """Progress through the run's budget: steps (recorded by the job) or tokens (launch's
    estimate)."""
    if rec.get("total_steps") and isinstance(m.get("step"), (int, float)):
        return f" ({100 * m['step'] / rec['total_steps']:.0f}%)"
    if rec.get("budget_tokens") and isinstance(m.get("tokens"), (int, float)):
        return f" ({100 * m['tokens'] / rec['budget_tokens']:.0f}%)"
    return ""


def rows(sweep: Any, runs: list[Any] | None = None,
         queue_by_backend: dict[str, Queue] | None = None) -> list[Row]:
    """The status table of a loaded sweep (optionally only `runs`)."""
    from scaling.sweep import human

    runs = list(sweep.runs if runs is None else runs)
    states = run_states(runs, queue_by_backend)
    out = []
    for run in runs:
        state, slurm, rec = states[run.run_id]
        m = _last_metrics(run.run_dir)
        progress = "-"
        metrics = "-"
        if m is not None:
            progress = f"step {m.get('step', '?')}, {human(float(m.get('tokens', 0)))} tok"
            progress += _percent(m, rec)
            metrics = " ".join(f"{k} {m[k]:.4f}" for k in ("ce_avg", "ce_last", "err_avg", "err_last")
                               if isinstance(m.get(k), (int, float)))
        label = state + (f" ({slurm})" if slurm and slurm not in ("RUNNING", "PENDING") or
                         (slurm and state == "failed") else "")
        if state == "failed" and rec.get("error"):
            label += f": {str(rec['error']).splitlines()[0][:60]}"
        jobs = ",".join(str(j) for j in rec.get("job_ids") or []) or "-"
        out.append(Row(run.run_id, label, progress, metrics, jobs, str(rec.get("log") or "-")))
    return out


def format_table(header: list[str], table: list[list[str]]) -> str:
    """Plain aligned text table."""
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    return "\n".join(line.rstrip() for line in lines)


def render(sweep: Any, runs: list[Any] | None = None,
           queue_by_backend: dict[str, Queue] | None = None) -> str:
    """The status table as text, with a count of runs per state."""
    rs = rows(sweep, runs, queue_by_backend)
    table = format_table(["run", "state", "progress", "latest test metrics", "jobs", "log"],
                         [[r.run, r.state, r.progress, r.metrics, r.jobs, r.log] for r in rs])
    counts: dict[str, int] = {}
    for r in rs:
        key = r.state.split(" ")[0].rstrip(":")
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    text = f"{sweep.spec.name}: {len(rs)} runs in {sweep.output} ({summary})\n{table}"
    stages = stage_summary(sweep)
    return f"{text}\npreparation: {stages}" if stages else text


def stage_summary(sweep: Any) -> str:
    """One line on the preparation jobs ('tokenize done, merge running (job 39)'), or ''."""
    from scaling.rundir import RunDir

    jobs = sweep.data_dir / "jobs"
    if not sweep.stages() or not jobs.is_dir():
        return ""
    parts = []
    for d in sorted(jobs.iterdir(), key=lambda p: p.stat().st_mtime):
        rec = RunDir(d).read_status()
        ids = rec.get("job_ids") or []
        parts.append(f"{d.name} {rec.get('state', '?')}" + (f" (job {ids[-1]})" if ids else ""))
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaling.status",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="the sweep file")
    parser.add_argument("--only", help="comma-separated run-id patterns (globs) to show")
    parser.add_argument("--exclude", help="comma-separated run-id patterns to hide")
    parser.add_argument("--watch", nargs="?", const=10.0, type=float, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until interrupted")
    args = parser.parse_args(argv)
    from scaling.sweep import load_sweep

    try:
        sweep = load_sweep(args.sweep)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    runs = sweep.select(args.only, args.exclude)
    from scaling.rundir import CorruptStatus

    try:
        while True:
            text = render(sweep, runs)
            if args.watch and sys.stdout.isatty():
                print("\033[2J\033[H" + time.strftime("%H:%M:%S ") + text, flush=True)
            else:
                print(text, flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0
    except QueueError as e:
        print(f"error: cannot ask the scheduler about running jobs: {e}", file=sys.stderr)
        return 1
    except CorruptStatus as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
