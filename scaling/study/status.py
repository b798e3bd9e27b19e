"""Where every run of a sweep stands: `python -m scaling.status SWEEP.yaml [--watch] [--json]`.

Several sweeps at a glance: `python -m scaling.status runs/` (every sweep output folder under
it), several sweep files or output folders, one table with a sweep column; `--json` prints
the same as one JSON document for scripts. Each sweep also says when its runs were produced
by different code (their provenance.json: git commit, dirty-tree diff hash).

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
import fnmatch
import json
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

from scaling.core.config_io import ConfigError

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
        from scaling.core.runlock import same_process

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
    from scaling.core.rundir import RunDir

    from scaling.core.runlock import same_process

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
    from scaling.core.rundir import RunDir

    records = [r for r in RunDir(run_dir).read_metrics()  # a torn last line is skipped there
               if r.get("eval") != "samples"]  # sample-quality lines carry no test loss
    return records[-1] if records else None


def data_limited(run_dir: Path) -> dict | None:
    """The run's data-limited flag (analysis.overfit: full-evaluation test ce_avg risen >= 2%
    above its own minimum while the training loss fell), or None."""
    from analysis.overfit import METRIC, check_curve
    from scaling.core.rundir import RunDir

    recs = [r for r in RunDir(run_dir).read_metrics()
            if r.get("eval", "full") == "full" and isinstance(r.get(METRIC), (int, float))]
    if len(recs) < 2:
        return None
    train = [r.get("train_loss") for r in recs]
    return check_curve([r.get("step", i) for i, r in enumerate(recs)], [r[METRIC] for r in recs],
                       train if all(isinstance(t, (int, float)) for t in train) else None)


def _percent(m: dict, rec: dict) -> str:
    """Progress through the run's budget: steps (recorded by the job) or tokens (launch's
    estimate)."""
    if rec.get("total_steps") and isinstance(m.get("step"), (int, float)):
        return f" ({100 * m['step'] / rec['total_steps']:.0f}%)"
    if rec.get("budget_tokens") and isinstance(m.get("tokens"), (int, float)):
        return f" ({100 * m['tokens'] / rec['budget_tokens']:.0f}%)"
    return ""


METRIC_KEYS = ("ce_avg", "ce_last", "err_avg", "err_last")


def run_records(runs: list[Any], queue_by_backend: dict[str, Queue] | None = None
                ) -> list[dict[str, Any]]:
    """One plain record per run (what `--json` prints): run, state, scheduler_state, step,
    total_steps, percent, tokens, the latest test metrics, job_ids, log, error, code."""
    from scaling.core import provenance

    states = run_states(runs, queue_by_backend)
    out = []
    for run in runs:
        state, slurm, rec = states[run.run_id]
        m = _last_metrics(run.run_dir) or {}
        try:
            code = provenance.code_identity(provenance.read(run.run_dir))
        except ValueError as e:  # a corrupt provenance.json is reported, not fatal
            code = f"unreadable: {e}"
        percent = None
        if rec.get("total_steps") and isinstance(m.get("step"), (int, float)):
            percent = 100 * m["step"] / rec["total_steps"]
        elif rec.get("budget_tokens") and isinstance(m.get("tokens"), (int, float)):
            percent = 100 * m["tokens"] / rec["budget_tokens"]
        out.append({
            "run": run.run_id, "parent": getattr(run, "parent", None),  # decay branches
            "run_dir": str(run.run_dir), "state": state, "scheduler_state": slurm,
            "step": m.get("step", rec.get("step")), "total_steps": rec.get("total_steps"),
            "percent": percent, "tokens": m.get("tokens"),
            "metrics": {k: m[k] for k in METRIC_KEYS if isinstance(m.get(k), (int, float))},
            "job_ids": [str(j) for j in rec.get("job_ids") or []], "log": rec.get("log"),
            "error": rec.get("error") if state == "failed" else None, "code": code,
            "data_limited": data_limited(run.run_dir) if m else None,
            "eta_s": rec.get("eta_s") if state == "running" else None,
            "_has_metrics": bool(m), "_rec": rec, "_last": m,
        })
    return out


def _row(r: dict[str, Any]) -> Row:
    from scaling.study.sweep import human

    m, rec, state, slurm = r["_last"], r["_rec"], r["state"], r["scheduler_state"]
    progress = metrics = "-"
    if r["_has_metrics"]:
        progress = f"step {m.get('step', '?')}, {human(float(m.get('tokens', 0)))} tok"
        progress += _percent(m, rec)
        metrics = " ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
        if r.get("data_limited"):
            metrics += " [data-limited]"
    if state == "running" and isinstance(r.get("eta_s"), (int, float)):
        progress += f", ETA {duration(r['eta_s'])}"
    label = state + (f" ({slurm})" if slurm and slurm not in ("RUNNING", "PENDING") or
                     (slurm and state == "failed") else "")
    if state == "failed" and rec.get("error"):
        label += f": {str(rec['error']).splitlines()[0][:60]}"
    name = f"  `- {r['run']}" if r.get("parent") else r["run"]  # a branch under its parent
    return Row(name, label, progress, metrics, ",".join(r["job_ids"]) or "-", str(r["log"] or "-"))


def rows(sweep: Any, runs: list[Any] | None = None,
         queue_by_backend: dict[str, Queue] | None = None) -> list[Row]:
    """The status table of a loaded sweep (optionally only `runs`)."""
    runs = list(sweep.runs if runs is None else runs)
    return [_row(r) for r in run_records(runs, queue_by_backend)]


def code_warning(records: list[dict[str, Any]]) -> str | None:
    """The warning when the runs of one sweep (their records) came from different code."""
    from scaling.core import provenance

    return provenance.mixed_code_warning({r["run"]: r["code"] for r in records})


def format_table(header: list[str], table: list[list[str]]) -> str:
    """Plain aligned text table."""
    widths = [max(len(h), *(len(r[i]) for r in table)) if table else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    return "\n".join(line.rstrip() for line in lines)


def _counts(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return dict(sorted(counts.items()))


def render(sweep: Any, runs: list[Any] | None = None,
           queue_by_backend: dict[str, Queue] | None = None) -> str:
    """The status table as text, with a count of runs per state."""
    view = SweepView(sweep.spec.name, sweep.output, list(sweep.runs if runs is None else runs),
                     str(sweep.source), sweep)
    return render_many([view], queue_by_backend)


# ----------------------------------------------------------------------------- many sweeps

@dataclass
class RunRef:
    """A run directory found on disk (when no sweep file is given)."""

    run_id: str
    run_dir: Path


@dataclass
class SweepView:
    """One sweep to report: from a sweep file (`sweep` set) or from its output folder."""

    name: str
    output: Path
    runs: list[Any]
    source: str
    sweep: Any = None


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file()


def _select(run_ids: list[str], only: str | None, exclude: str | None) -> set[str]:
    def hit(run_id: str, patterns: str) -> bool:
        return any(fnmatch.fnmatchcase(run_id, p.strip()) for p in patterns.split(",") if p.strip())

    return {r for r in run_ids if (not only or hit(r, only)) and not (exclude and hit(r, exclude))}


def _folder_view(folder: Path, only: str | None, exclude: str | None) -> SweepView:
    """Every run directory in `folder`; the sweep's name and preparation stages from the copy
    of the sweep file the launcher keeps there (`sweep.yaml`) when it loads."""
    from scaling.study.sweep import SWEEP_COPY, load_sweep_or_runs

    runs = [RunRef(d.name, d) for d in sorted(folder.iterdir()) if _is_run_dir(d)]
    keep = _select([r.run_id for r in runs], only, exclude)
    sweep = None
    if (folder / SWEEP_COPY).is_file():
        try:
            sweep = load_sweep_or_runs(folder)
        except ConfigError:  # moved, or edited since: the run directories still tell
            sweep = None
    return SweepView(sweep.spec.name if sweep else folder.name, folder,
                     [r for r in runs if r.run_id in keep], str(folder), sweep)


def discover(paths: list[Path], only: str | None = None, exclude: str | None = None,
             sets: list[str] | tuple[str, ...] = ()) -> list[SweepView]:
    """The sweeps named by `paths`: sweep files, sweep output folders (holding run
    directories), or folders of output folders (e.g. `runs/`). Raises ConfigError (a sweep
    file) or FileNotFoundError naming the path that holds no sweep. `sets`: the `--set`
    values a sweep file was launched with (they name its runs)."""
    from scaling.study.sweep import load_sweep

    views: list[SweepView] = []
    for path in paths:
        if path.is_file():
            sweep = load_sweep(path, sets)
            views.append(SweepView(sweep.spec.name, sweep.output, sweep.select(only, exclude),
                                   str(path), sweep))
        elif path.is_dir():
            if any(_is_run_dir(d) for d in path.iterdir()):
                views.append(_folder_view(path, only, exclude))
                continue
            found = [_folder_view(d, only, exclude) for d in sorted(path.iterdir())
                     if d.is_dir() and any(_is_run_dir(c) for c in d.iterdir())]
            if not found:
                raise FileNotFoundError(f"{path}: no run directories (<run_id>/config.yaml) in it "
                                        f"or in its sub-folders; give a sweep file or a sweep's "
                                        f"output folder")
            views.extend(found)
        else:
            raise FileNotFoundError(f"{path}: no such sweep file or runs folder")
    return views


def collect(views: list[SweepView], queue_by_backend: dict[str, Queue] | None = None
            ) -> list[dict[str, Any]]:
    """Per sweep: name, output, source, counts per state, code warning, run records."""
    out = []
    for view in views:
        records = run_records(view.runs, queue_by_backend)
        out.append({"name": view.name, "output": str(view.output), "source": view.source,
                    "counts": _counts(records), "code_warning": code_warning(records),
                    "preparation": stage_summary(view.sweep) if view.sweep is not None else "",
                    "runs": records})
    return out


def to_json(report: list[dict[str, Any]]) -> str:
    """The `--json` document: {"time_utc", "sweeps": [...]} without internal fields."""
    clean = [{**s, "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in s["runs"]]}
             for s in report]
    return json.dumps({"time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "sweeps": clean}, indent=2, default=str)


def render_many(views: list[SweepView], queue_by_backend: dict[str, Queue] | None = None) -> str:
    """One text report: a line per sweep (runs per state, code warning), then one table
    (with a sweep column when there are several)."""
    report = collect(views, queue_by_backend)
    many = len(report) > 1
    lines, table = [], []
    for s in report:
        summary = ", ".join(f"{n} {state}" for state, n in s["counts"].items())
        lines.append(f"{s['name']}: {len(s['runs'])} runs in {s['output']} ({summary})")
        if s["code_warning"]:
            lines.append(s["code_warning"])
        for r in s["runs"]:
            row = _row(r)
            table.append(([s["name"]] if many else []) + [row.run, row.state, row.progress,
                                                           row.metrics, row.jobs, row.log])
    header = (["sweep"] if many else []) + ["run", "state", "progress", "latest test metrics",
                                            "jobs", "log"]
    if many:
        total = sum(len(s["runs"]) for s in report)
        counts = _counts([r for s in report for r in s["runs"]])
        lines.insert(0, f"{len(report)} sweeps, {total} runs (" +
                     ", ".join(f"{n} {state}" for state, n in counts.items()) + ")")
    text = "\n".join(lines + [format_table(header, table)])
    flags = [(r["run"], r["data_limited"]) for s in report for r in s["runs"] if r.get("data_limited")]
    if flags:
        from analysis.overfit import MEANING
        text += ("\ndata-limited: " + "; ".join(f"{run}: {v['reason']}" for run, v in flags)
                 + f". Meaning: {MEANING}")
    stages = [f"preparation ({s['name']}): {s['preparation']}" if many else
              f"preparation: {s['preparation']}" for s in report if s["preparation"]]
    return "\n".join([text] + stages)


def duration(seconds: float) -> str:
    """75 -> '1m15s', 3700 -> '1h01m', 9 -> '9s'."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def format_progress(progress: dict | None) -> str:
    """A stage's progress record -> '200/500 steps, 41 images/s, ETA 7m20s, PSNR 19.8 dB'."""
    if not isinstance(progress, dict) or not progress.get("total"):
        return ""
    parts = [f"{progress.get('done', 0)}/{progress['total']} {progress.get('unit', '')}".strip()]
    if progress.get("rate"):
        parts.append(f"{progress['rate']:.0f} {progress.get('rate_unit', '/s')}")
    if progress.get("eta_s") is not None and progress.get("done") != progress.get("total"):
        parts.append(f"ETA {duration(progress['eta_s'])}")
    if progress.get("psnr") is not None:
        parts.append(f"PSNR {progress['psnr']:.1f} dB")
    return ", ".join(parts)


def stage_summary(sweep: Any) -> str:
    """One line on the preparation jobs ('tokenize done, merge running (job 39)'), or ''."""
    from scaling.core.rundir import RunDir

    jobs = sweep.data_dir / "jobs"
    if not sweep.stages() or not jobs.is_dir():
        return ""
    parts = []
    for d in sorted(jobs.iterdir(), key=lambda p: p.stat().st_mtime):
        rec = RunDir(d).read_status()
        ids = rec.get("job_ids") or []
        live = format_progress(rec.get("progress")) if rec.get("state") == "running" else ""
        parts.append(f"{d.name} {rec.get('state', '?')}" + (f" (job {ids[-1]})" if ids else "")
                     + (f" [{live}]" if live else ""))
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaling.status",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", type=Path, nargs="+", metavar="SWEEP",
                        help="sweep files, sweep output folders, or a folder of them (runs/)")
    parser.add_argument("--only", help="comma-separated run-id patterns (globs) to show")
    parser.add_argument("--exclude", help="comma-separated run-id patterns to hide")
    parser.add_argument("--watch", nargs="?", const=10.0, type=float, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until interrupted")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="the --set values a sweep file's runs were launched with (their run ids)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document (with --watch: one per refresh, one line each)")
    args = parser.parse_args(argv)
    if args.watch is not None and not args.watch > 0:
        parser.error(f"--watch: the refresh interval must be > 0 seconds, got {args.watch:g}")
    try:
        views = discover(args.sweeps, args.only, args.exclude, args.sets)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from scaling.core.rundir import CorruptStatus

    try:
        while True:
            try:  # a watched folder may gain sweeps and runs
                views = discover(args.sweeps, args.only, args.exclude, args.sets)
            except (ConfigError, FileNotFoundError) as e:
                print(f"warning: {e}; showing the previous state", file=sys.stderr)
            if args.json:
                text = to_json(collect(views))
                if args.watch:
                    text = json.dumps(json.loads(text))  # one document per line
                print(text, flush=True)
                if not args.watch:
                    return 0
                time.sleep(args.watch)
                continue
            text = render_many(views)
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
