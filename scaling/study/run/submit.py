"""Submitting a sweep's jobs and following them: preparation stages first (training depends
on them), then the runs (a job array per resource shape on SLURM; a pool of local jobs; in
this process for debug), WSD runs with decay branches as chains of segments, and the branches
after the segment that reaches their point.

Every job id is recorded in the run's status.json the moment it is submitted (local jobs one
by one as slots free up); a refused submission leaves the runs as they were, with the reason.
After waiting, `Submitter.report` gives each run that did not finish its first error line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scaling.core import provenance
from scaling.core.cli import RuntimeFailure
from scaling.core.rundir import RunDir
from scaling.core.runlock import me, process_start
from scaling.study.run.executors import executor_for
from scaling.study.run.local_jobs import StopFlag, submit_shielded, terminate
from scaling.study.run.prepare import (
    PrepareJob,
    StageJob,
    stage_dir,
    stage_done,
    stage_plan,
    store_stage,
)
from scaling.study.run.states import ACTIVE, job_tasks, queue_for, run_states
from scaling.study.sweep.estimates import store_meta
from scaling.study.sweep.expand import Run
from scaling.study.sweep.spec import ClusterSpec
from scaling.study.sweep.sweep import Sweep
from scaling.training.budget import run_budget

Log = Callable[[str], None]
# the preparation jobs each token store's runs wait for: variant name (None: the sweep's one
# store) -> job ids; a plain list: the same for every run
Deps = dict[str | None, list[str]] | list[str]


def train_job() -> Callable:
    """The callable submitted for each run: `scaling.training.job.TrainJob()` (checkpointable)."""
    from scaling.training.job import TrainJob  # imports torch: only when jobs are submitted

    return TrainJob()


@dataclasses.dataclass
class Submitted:
    """What one launch did."""

    submitted: list[str] = dataclasses.field(default_factory=list)  # run ids
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # run id -> why
    stages: list[str] = dataclasses.field(default_factory=list)  # preparation jobs submitted
    jobs: dict[str, Any] = dataclasses.field(default_factory=dict)  # run id -> submitit job
    backend: str = ""
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # run id -> first error line
    stopped: list[str] = dataclasses.field(default_factory=list)  # runs stopped by a signal
    signal: int | None = None  # the signal that stopped the launcher (local backend)


def first_line(error: Any) -> str:
    """The first line of a recorded error ('?' when none was recorded)."""
    text = str(error or "").strip()
    return text.splitlines()[0] if text else "?"


def _record_submission(record: RunDir, job: Any, backend: str, **extra: Any) -> None:
    """Record a job the moment it is submitted: its id (and, locally, the controller's start
    time). The state is not touched: the job may already have written running or failed."""
    status = record.read_status()
    record.update_status(
        job_ids=list(status.get("job_ids") or []) + [str(job.job_id)],
        job_start=process_start(job.job_id) if backend == "local" else None,
        attempts=int(status.get("attempts") or 0) + 1,
        submitted_at=time.time(),
        backend=backend,
        log=str(job.paths.stdout),
        waiting_in=None,
        **extra,
    )


def _mark_queued(run: Run, backend: str, waiting: bool) -> None:
    """Before submitting: queued, error cleared (a resubmission may replace a final state)."""
    RunDir(run.run_dir).clear_rank_errors()
    RunDir(run.run_dir).update_status(
        state="queued",
        force=True,
        error=None,
        slurm_state=None,
        backend=backend,
        waiting_in=me() if waiting else None,
    )


def _after(deps: list[str]) -> str:
    return f" after {', '.join(deps)}" if deps else ""


class Submitter:
    """Submits the jobs of one launch of `sweep` and records what it did in `out`.

    `job_factory` makes the callable each run's job calls with its run directory (the
    trainer; tests replace it); `log` receives the progress lines; `wait`: the launch blocks
    until the jobs end (the local pool then keeps `array_parallelism` jobs running); `flag`
    is set by a stop signal (scaling.study.run.local_jobs).
    """

    def __init__(
        self,
        sweep: Sweep,
        out: Submitted,
        job_factory: Callable[[], Callable],
        log: Log,
        wait: bool,
        flag: StopFlag,
    ):
        self.sweep, self.out, self.backend = sweep, out, out.backend
        self.job_factory, self.log, self.wait, self.flag = job_factory, log, wait, flag

    # ------------------------------------------------------------------ preparation stages
    def stages(self, runs: list[Run] | None = None) -> dict[str | None, list[str]]:
        """Submit the preparation stages not done yet (the shared ones and those of the token
        stores that `runs` train on; None: all); return, per token store (variant name; None
        without `tokenizers:`), the job ids its runs wait for.

        On SLURM each stage depends (`afterok`) on the stages whose output it reads (the images,
        its store's VQVAE), so the variants prepare side by side; elsewhere there are no
        dependencies: each stage has ended before the next one is submitted, variant by
        variant, and a stage whose output is complete is skipped (a relaunch resumes)."""
        prep = self.sweep.spec.prepare.resources
        res = dataclasses.replace(
            self.sweep.spec.cluster,
            nodes=1,
            tasks_per_node=0,  # one process (executor_for's single_task)
            gpus_per_node=prep.gpus_per_node,
            cpus_per_task=prep.cpus_per_task,
            mem_gb=prep.mem_gb,
            time_min=prep.time_min,
        )
        wanted = None if runs is None else {self.sweep.tokenizer_of(r).name for r in runs}
        ids: dict[str, list[str]] = {}
        for job in stage_plan(self.sweep, wanted):
            if self.flag.set:  # stopped: nothing more is started (a relaunch resumes)
                break
            after = list(dict.fromkeys(i for n in job.needs for i in ids.get(n, [])))
            ids[job.stage] = (
                [] if stage_done(self.sweep, job.stage) else self._stage(job, res, after)
            )
        shared = ids.get("classifier", [])
        return {
            t.name: ids.get(store_stage(self.sweep, t.name), []) + shared
            for t in self.sweep.tokenizers()
        }

    def _deps_of(self, run: Run, deps: Deps) -> list[str]:
        """The preparation jobs `run` waits for."""
        if isinstance(deps, list):
            return deps
        return deps.get(self.sweep.tokenizer_of(run).name, [])

    def _stage(self, job: StageJob, res: ClusterSpec, deps: list[str]) -> list[str]:
        """Submit the shards of one stage that are neither done nor live (after `deps`);
        return the job ids the next stage waits for (outside SLURM none: it has ended)."""
        stage, queue = job.stage, queue_for(self.backend)
        live: list[str] = []
        pending: list[int | None] = []
        for shard in job.shards:
            rec = RunDir(stage_dir(self.sweep, stage, shard)).read_status()
            ids = rec.get("job_ids") or []
            if rec.get("state") == "done":
                continue
            if (
                ids
                and rec.get("state") in ("queued", "running")
                and queue.states([ids[-1]]).get(ids[-1]) in ACTIVE
            ):
                live.append(ids[-1])
            else:
                pending.append(shard)
        if not pending:
            return live
        ex = executor_for(
            self.sweep,
            self.backend,
            res,
            f"{self.sweep.spec.name}-{stage}",
            deps,
            single_task=True,
        )
        for shard in pending:
            RunDir(stage_dir(self.sweep, stage, shard)).update_status(
                state="queued", force=True, error=None
            )
        sweep_file = str(Path(self.sweep.source).resolve())
        if len(pending) > 1 and self.backend == "slurm":
            jobs = ex.map_array(
                PrepareJob(), [sweep_file] * len(pending), [stage] * len(pending), pending
            )
        elif self.backend == "local":  # a terminal's Ctrl-C is the launcher's to act on
            jobs = [submit_shielded(ex.submit, PrepareJob(), sweep_file, stage, s) for s in pending]
        else:
            jobs = [ex.submit(PrepareJob(), sweep_file, stage, s) for s in pending]
        new_ids = []
        for shard, submitted in zip(pending, jobs):
            _record_submission(RunDir(stage_dir(self.sweep, stage, shard)), submitted, self.backend)
            new_ids.append(str(submitted.job_id))
            self.out.stages.append(stage + (f"[{shard}]" if shard is not None else ""))
        self.log(
            f"submitted {stage}"
            + (f" ({len(pending)} shards)" if job.shards != [None] else "")
            + f": jobs {', '.join(new_ids)}"
            + _after(deps)
        )
        if self.backend == "slurm":
            return live + new_ids
        if self.backend == "local":
            while not self.flag.set and any(not j.done() for j in jobs):
                time.sleep(0.5)
            if self.flag.set:
                self._stop_stage(stage, pending, jobs)
                return live
        for shard, submitted in zip(pending, jobs):  # no dependencies here: finish the stage
            try:
                submitted.result()
            except Exception as e:
                raise RuntimeFailure(
                    f"preparation stage {stage}"
                    + (f" shard {shard}" if shard is not None else "")
                    + f" failed (log: {submitted.paths.stderr}): "
                    + (str(e).strip().splitlines() or ["?"])[-1]
                ) from None
        return live

    def _stop_stage(self, stage: str, shards: list[int | None], jobs: list[Any]) -> None:
        """A stop signal while a local preparation stage runs: SIGTERM to its jobs (each
        records itself `stopped`, `scaling.study.run.prepare.StageStopped`), wait for them to
        end; a shard that ended without saying so is recorded stopped here. The next launch
        resumes the stage from what is on disk."""
        assert self.flag.signum is not None
        name = signal.Signals(self.flag.signum).name
        self.out.signal = self.flag.signum
        running = [j for j in jobs if not j.done()]
        self.log(
            f"{name}: stopping preparation stage {stage} ({len(running)} running local jobs); "
            "launch again to resume it from what is on disk"
        )
        for job in running:
            terminate(job)
        while any(not j.done() for j in running):
            time.sleep(0.2)
        for shard in shards:
            record = RunDir(stage_dir(self.sweep, stage, shard))
            if record.read_status().get("state") in ("queued", "running"):
                record.update_status(
                    state="stopped",
                    force=True,
                    finished_at=time.time(),
                    stopped_by=name,
                    note=f"stopped by {name} before it recorded so; launch again to resume",
                )

    # ------------------------------------------------------------------ runs
    def runs(self, todo: list[Run], deps: Deps) -> None:
        """Submit `todo` after their preparation jobs `deps`: a job array per resource shape
        (and token store) on SLURM (a WSD run with branch points as a chain of segments), a
        pool of local jobs, or debug jobs."""
        groups: dict[tuple, list[Run]] = {}
        for run in todo:
            if self.backend == "slurm" and run.config.save_at:
                self._segmented(run, self._deps_of(run, deps))
                continue
            # SLURM: runs of one store wait for its jobs; elsewhere the stages have ended
            after = tuple(self._deps_of(run, deps)) if self.backend == "slurm" else ()
            key = (run.resources.shape(), after)
            groups.setdefault(key, []).append(run)
        budgets: dict[str, int | None] = {}
        metas: dict[str | None, dict] = {}
        for run in todo:
            name = self.sweep.tokenizer_of(run).name
            if name not in metas:
                metas[name] = store_meta(self.sweep, name)[0]
            try:
                budgets[run.run_id] = run_budget(run.config, metas[name]).tokens
            except Exception:  # estimates are informative only
                budgets[run.run_id] = None
        for (_, group_deps), group in groups.items():
            res = group[0].resources
            deps = list(group_deps)
            ex = executor_for(self.sweep, self.backend, res, self.sweep.spec.name, deps)
            shape = f"{res.nodes}x{res.gpus_per_node} GPUs" if res.gpus_per_node else "CPU"
            if self.backend == "local":
                self.log(
                    f"submitting {len(group)} runs ({shape}, {res.time_min} min) as local "
                    f"jobs, {res.array_parallelism} at a time"
                )
                self._local_pool(ex, group, res.array_parallelism, budgets)
                continue
            jobs = self._submit_group(ex, group)
            for run, job in zip(group, jobs):
                _record_submission(
                    RunDir(run.run_dir), job, self.backend, budget_tokens=budgets[run.run_id]
                )
                self.out.submitted.append(run.run_id)
                self.out.jobs[run.run_id] = job
            self.log(
                f"submitted {len(group)} runs ({shape}, {res.time_min} min) as "
                + (
                    f"array {jobs[0].job_id.split('_')[0]}"
                    if self.backend == "slurm" and len(group) > 1
                    else f"jobs {', '.join(j.job_id for j in jobs)}"
                )
                + _after(deps)
                + f" [{self.backend}]"
            )

    def _submit_group(self, ex: Any, group: list[Run]) -> list[Any]:
        """Mark the runs queued, then submit them (an array on SLURM); a refusal puts every
        run back as it was, with the reason, and raises RuntimeFailure."""
        previous = {run.run_id: RunDir(run.run_dir).read_status() for run in group}
        for run in group:  # before submitting: the job may start (and write) at once
            _mark_queued(run, self.backend, waiting=False)
            provenance.record_launch(run.run_dir, self.sweep.source)
        dirs = [str(run.run_dir.resolve()) for run in group]
        try:
            if self.backend == "slurm" and len(group) > 1:
                return ex.map_array(self.job_factory(), dirs)
            return [ex.submit(self.job_factory(), d) for d in dirs]
        except Exception as e:  # sbatch refused: nothing was queued, say so in every run
            why = first_line(e)
            for run in group:
                RunDir(run.run_dir).update_status(
                    state=previous[run.run_id].get("state", "pending"),
                    force=True,
                    error=f"submission failed: {why}",
                )
            raise RuntimeFailure(
                f"submitting {len(group)} runs failed ({why}); they are "
                "recorded as not submitted, fix the cause and launch again"
            ) from None

    def _segmented(self, run: Run, deps: list[str]) -> None:
        """SLURM: a WSD run with decay branches as a chain of jobs, one per branch point (each
        `afterok` on the one before), so that each branch can wait for its point only."""
        record = RunDir(run.run_dir)
        record.update_status(state="queued", force=True, error=None)
        segments: dict[str, str] = {}
        prev = list(deps)
        for until in [*run.config.save_at, None]:
            ex = executor_for(self.sweep, self.backend, run.resources, self.sweep.spec.name, prev)
            job = ex.submit(self.job_factory(), str(run.run_dir.resolve()), until)
            if until is not None:
                segments[repr(until)] = str(job.job_id)
            prev = [str(job.job_id)]
            _record_submission(record, job, self.backend, segment_jobs=dict(segments))
        self.out.submitted.append(run.run_id)
        self.out.jobs[run.run_id] = job
        self.log(
            f"submitted {run.run_id} in {len(segments) + 1} segments (jobs "
            f"{', '.join([*segments.values(), prev[0]])}; branch points "
            f"{list(run.config.save_at)})" + _after(deps) + f" [{self.backend}]"
        )

    def branches(self, branches: list[Run], deps: Deps) -> None:
        """Decay branches: on SLURM each `afterok` on its parent's segment that reaches its
        branch point; elsewhere after the parents of this launch have ended (each branch whose
        parent is done is run)."""
        by_id = {r.run_id: r for r in self.sweep.runs}
        if self.backend != "slurm":
            for parent in {b.parent for b in branches if b.parent is not None}:
                job = self.out.jobs.get(parent)
                if job is not None:
                    with contextlib.suppress(Exception):  # the parent's status says why
                        job.result()
        ready: list[tuple[Run, list[str]]] = []
        for run in branches:
            assert run.parent is not None and run.config.branch is not None  # a decay branch
            rec = RunDir(by_id[run.parent].run_dir).read_status()
            state = rec.get("state", "pending")
            if self.backend == "slurm" and state in ("queued", "running"):
                segment = (rec.get("segment_jobs") or {}).get(repr(run.config.branch.at))
                if segment is None:  # submitted without segments: wait for the whole run
                    segment = (rec.get("job_ids") or [None])[-1]
                live = (
                    segment is not None
                    and queue_for(self.backend).states([segment]).get(segment) in ACTIVE
                )
                ready.append((run, [segment] if live else list(self._deps_of(run, deps))))
            elif (
                state == "done"
                or (rec.get("step") or 0) > 0
                and rec.get("segment_done") is not None
                and rec["segment_done"] >= run.config.branch.at
            ):
                ready.append((run, []))
            else:
                self.out.skipped[run.run_id] = f"waiting for its parent {run.parent} ({state})"
                self.log(f"{run.run_id}: not submitted: its parent {run.parent} is {state}")
        if self.backend != "slurm":  # no dependencies: one pool, at most array_parallelism at once
            if ready:
                self.runs([run for run, _ in ready], [])
            return
        for run, run_deps in ready:
            self.runs([run], run_deps)

    def _live_runs(self) -> set[str]:
        """The runs of the whole sweep (this launch's and earlier launches') that have a live
        local job: its controller, or a trainer that outlived it (scaling.study.run.states)."""
        states = run_states(self.sweep.runs)
        tasks = job_tasks()  # a trainer still exiting after its last write holds its memory
        return {
            run_id
            for run_id, (state, _, rec) in states.items()
            if rec.get("job_ids")
            and (
                state in ("queued", "running")
                and not rec.get("waiting_in")
                or rec.get("backend") == "local"
                and bool(tasks.get(str(rec["job_ids"][-1])))
            )
        }

    def _local_pool(self, ex: Any, runs: list[Run], parallelism: int, budgets: dict) -> None:
        """Local backend: at most `parallelism` runs of the sweep at once, counting the live
        jobs of earlier launches and trainers whose controller died; each job is recorded the
        moment it starts; the others are queued *in this launcher* (status.json `waiting_in`).
        A job whose controller ended while its trainer goes on is adopted: waited for like the
        others. A stop signal (see scaling.study.run.local_jobs) terminates the running jobs
        cleanly and puts the waiting runs back to pending."""
        waiting = list(runs)
        for run in waiting:
            _mark_queued(run, "local", waiting=True)
        live: dict[str, Any] = {}
        alive = self._live_runs()
        while waiting or (
            self.wait and (alive & set(live) or any(not j.done() for j in live.values()))
        ):
            if self.flag.set:
                break
            while waiting and len(alive) < parallelism:
                run = waiting.pop(0)
                job = submit_shielded(ex.submit, self.job_factory(), str(run.run_dir.resolve()))
                _record_submission(
                    RunDir(run.run_dir), job, "local", budget_tokens=budgets[run.run_id]
                )
                live[run.run_id] = self.out.jobs[run.run_id] = job
                self.out.submitted.append(run.run_id)
                alive.add(run.run_id)
                self.log(f"{run.run_id}: started as local job {job.job_id}")
            if not self.wait and not waiting:
                break
            time.sleep(0.5)
            alive = self._live_runs() | {r for r, j in live.items() if not j.done()}
        if self.flag.set and self.flag.signum is not None:
            name = signal.Signals(self.flag.signum).name
            self.out.signal = self.flag.signum
            for run in waiting:
                RunDir(run.run_dir).update_status(
                    state="pending",
                    force=True,
                    waiting_in=None,
                    note=f"not started: the launcher got {name}",
                )
            running = {r: j for r, j in live.items() if not j.done()}
            self.log(
                f"{name}: stopping {len(running)} running local jobs (each checkpoints at its "
                f"next step and is recorded stopped); {len(waiting)} waiting runs back to pending"
            )
            for job in running.values():
                terminate(job)
            while any(not j.done() for j in running.values()):
                time.sleep(0.2)

    # ------------------------------------------------------------------ after submitting
    def wait_for_jobs(self) -> None:
        """Block until every submitted (SLURM or debug) job has ended, or a stop signal (then
        the SLURM jobs go on: `scaling.status` follows them)."""
        for job in self.out.jobs.values():
            if self.backend == "debug":
                job.exception()  # runs it here (unlike result(), no debugger on a failure)
                continue
            while not self.flag.set and not job.done():
                time.sleep(0.5)
            if self.flag.set and self.flag.signum is not None:
                self.out.signal = self.flag.signum
                self.log(
                    f"{signal.Signals(self.flag.signum).name}: no longer waiting; the "
                    "submitted jobs go on (python -m scaling.status follows them)"
                )
                return

    def report(self) -> None:
        """After waiting: one line per run that did not finish (its first error line), counts."""
        done = 0
        for run_id, job in self.out.jobs.items():
            record = RunDir(self.sweep.output / run_id)
            rec = record.read_status()
            state = rec.get("state")
            if state == "done":
                done += 1
                continue
            if state == "stopped":
                self.out.stopped.append(run_id)
                self.log(
                    f"{run_id}: stopped at step {rec.get('step', '?')} (checkpointed; "
                    "launch again to resume)"
                )
                continue
            if self.out.signal is not None and state in ("queued", "running"):
                continue  # SLURM jobs left running
            if state != "failed":  # the job ended without recording why: ask submitit
                why = "the job ended without finishing the run"
                try:
                    e = job.exception()
                except Exception as err:  # noqa: BLE001 -- submitit could not read the job's result
                    e = err
                if e is not None and str(e).strip():
                    why = first_line(str(e).strip().splitlines()[-1])
                # read-modify-write under the status lock: a final state the trainer wrote
                # since the read above wins (its controller may have died while it trained)
                rec = record.update_status(
                    state="failed",
                    finished_at=time.time(),
                    error=f"{why} (log: {job.paths.stderr})",
                )
                if rec.get("state") == "done":
                    done += 1
                    continue
                if rec.get("state") == "stopped":
                    self.out.stopped.append(run_id)
                    continue
            self.out.failed[run_id] = first_line(rec.get("error"))
            self.log(f"{run_id}: failed: {self.out.failed[run_id]}")
        self.log(
            f"{done} runs finished, {len(self.out.failed)} failed"
            + (f", {len(self.out.stopped)} stopped" if self.out.stopped else "")
        )
