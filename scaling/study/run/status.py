"""Where every run of a sweep stands: `python -m scaling.status SWEEP.yaml [--watch] [--json]`.

Several sweeps at a glance: `python -m scaling.status runs/` (every sweep output folder under
it), several sweep files or output folders, one table with a sweep column; `--json` prints
the same as one JSON document for scripts. Each sweep also says when its runs were produced
by different code (their provenance.json: git commit, dirty-tree diff hash).

One row per run: state, progress (step, tokens, % of the run's budget), the latest test
metrics, job ids and the log path. A run's state comes from its status.json *and* from the
scheduler (`scaling.study.run.states`: pending, queued, running, done, failed, stopped,
orphaned), the same logic the launcher uses to decide what to (re)submit.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis import registry
from analysis.curvelaw import CurveLawError
from analysis.overfit import MEANING, check_run, se_column
from analysis.results import ResultsError, read_runs
from analysis.settings import FitSettings
from contracts.jsondoc import utc_now
from contracts.metrics import METRICS
from scaling.core import provenance
from scaling.core.cli import InputError, run_cli, setup_logging
from scaling.core.config_io import ConfigError, load_config
from scaling.core.rundir import RunDir
from scaling.core.tables import duration, format_table, human
from scaling.study.run.prepare import quality_line, stage_summary
from scaling.study.run.states import Queue, run_states
from scaling.study.sweep.curves import code_version, forecast_run, register, study_curves
from scaling.study.sweep.sweep import SWEEP_COPY, load_sweep, load_sweep_or_runs, selected

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One line of the status table."""

    run: str
    state: str
    progress: str
    metrics: str
    jobs: str
    log: str


def sane(record: dict) -> bool:
    """Whether a metrics line can be shown: step and tokens whole numbers >= 0 (as the
    trainer writes them) and no NaN or infinite number in it. A line written by hand or
    damaged (NaN, inf, 1e+282 tokens) is left out of the status instead of shown."""
    for key in ("step", "tokens"):
        value = record.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            return False
    return all(math.isfinite(v) for v in record.values() if isinstance(v, float)) and all(
        math.isfinite(x)
        for v in record.values()
        if isinstance(v, list)
        for x in v
        if isinstance(x, float)
    )


def _metrics(run_dir: Path) -> list[dict]:
    """The run's metrics lines that can be shown (`sane`; a torn last line is skipped by
    the reader)."""
    rows = [r.columns() for r in RunDir(run_dir).read_metrics()]  # contracts.metrics
    return [r for r in rows if sane(r)]


def _last_metrics(run_dir: Path) -> dict | None:
    records = [
        r for r in _metrics(run_dir) if r.get("eval") != "samples"
    ]  # sample-quality lines carry no test loss
    return records[-1] if records else None


def data_limited(run_dir: Path) -> dict | None:
    """The run's data-limited flag (analysis.overfit: a full-evaluation test metric risen more
    than K standard errors above its own minimum at two evaluations in a row while the
    training loss fell), or None."""
    recs = [
        r
        for r in _metrics(run_dir)
        if r.get("eval", "full") == "full" and isinstance(r.get("ce_avg"), (int, float))
    ]
    if len(recs) < 2:
        return None
    train = [r.get("train_loss") for r in recs]

    def column(key: str) -> list | None:
        values = [r.get(key) for r in recs]
        return values if all(isinstance(v, (int, float)) for v in values) else None

    metrics = {m: v for m in METRICS if (v := column(m)) is not None}
    se = {m: v for m in METRICS if (v := column(se_column(m))) is not None}
    return check_run(
        [r.get("step", i) for i, r in enumerate(recs)],
        metrics,
        train if all(isinstance(t, (int, float)) for t in train) else None,
        se or None,
    )


def run_records(
    runs: list[Any], queue_by_backend: dict[str, Queue] | None = None
) -> list[dict[str, Any]]:
    """One plain record per run (what `--json` prints): run, state, scheduler_state, step,
    total_steps, percent, tokens, the latest test metrics, job_ids, log, error, code."""
    states = run_states(runs, queue_by_backend)
    out = []
    for run in runs:
        state, slurm, rec = states[run.run_id]
        m = _last_metrics(run.run_dir) or {}
        try:
            code = provenance.code_identity(provenance.read(run.run_dir))
        except ValueError as e:  # a corrupt provenance.json is reported, not fatal
            code = f"unreadable: {e}"
        percent = (
            None  # through the run's budget: steps (recorded by the job) or tokens (estimated)
        )
        if rec.get("total_steps") and isinstance(m.get("step"), (int, float)):
            percent = 100 * m["step"] / rec["total_steps"]
        elif rec.get("budget_tokens") and isinstance(m.get("tokens"), (int, float)):
            percent = 100 * m["tokens"] / rec["budget_tokens"]
        out.append(
            {
                "run": run.run_id,
                "parent": getattr(run, "parent", None),  # decay branches
                "run_dir": str(run.run_dir),
                "state": state,
                "scheduler_state": slurm,
                "step": m.get("step", rec.get("step")),
                "total_steps": rec.get("total_steps"),
                "percent": percent,
                "tokens": m.get("tokens"),
                "metrics": {k: m[k] for k in METRICS if isinstance(m.get(k), (int, float))},
                "job_ids": [str(j) for j in rec.get("job_ids") or []],
                "log": rec.get("log"),
                "error": rec.get("error") if state == "failed" else None,
                # several processes: the rank that failed first (rank 0 may only echo it)
                "first_error": RunDir(run.run_dir).first_rank_error()
                if state == "failed"
                else None,
                "code": code,
                "data_limited": data_limited(run.run_dir) if m else None,
                "eta_s": rec.get("eta_s") if state == "running" else None,
                "_has_metrics": bool(m),
                "_rec": rec,
                "_last": m,
            }
        )
    return out


def _row(r: dict[str, Any]) -> Row:
    m, rec, state, slurm = r["_last"], r["_rec"], r["state"], r["scheduler_state"]
    progress = metrics = "-"
    if r["_has_metrics"]:
        progress = f"step {m.get('step', '?')}, {human(float(m.get('tokens', 0)))} tok"
        if r["percent"] is not None:
            progress += f" ({r['percent']:.0f}%)"
        metrics = " ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
        if r.get("data_limited"):
            metrics += " [data-limited]"
    if state == "running" and isinstance(r.get("eta_s"), (int, float)):
        progress += f", ETA {duration(r['eta_s'])}"
    label = state + (
        f" ({slurm})"
        if slurm and slurm not in ("RUNNING", "PENDING") or (slurm and state == "failed")
        else ""
    )
    first = r.get("first_error")  # a contracts.rank_errors.RankError
    if state == "failed" and first:
        text = (first.error.strip().splitlines() or ["?"])[0]
        label += f": rank {first.rank} on {first.host}: {text[:60]}"
    elif state == "failed" and rec.get("error"):
        label += f": {str(rec['error']).splitlines()[0][:60]}"
    name = f"  `- {r['run']}" if r.get("parent") else r["run"]  # a branch under its parent
    return Row(name, label, progress, metrics, ",".join(r["job_ids"]) or "-", str(r["log"] or "-"))


def code_warning(records: list[dict[str, Any]]) -> str | None:
    """The warning when the runs of one sweep (their records) came from different code."""
    return provenance.mixed_code_warning({r["run"]: r["code"] for r in records})


def _counts(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return dict(sorted(counts.items()))


def render(
    sweep: Any, runs: list[Any] | None = None, queue_by_backend: dict[str, Queue] | None = None
) -> str:
    """The status table as text, with a count of runs per state."""
    view = SweepView(
        sweep.spec.name,
        sweep.output,
        list(sweep.runs if runs is None else runs),
        str(sweep.source),
        sweep,
    )
    return render_many([view], queue_by_backend)


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


def _folder_view(folder: Path, only: str | None, exclude: str | None) -> SweepView:
    """Every run directory in `folder`; the sweep's name and preparation stages from the copy
    of the sweep file the launcher keeps there (`sweep.yaml`) when it loads."""
    runs = [RunRef(d.name, d) for d in sorted(folder.iterdir()) if _is_run_dir(d)]
    sweep = None
    if (folder / SWEEP_COPY).is_file():
        try:
            sweep = load_sweep_or_runs(folder)
        except ConfigError:  # moved, or edited since: the run directories still tell
            sweep = None
    return SweepView(
        sweep.spec.name if sweep else folder.name,
        folder,
        [r for r in runs if selected(r.run_id, only, exclude)],
        str(folder),
        sweep,
    )


def discover(
    paths: list[Path],
    only: str | None = None,
    exclude: str | None = None,
    sets: list[str] | tuple[str, ...] = (),
) -> list[SweepView]:
    """The sweeps named by `paths`: sweep files, sweep output folders (holding run
    directories), or folders of output folders (e.g. `runs/`). Raises ConfigError (a bad
    sweep file, or naming the path that holds no sweep). `sets`: the `--set` values a sweep
    file was launched with (they name its runs)."""
    views: list[SweepView] = []
    for path in paths:
        if path.is_file():
            sweep = load_sweep(path, sets)
            views.append(
                SweepView(
                    sweep.spec.name, sweep.output, sweep.select(only, exclude), str(path), sweep
                )
            )
        elif path.is_dir():
            if any(_is_run_dir(d) for d in path.iterdir()):
                views.append(_folder_view(path, only, exclude))
                continue
            found = [
                _folder_view(d, only, exclude)
                for d in sorted(path.iterdir())
                if d.is_dir() and any(_is_run_dir(c) for c in d.iterdir())
            ]
            if not found:
                raise ConfigError(
                    f"{path}: no run directories (<run_id>/config.yaml) in it "
                    f"or in its sub-folders; give a sweep file or a sweep's "
                    f"output folder"
                )
            views.extend(found)
        else:
            raise ConfigError(f"{path}: no such sweep file or runs folder")
    return views


FORECAST_METRIC = "ce_avg"


def _curve_law(output: Path) -> str:
    """The study's whole-curve law: its fit.yaml's curve_law, else the default."""
    try:
        if (output / "fit.yaml").is_file():
            return load_config(FitSettings, output / "fit.yaml").curve_law
    except ConfigError:
        pass
    return FitSettings().curve_law


def add_forecasts(output: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Forecast every unfinished run with evaluations (`scaling.study.sweep.curves.forecast_run`:
    its final ce_avg with an interval, and the band of the finished sizes at its compute),
    store each in its record (``forecast``), append new forecasts to the study's registry
    (forecasts.jsonl) and to the run's TensorBoard (``<run_dir>/forecast/``). Returns the
    registry's scored forecasts and any problem, for the report."""
    path = output / registry.FILE
    info: dict[str, Any] = {"law": _curve_law(output), "scored": [], "problem": None}
    # every run with evaluations that has not finished (running, or stopped part-way)
    running = [r for r in records if r["state"] != "done" and r["_has_metrics"]]
    try:
        if running:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the table's problems are scaling.fit's to say
                curves = study_curves(output, read_runs(output), FORECAST_METRIC)
            known = {c.run for c in curves}
            code = code_version()
            have = {r.id for r in registry.read(path) if isinstance(r, registry.ForecastRecord)}
            for r in running:
                if r["run"] not in known:
                    continue
                fr = forecast_run(output, curves, r["run"], FORECAST_METRIC, info["law"], code=code)
                r["forecast"] = {
                    "metric": FORECAST_METRIC,
                    "law": info["law"],
                    "final": fr.forecast.to_dict() if fr.forecast else None,
                    "band": fr.band.to_dict() if fr.band else None,
                    "note": fr.note,
                }
                if fr.record is not None and fr.record.id not in have:
                    register(output, fr, Path(r["run_dir"]))
        info["scored"] = [
            {
                "kind": f.kind,
                "run": f.target.run,
                "metric": f.target.metric,
                "law": f.law,
                "predicted": f.predicted,
                "interval": f.interval,
                "observed": s.observed,
                "rel_error": s.rel_error,
                "inside": s.inside,
                "created_utc": f.created_utc,
            }
            for f, s in registry.scored(registry.read(path))
        ]
    except (
        ResultsError,
        CurveLawError,
        registry.RegistryError,
        ConfigError,
        OSError,
        ValueError,
    ) as e:
        info["problem"] = str(e)
    return info


def collect(
    views: list[SweepView],
    queue_by_backend: dict[str, Queue] | None = None,
    forecasts: bool = True,
) -> list[dict[str, Any]]:
    """Per sweep: name, output, source, counts per state, code warning, run records (with
    `forecasts`: each running run's forecast, and the registry's scored forecasts)."""
    out = []
    for view in views:
        records = run_records(view.runs, queue_by_backend)
        fc = add_forecasts(Path(view.output), records) if forecasts else None
        out.append(
            {
                "name": view.name,
                "output": str(view.output),
                "source": view.source,
                "counts": _counts(records),
                "code_warning": code_warning(records),
                "preparation": stage_summary(view.sweep) if view.sweep is not None else "",
                "tokenizer": quality_line(view.sweep) if view.sweep is not None else "",
                "runs": records,
                "forecasts": fc,
            }
        )
    return out


def to_json(report: list[dict[str, Any]]) -> str:
    """The `--json` document: {"time_utc", "sweeps": [...]} without internal fields."""
    clean = [
        {**s, "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in s["runs"]]}
        for s in report
    ]
    return json.dumps(
        {"time_utc": utc_now(), "sweeps": clean},
        indent=2,
        default=lambda o: o.as_dict() if hasattr(o, "as_dict") else str(o),  # a RankError
    )


def forecast_lines(report: list[dict[str, Any]], last: int = 5) -> str:
    """The report's forecasts as text: per running run its forecast final value with the
    interval and where it lies in the band of the finished sizes; per sweep the registry's
    scored forecasts (count, how many inside their interval, the `last` few)."""
    lines = []
    for s in report:
        fc = s.get("forecasts")
        if not fc:
            continue
        for r in s["runs"]:
            f = r.get("forecast")
            if not f:
                continue
            fin, band = f["final"], f["band"]
            head = f"forecast {r['run']} ({f['metric']}, {f['law']} law): "
            if fin:
                head += (
                    f"final {fin['value']:.4f} [{fin['lo']:.4f}, {fin['hi']:.4f}] "
                    f"({100 * fin['level']:.0f}%) at step {fin['step']}, from {fin['n_prefix']} "
                    f"evaluations to step {fin['prefix_step']} and {fin['n_study']} finished runs"
                )
            else:
                head += f"no final forecast ({f['note']})"
            if band:
                head += (
                    f"; now {band['observed']:.4f} at {band['compute']:.3g} FLOPs: "
                    f"{band['verdict'].upper()} the band of {len(band['sizes'])} finished sizes "
                    f"[{band['lo']:.4f}, {band['hi']:.4f}]"
                    + (
                        " (extrapolated: this size lies outside theirs, a weak verdict)"
                        if band.get("extrapolated")
                        else ""
                    )
                )
            else:
                head += "; no band (fewer than 3 finished sizes reached this compute)"
            lines.append(head)
        if fc.get("problem"):
            lines.append(f"forecasts ({s['name']}): not made ({fc['problem']})")
        scored = fc.get("scored") or []
        if scored:
            with_iv = [x for x in scored if x["inside"] is not None]
            inside = sum(bool(x["inside"]) for x in with_iv)
            lines.append(
                f"scored forecasts ({s['name']}, {registry.FILE}): {len(scored)}; "
                f"{inside} of {len(with_iv)} with an interval inside it; "
                f"the last {min(last, len(scored))}:"
            )
            rows = [
                [
                    x["kind"],
                    x["run"] or "-",
                    x["metric"],
                    x["law"],
                    f"{x['predicted']:.4f}",
                    "-"
                    if x["interval"] is None
                    else f"[{x['interval'][0]:.4f}, {x['interval'][1]:.4f}]",
                    f"{x['observed']:.4f}",
                    f"{100 * x['rel_error']:+.2f}%",
                    "-" if x["inside"] is None else ("yes" if x["inside"] else "NO"),
                ]
                for x in scored[-last:]
            ]
            lines.append(
                format_table(
                    [
                        "kind",
                        "run",
                        "metric",
                        "law",
                        "predicted",
                        "interval",
                        "observed",
                        "error",
                        "inside",
                    ],
                    rows,
                )
            )
    return ("\n" + "\n".join(lines)) if lines else ""


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
            table.append(
                ([s["name"]] if many else [])
                + [row.run, row.state, row.progress, row.metrics, row.jobs, row.log]
            )
    header = (["sweep"] if many else []) + [
        "run",
        "state",
        "progress",
        "latest test metrics",
        "jobs",
        "log",
    ]
    if many:
        total = sum(len(s["runs"]) for s in report)
        counts = _counts([r for s in report for r in s["runs"]])
        lines.insert(
            0,
            f"{len(report)} sweeps, {total} runs ("
            + ", ".join(f"{n} {state}" for state, n in counts.items())
            + ")",
        )
    text = "\n".join(lines + [format_table(header, table)])
    flags = [
        (r["run"], r["data_limited"]) for s in report for r in s["runs"] if r.get("data_limited")
    ]
    if flags:
        text += (
            "\ndata-limited: "
            + "; ".join(f"{run}: {v['reason']}" for run, v in flags)
            + f". Meaning: {MEANING}"
        )
    text += forecast_lines(report)
    stages = [
        f"preparation ({s['name']}): {s['preparation']}"
        if many
        else f"preparation: {s['preparation']}"
        for s in report
        if s["preparation"]
    ]
    stages += [
        f"tokenizer ({s['name']}): {s['tokenizer']}" if many else f"tokenizer: {s['tokenizer']}"
        for s in report
        if s.get("tokenizer")
    ]
    return "\n".join([text] + stages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scaling.status", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "sweeps",
        type=Path,
        nargs="+",
        metavar="SWEEP",
        help="sweep files, sweep output folders, or a folder of them (runs/)",
    )
    parser.add_argument("--only", help="comma-separated run-id patterns (globs) to show")
    parser.add_argument("--exclude", help="comma-separated run-id patterns to hide")
    parser.add_argument(
        "--watch",
        nargs="?",
        const=10.0,
        type=float,
        metavar="SECONDS",
        help="refresh every SECONDS (default 10) until interrupted",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the --set values a sweep file's runs were launched with (their run ids)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document (with --watch: one per refresh, one line each)",
    )
    args = parser.parse_args(argv)
    if args.watch is not None and not args.watch > 0:
        parser.error(f"--watch: the refresh interval must be > 0 seconds, got {args.watch:g}")
    setup_logging()
    return run_cli(lambda: _show(args))


def _show(args: argparse.Namespace) -> int:
    """Print the report once, or every `args.watch` seconds until interrupted."""
    views = discover(args.sweeps, args.only, args.exclude, args.sets)
    try:
        while True:
            if args.json:
                text = to_json(collect(views))
                if args.watch:
                    text = json.dumps(json.loads(text))  # one document per line
            else:
                text = render_many(views)
                if args.watch and sys.stdout.isatty():
                    text = "\033[2J\033[H" + time.strftime("%H:%M:%S ") + text
            print(text, flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)
            try:  # a watched folder may gain sweeps and runs
                views = discover(args.sweeps, args.only, args.exclude, args.sets)
            except InputError as e:
                log.warning("warning: %s; showing the previous state", e)
    except KeyboardInterrupt:
        return 0
