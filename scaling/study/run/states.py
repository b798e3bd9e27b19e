"""Where a run stands: its status.json record checked against the scheduler.

States: pending (never submitted), queued (a job waits, or the local launcher holds it until a
slot is free), running, done, failed (with the first line of the error), stopped (asked to
stop; it checkpointed and resumes on the next launch) and orphaned (recorded queued/running,
but its job no longer exists and left no final state: the next launch resubmits it, and it
resumes from its checkpoint). A recorded queued/running whose job the scheduler says ended
(CANCELLED, TIMEOUT, NODE_FAIL ...) is failed, with that state. Local jobs are checked by pid
*and* process start time, so a reused pid is not mistaken for the job. The launcher (what to
(re)submit) and `scaling.status` (what to show) both decide through `run_states`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from contracts import ContractError
from scaling.core.cli import RuntimeFailure
from scaling.core.rundir import RunDir
from scaling.core.runlock import RunLock, process_start, same_process

# SLURM states in which a job still exists and may (again) run on its run directory
ACTIVE = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SUSPENDED",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
}


class Queue(Protocol):
    """What the scheduler says about job ids: {job_id: STATE}; ids it does not know are left
    out. Local jobs (backend 'local') are process ids."""

    def states(self, job_ids: list[str]) -> dict[str, str]: ...


class QueueError(RuntimeFailure):
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
                    if job.startswith(base + "_[") and _in_range(
                        int(task), job[len(base) + 2 : -1]
                    ):
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
    """Local jobs are processes of this machine: a live job is RUNNING, a gone one unknown.

    A job is its submitit controller (the pid recorded as the job id; `starts`, {pid: start
    time} recorded at submission, rules out a reused pid) *and* the trainer processes the
    controller started (their environment names the job: SUBMITIT_LOCAL_JOB_ID). A job whose
    controller was killed is alive while one of its trainers is, whether it trains or is still
    starting (before it takes the run lock): launching it again would start a second trainer.
    """

    def __init__(self, starts: dict[str, int | None] | None = None):
        self.starts = starts or {}

    def states(self, job_ids: list[str]) -> dict[str, str]:
        """{pid: 'RUNNING'} for the jobs whose controller or one of its trainers still runs."""
        out = {}
        orphans = []
        for pid in job_ids:
            try:
                cmd = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
            except (OSError, ValueError):
                orphans.append(str(pid))
                continue
            if b"submitit" in cmd and same_process(pid, self.starts.get(pid)):
                out[pid] = "RUNNING"
            else:
                orphans.append(str(pid))
        if orphans:
            tasks = job_tasks()
            for pid in orphans:
                start = self.starts.get(pid)
                if any(start is None or t >= start for t in tasks.get(pid, [])):
                    out[pid] = "RUNNING"
        return out


def job_tasks() -> dict[str, list[int]]:
    """{local job id: [start time of each live task process of it]}: the processes of this
    user whose environment holds SUBMITIT_LOCAL_JOB_ID (set by submitit's local controller for
    the tasks it starts; they outlive a killed controller)."""
    out: dict[str, list[int]] = {}
    uid = os.getuid()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        key = b"SUBMITIT_LOCAL_JOB_ID="
        at = env.find(key)
        if at < 0 or (at > 0 and env[at - 1] != 0):
            continue
        job = env[at + len(key) :].split(b"\0", 1)[0].decode(errors="replace")
        start = process_start(pid)
        if start is not None:
            out.setdefault(job, []).append(start)
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


def trainer_alive(run_dir: str | Path, rec: dict[str, Any]) -> bool:
    """Whether a live process of this machine trains in `run_dir`: the run lock's holder
    (scaling.core.runlock, the source of truth) or the trainer status.json records."""
    here = socket.gethostname()
    for who in (RunLock(run_dir).holder(), rec.get("trainer") or {}):
        if who.get("host") == here and same_process(who.get("pid"), who.get("start")):
            return True
    return False


def run_states(
    runs: Iterable[Any], queue_by_backend: dict[str, Queue] | None = None
) -> dict[str, tuple[str, str | None, dict]]:
    """{run_id: (state, scheduler state, status record)} for runs (sweep.Run objects)."""
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
        if waiting.get("host") == socket.gethostname() and same_process(
            waiting.get("pid"), waiting.get("start")
        ):
            sched[f"launcher:{waiting['pid']}"] = "RUNNING"
    for backend, ids in by_backend.items():
        queue = (queue_by_backend or {}).get(backend) or (
            LocalQueue(starts) if backend == "local" else queue_for(backend)
        )
        sched.update(queue.states(ids))
    for run in runs:  # a local trainer whose controller was killed still trains
        rec = records[run.run_id]
        jobs = rec.get("job_ids") or []
        if (
            rec.get("backend") == "local"
            and jobs
            and str(jobs[-1]) not in sched
            and rec.get("state") in ("queued", "running")
            and trainer_alive(run.run_dir, rec)
        ):
            sched[str(jobs[-1])] = "RUNNING"
    out = {}
    for run in runs:
        rec = records[run.run_id]
        state, slurm = effective_state(rec, sched)
        if state in ("failed", "orphaned"):
            repaired = finished_by_files(run.run_dir, rec)
            if repaired is not None:
                state, rec = "done", {**rec, **repaired}
        out[run.run_id] = (state, slurm, rec)
    return out


def finished_by_files(run_dir: str | Path, rec: dict[str, Any]) -> dict[str, Any] | None:
    """The status fields of a run whose own files say it finished although status.json says
    otherwise (failed or orphaned: e.g. a launcher's stale report): its last metrics line and
    its checkpoint both at the last step. None when they do not say so (or cannot be read)."""
    run = RunDir(run_dir)
    total = rec.get("total_steps")
    if not isinstance(total, int) or total <= 0 or not run.checkpoint.exists():
        return None
    try:
        lines = [r for r in run.read_metrics() if r.kind != "samples"]
    except ContractError:  # a damaged metrics.jsonl: the files do not say it finished
        return None
    if not lines or lines[-1].step != total:
        return None
    try:
        from scaling.core.safe_load import load_checkpoint_file

        state = load_checkpoint_file(run.checkpoint, "training checkpoint")
    except Exception:  # noqa: BLE001 -- unreadable: the files do not say it finished
        return None
    if (
        not isinstance(state, dict)
        or state.get("step") != total
        or state.get("total_steps") != total
    ):
        return None
    from scaling.training.records import summary

    return {
        "state": "done",
        "step": total,
        "final": summary(lines[-1]),
        "repaired": f"status.json said {rec.get('state')} "
        f"({str(rec.get('error') or '').splitlines()[0] if rec.get('error') else 'no error'}); "
        f"the run's checkpoint.pt and metrics.jsonl both reach its last step {total}",
    }
