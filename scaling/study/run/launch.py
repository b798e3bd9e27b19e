"""Launch a sweep: `python -m scaling.launch SWEEP.yaml [--dry-run] [--retry-failed] ...`.

Expands the grid, writes every run's resolved `config.yaml`, prints the plan (run, depth, N,
training tokens, estimated training FLOPs and GPU-hours, nodes x GPUs) and submits through
submitit: on SLURM one job array per distinct resource shape (nodes, GPUs, time ...); with
the local backend (or when no `sbatch` is found) submitit's local executor, waiting for the
runs to finish; with the debug backend in this process.

Idempotent: a run that is done, or whose job is still queued or running (asked to SLURM, not
just read from status.json) is not submitted again; a failed run is resubmitted only with
`--retry-failed`; a lock on the output folder keeps two launchers from racing. Preparation
stages (synthetic images, VQVAE training, tokenisation shards, merge) are submitted first and
the training jobs depend on them (`afterok`), so one command runs the whole study. Jobs are
requeued on preemption and time-out by submitit and resume from their checkpoints. Job ids are
recorded the moment each job is submitted; `--retry-failed --reconfigure` sets a changed
failed run aside (attempts/) and starts it over; the exit code is 1 when any run failed
(each failure's first error line is printed), 128+signal when the launcher was stopped
(local jobs stop cleanly: scaling.study.run.local_jobs).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from scaling.core.cli import InputError, run_cli, setup_logging
from scaling.core.rundir import RunDir
from scaling.study.run.attempts import set_aside
from scaling.study.run.checks import (
    ConfigConflict,
    check_data,
    check_output,
    check_partitions,
    config_conflict,
)
from scaling.study.run.executors import (
    executor_for,
    resolve_backend,
    resolve_backend_for_dry_run,
    sbatch_script,
)
from scaling.study.run.local_jobs import StopFlag, stop_signals
from scaling.study.run.outputs import output_lock, write_fit_defaults, write_grid, write_run_config
from scaling.study.run.prepare import store_stage, vqvae_warning
from scaling.study.run.progress import reporting
from scaling.study.run.states import Queue, QueueError, run_states
from scaling.study.run.submit import Log, Submitted, Submitter, first_line, train_job
from scaling.study.sweep.estimates import plan_table
from scaling.study.sweep.expand import Run
from scaling.study.sweep.sweep import Sweep, load_sweep_or_runs

logger = logging.getLogger(__name__)


def launch(
    sweep: Sweep,
    *,
    only: str | None = None,
    exclude: str | None = None,
    retry_failed: bool = False,
    reconfigure: bool = False,
    backend: str | None = None,
    wait: bool | None = None,
    queues: dict[str, Queue] | None = None,
    job_factory: Callable[[], Callable] = train_job,
    log: Log = logger.info,
) -> Submitted:
    """Submit the runs of `sweep` that need it (see the module docstring).

    `wait`: block until the submitted jobs end (default: yes for local and debug, no for
    SLURM). `reconfigure` (with `retry_failed`): a failed, stopped or orphaned run whose
    config changed is set aside into attempts/ and started over. `queues` and `job_factory`
    replace the scheduler query and the training callable (tests); `log` receives the
    launch's progress lines (the CLI prints them). The result's `failed` and `stopped` list
    the runs that ended so (exit code of `main`). Raises InputError (ConfigConflict: a run
    directory holds another config) or RuntimeFailure (the scheduler does not answer,
    another launcher holds the folder, a submission or preparation stage failed).
    """
    backend, note = resolve_backend(backend or sweep.spec.cluster.backend)
    if note:
        log(note)
    wait = backend != "slurm" if wait is None else wait
    flag = StopFlag()
    follow = wait and backend != "debug"  # blocking on jobs of other processes
    with stop_signals(flag) if follow else contextlib.nullcontext():
        with reporting(sweep, log) if follow else contextlib.nullcontext():
            return _launch(
                sweep,
                backend,
                wait,
                only=only,
                exclude=exclude,
                retry_failed=retry_failed,
                reconfigure=reconfigure,
                queues=queues,
                job_factory=job_factory,
                log=log,
                flag=flag,
            )


def _launch(
    sweep: Sweep,
    backend: str,
    wait: bool,
    *,
    only: str | None,
    exclude: str | None,
    retry_failed: bool,
    reconfigure: bool,
    queues: dict[str, Queue] | None,
    job_factory: Callable[[], Callable],
    log: Log,
    flag: StopFlag,
) -> Submitted:
    out = Submitted(backend=backend)
    runs = sweep.select(only, exclude)
    check_data(sweep)
    if backend == "slurm":
        check_partitions(sweep, runs)  # nodes, GPUs: refused before anything is submitted
    with output_lock(sweep.output):
        try:
            states = run_states(runs, queues)
        except QueueError as e:
            raise QueueError(
                f"{e}; submitting nothing, as that could start a second job on a run directory"
            ) from None
        _resolve_conflicts(sweep, runs, states, retry_failed and reconfigure, log)
        # only now: a refused launch changes nothing already written
        write_fit_defaults(sweep)
        write_grid(sweep, list(sweep.runs))
        todo = _to_submit(runs, states, retry_failed, out)
        submitter = Submitter(sweep, out, job_factory, log, wait, flag)
        if todo:
            deps = submitter.stages(todo)
            plain = [r for r in todo if r.parent is None]
            if plain and not flag.set:  # stopped during preparation: the runs stay pending
                submitter.runs(plain, deps)
            branches = [r for r in todo if r.parent is not None]
            if branches and not flag.set:
                submitter.branches(branches, deps)
        else:
            log(f"nothing to submit ({len(out.skipped)} runs done, queued, running or failed)")
    if wait and out.jobs and backend != "local":  # the local pool has waited already
        submitter.wait_for_jobs()
    if wait and out.jobs:
        submitter.report()
    for run_id, line in out.failed.items():
        if run_id in out.skipped:
            log(f"{run_id}: failed earlier: {line}")
    return out


def _resolve_conflicts(
    sweep: Sweep, runs: list[Run], states: dict[str, tuple], reconfigure: bool, log: Log
) -> None:
    """Raise ConfigConflict when a run directory holds another config than the sweep gives;
    with `reconfigure`, a failed, stopped or orphaned one is set aside (attempts/) instead and
    counts as pending in `states`."""
    conflicts = {r.run_id: c for r in runs if (c := config_conflict(r, states[r.run_id][0]))}
    for run in runs:
        state, _, rec = states[run.run_id]
        if run.run_id in conflicts and reconfigure and state in ("failed", "stopped", "orphaned"):
            dest = set_aside(
                run.run_dir,
                f"--reconfigure: the sweep {sweep.source} now gives "
                f"another config (the run was {state})",
                rec,
            )
            log(f"{run.run_id}: {state} attempt kept in {dest}; starting over with the new config")
            del conflicts[run.run_id]
            states[run.run_id] = ("pending", None, {"state": "pending"})
    if conflicts:
        raise ConfigConflict("\nerror: ".join(conflicts.values()))


def _to_submit(
    runs: list[Run], states: dict[str, tuple], retry_failed: bool, out: Submitted
) -> list[Run]:
    """Write each run's config.yaml and return the runs to submit: pending, stopped, orphaned
    (they resume) and, with `retry_failed`, failed ones; the others go to `out.skipped` (a
    failed one also to `out.failed`). A run whose job the scheduler says ended is recorded
    failed first."""
    todo: list[Run] = []
    for run in runs:
        state, slurm, rec = states[run.run_id]
        if rec.get("repaired") and RunDir(run.run_dir).status().state != "done":
            # the run's own files say it finished: status.json is repaired from them
            RunDir(run.run_dir).update_status(
                force=True, **{k: rec[k] for k in ("state", "step", "final", "repaired")}
            )
        if state == "failed" and rec.get("state") in ("queued", "running"):  # the job ended
            RunDir(run.run_dir).update_status(
                state=state,
                slurm_state=slurm,
                error=rec.get("error")
                or f"job {rec.get('job_ids', ['?'])[-1]} ended {slurm} without finishing the run",
            )
        write_run_config(run)
        if state == "done":
            out.skipped[run.run_id] = "done"
        elif state in ("queued", "running"):
            jobs = rec.get("job_ids") or []
            out.skipped[run.run_id] = (
                f"{state} (job {jobs[-1]})"
                if jobs and not rec.get("waiting_in")
                else f"{state} (in another launcher)"
            )
        elif state == "failed" and not retry_failed:
            out.skipped[run.run_id] = "failed (use --retry-failed)"
            out.failed[run.run_id] = first_line(RunDir(run.run_dir).status().error)
        else:
            todo.append(run)
    return todo


def dry_run(sweep: Sweep, only: str | None, exclude: str | None, backend: str | None) -> str:
    """The plan and, for SLURM, the sbatch script of every job (array), as text; submits
    nothing and writes nothing."""
    lines: list[str] = []
    log = lines.append
    backend, note, scripts = resolve_backend_for_dry_run(backend or sweep.spec.cluster.backend)
    runs = sweep.select(only, exclude)
    log(
        f"sweep {sweep.spec.name}: {len(runs)} runs -> {sweep.output} (backend {backend}"
        + (f"; {note}" if note else "")
        + ")"
    )
    log(plan_table(sweep, runs))
    stages = sweep.stages()
    if stages:
        log("preparation stages (training waits for them): " + " -> ".join(stages))
    if sweep.spec.tokenizers and stages:
        shared = " and classifier" if "classifier" in stages else ""
        log(
            "on SLURM each variant prepares side by side and its runs wait for its store only: "
            + ", ".join(
                f"*-{t.name} after {store_stage(sweep, t.name)}{shared}" for t in sweep.tokenizers()
            )
        )
    segmented = [r for r in runs if r.parent is None and r.config.save_at]
    branches = [r for r in runs if r.parent is not None]
    for run in segmented:
        log(
            f"{run.run_id}: a chain of {len(run.config.save_at) + 1} jobs, one segment up to each "
            f"branch point {list(run.config.save_at)} then the rest, each afterok on the one before"
        )
    for run in branches:
        assert run.config.branch is not None  # a decay branch
        log(
            f"{run.run_id}: one job, afterok on the segment of {run.parent} that reaches "
            f"{run.config.branch.at} of its length"
        )
    if not scripts:
        return "\n".join(lines)
    if backend != "slurm":
        log(
            "\n# this launch would run here; where SLURM answers (cluster.backend auto), it "
            "would submit these jobs:"
        )
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if run in branches:
            continue
        groups.setdefault(run.resources.shape(), []).append(run)
    for group in groups.values():
        ex = executor_for(
            sweep,
            "slurm",
            group[0].resources,
            sweep.spec.name,
            ["PREPARE_JOB_IDS"] if stages else None,
            script_only=True,
        )
        log(
            f"\n# sbatch script for {', '.join(r.run_id for r in group)} "
            f"({'array of ' + str(len(group)) if len(group) > 1 else 'one job'}; each task "
            f"calls scaling.training.job.TrainJob()(<output>/<run_id>))"
        )
        log(sbatch_script(ex, len(group)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scaling.launch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "sweep",
        type=Path,
        help="the sweep file (YAML), or its output folder (runs/NAME: the copy "
        "of the sweep file the launcher keeps there)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a run-config key for every run (repeatable), checked like "
        "the file; a changed value makes new run ids (e.g. --set "
        "optim.base_lr=3e-3 --set length.epochs=3)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and the sbatch scripts; submit nothing",
    )
    parser.add_argument("--only", help="comma-separated run-id patterns (globs), e.g. 'd6,d1*'")
    parser.add_argument("--exclude", help="comma-separated run-id patterns to leave out")
    parser.add_argument("--retry-failed", action="store_true", help="resubmit failed runs")
    parser.add_argument(
        "--reconfigure",
        action="store_true",
        help="with --retry-failed: a failed (or stopped) run whose config the "
        "sweep now gives differently is moved into <run>/attempts/<n>/ "
        "with the reason, and started over with the new config",
    )
    parser.add_argument(
        "--backend", choices=["auto", "slurm", "local", "debug"], help="override cluster.backend"
    )
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument(
        "--wait",
        dest="wait",
        action="store_true",
        default=None,
        help="wait for the jobs to end (default for local/debug)",
    )
    wait.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="return after submitting (default for SLURM)",
    )
    args = parser.parse_args(argv)
    if args.reconfigure and not args.retry_failed:
        parser.error("--reconfigure only goes with --retry-failed")
    setup_logging()
    return run_cli(lambda: _run(args))


def _result(text: str) -> None:
    """Print a result (the plan table, the dry run) on stdout, its `warning:` lines on stderr."""
    for line in text.splitlines():
        print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout, flush=True)


def _run(args: argparse.Namespace) -> int:
    """The command: the plan table (stdout), then the launch; its progress lines, notes and
    warnings go to stderr."""
    report = functools.partial(print, file=sys.stderr, flush=True)
    sweep = load_sweep_or_runs(args.sweep, args.sets)
    if args.dry_run:
        _result(dry_run(sweep, args.only, args.exclude, args.backend))
        return 0
    runs = sweep.select(args.only, args.exclude)
    if not runs:
        raise InputError("--only/--exclude leave no runs")
    check_data(sweep)
    check_output(sweep.output)
    _result(plan_table(sweep, runs, run_states(runs)))
    out = launch(
        sweep,
        only=args.only,
        exclude=args.exclude,
        retry_failed=args.retry_failed,
        reconfigure=args.reconfigure,
        backend=args.backend,
        wait=args.wait,
        log=report,
    )
    warning = vqvae_warning(sweep)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if out.signal is not None:
        return 128 + out.signal
    if out.failed:
        print(
            f"error: {len(out.failed)} runs failed: "
            + "; ".join(f"{r}: {line}" for r, line in out.failed.items()),
            file=sys.stderr,
        )
    if out.stopped:
        print(
            f"error: {len(out.stopped)} runs were stopped before the end "
            f"({', '.join(out.stopped)}); launch again to resume them",
            file=sys.stderr,
        )
    return 1 if out.failed or out.stopped else 0
