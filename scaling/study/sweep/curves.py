"""A study's training curves with the learning rate each run trained on (or will train on).

The whole-curve laws (`analysis.curvelaw`) need every run's learning rate at every optimizer
step, future steps included for a run still training. That schedule is recomputed here from
the run's own config.yaml by the trainer's schedule code (`scaling.training.schedule`, the one
home of the schedule), and handed to `analysis` as data (an array): analysis stays torch-free
and never imports scaling, and a run written before this existed gets its schedule too. The
metrics.jsonl records' ``lr`` field is not enough: it holds the lr at the evaluation steps
only, and the laws sum the lr over every step up to the end of the schedule.

The run's length T comes from its status.json (``total_steps``, written by the job when it
starts; a decay branch's schedule is laid out on its parent's T), else from a fixed
``length.steps``, else from the last evaluation of a finished run.

Used by both rooms of the study (laws/ for backtests and scoring, run/ for status), hence here.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis import registry
from analysis.curvelaw import Band, Curve, CurveLawError, Forecast, forecast, size_band
from contracts import status as status_file
from scaling.core import provenance
from scaling.core.config_io import ConfigError
from scaling.core.tracking import FORECAST_DIR, append_scalars
from scaling.training import schedule

if TYPE_CHECKING:
    from scaling.training.config import RunConfig


class CurveWarning(UserWarning):
    """A run left out of the curve forecasts (the message says why)."""


@dataclasses.dataclass(frozen=True)
class RunCurve:
    """One run's curve of one metric, with its schedule.

    curve: the full-test-set evaluations and the lr per step (`analysis.curvelaw.Curve`).
    params: N. finished: status.json says done. parent / branch_step: a decay branch's parent
    run and the step it starts from (else None). decay_start: the first step of the schedule's
    cool-down (wsd; a lin0 run's total). schedule: lin0 | wsd. flops_per_step: training FLOPs
    of one step (from the records: flops / step).
    """

    curve: Curve
    params: int
    finished: bool
    parent: str | None
    branch_step: int | None
    decay_start: int
    schedule: str
    flops_per_step: float

    @property
    def run(self) -> str:
        """The run id."""
        return self.curve.run

    @property
    def total_steps(self) -> int:
        """T, the schedule's length."""
        return int(self.curve.lr.size)


def _status(run_dir: Path) -> status_file.RunStatus | None:
    """The run's status.json (`contracts.status`); None when it has none."""
    path = run_dir / status_file.FILE
    return status_file.read_status(path) if path.exists() else None


def _length(config: RunConfig, run_dir: Path, last_step: int | None) -> int | None:
    """The number of steps the run's schedule is laid out on (a branch: its parent's)."""
    if config.branch is not None:
        parent_dir = run_dir.parent / config.branch.parent
        parent = _status(parent_dir)
        if parent is not None and parent.total_steps:
            return parent.total_steps
        if config.length.steps is not None:
            return int(config.length.steps)
        return None
    status = _status(run_dir)
    if status is not None and status.total_steps:
        return status.total_steps
    if config.length.steps is not None:
        return int(config.length.steps)
    if status is None and last_step:  # copied metrics only: a finished run ends at its last step
        return int(last_step)
    return None


def run_schedule(
    run_dir: str | Path, last_step: int | None = None
) -> tuple[np.ndarray, schedule.Plan, RunConfig]:
    """The run's lr at every step 0..T-1 (peak lr x `schedule.lr_factor`), its plan and config.

    Raises ConfigError (an unreadable config.yaml) or ValueError (no length known)."""
    from scaling.training.config import load_run_config  # data only (no var_core)

    run_dir = Path(run_dir)
    config = load_run_config(run_dir / "config.yaml")
    T = _length(config, run_dir, last_step)
    if T is None:
        raise ValueError(
            f"{run_dir}: the run's length is unknown (no total_steps in status.json: "
            "the job has not started)"
        )
    plan = schedule.plan(config, T)
    peak = config.optim.peak_lr
    lr = np.array(
        [peak * schedule.lr_factor(s, plan, config.optim) for s in range(plan.total_steps)]
    )
    return lr, plan, config


def study_curves(
    runs_dir: str | Path, table: pd.DataFrame, metric: str = "ce_avg"
) -> list[RunCurve]:
    """Every run of `table` (a tidy table of `runs_dir`, `analysis.results.read_runs`) with
    its full evaluations of `metric` and its schedule. A run whose schedule cannot be laid
    out (no config.yaml, an unknown length) is left out with a `CurveWarning`."""
    runs_dir = Path(runs_dir)
    out: list[RunCurve] = []
    if metric not in table.columns:  # a table without that metric has no curve of it
        return out
    full = table
    if "eval" in table.columns:
        full = table[table["eval"].fillna("full") == "full"]
    for run, g in full.groupby("run", sort=True):
        g = g.dropna(subset=[metric]).sort_values("step")
        if g.empty:
            continue
        run_dir = runs_dir / str(run)
        steps = g["step"].astype(int).to_numpy()
        try:
            lr, plan, config = run_schedule(run_dir, int(steps[-1]))
            # a decay branch shares its parent's trajectory up to its fork: one (L0, A)
            family = config.branch.parent if config.branch else str(run)
            curve = Curve(str(run), lr, steps, g[metric].astype(float).to_numpy(), family)
        except (ConfigError, ValueError, OSError) as e:
            warnings.warn(
                f"{run}: left out of the curve forecasts ({e})", CurveWarning, stacklevel=2
            )
            continue
        flops = g["flops"].astype(float).to_numpy() if "flops" in g.columns else None
        finished = bool(g["finished"].iloc[-1]) if "finished" in g.columns else True
        out.append(
            RunCurve(
                curve=curve,
                params=int(g["params"].iloc[-1]),
                finished=finished,
                parent=config.branch.parent if config.branch else None,
                branch_step=plan.start_step if config.branch else None,
                decay_start=plan.decay_start,
                schedule=config.optim.schedule,
                flops_per_step=float(flops[-1] / steps[-1]) if flops is not None else float("nan"),
            )
        )
    return out


def code_version() -> str | None:
    """This code's identity for the forecast registry: 'abc1234567' or '...+dirty(1a2b3c4d)'."""
    state = provenance.git_state()
    if state.get("commit") is None:
        return None
    ident = str(state["commit"])[:10]
    if state.get("dirty"):
        ident += f"+dirty({(state.get('diff_sha256') or '?')[:8]})"
    return ident


def curves_sha256(curves: list[Curve]) -> str:
    """The hash of the evaluations a forecast was made from (runs, steps, values)."""
    rows = [(c.run, int(s), float(v)) for c in curves for s, v in zip(c.steps, c.loss, strict=True)]
    return registry.table_sha256(pd.DataFrame(rows, columns=["run", "step", "value"]))


@dataclasses.dataclass(frozen=True)
class RunForecast:
    """A run's forecast final metric (`forecast`), the band of the finished sizes at its
    current compute (`band`, None when fewer than 3 sizes reached it) and the registry record."""

    run: str
    metric: str
    forecast: Forecast | None
    band: Band | None
    record: registry.ForecastRecord | None
    note: str | None = None


def forecast_run(
    runs_dir: str | Path,
    curves: list[RunCurve],
    run: str,
    metric: str = "ce_avg",
    law: str = "lra",
    level: float = 0.95,
    code: str | None = None,
) -> RunForecast:
    """Forecast `run`'s final `metric` from its evaluations so far, the shared parameters
    from the study's finished runs (`analysis.curvelaw.forecast`), and place its latest value
    in the band the finished sizes imply at its compute (`analysis.curvelaw.size_band`)."""
    by = {rc.run: rc for rc in curves}
    me = by[run]
    # a finished decay branch counts with one evaluation: it shares its parent's (L0, A)
    done = [
        rc
        for rc in curves
        if rc.finished
        and rc.run != run
        and (rc.curve.steps.size >= 3 or (rc.parent is not None and rc.curve.steps.size))
    ]
    f = rec = None
    note = None
    if me.curve.steps.size < 2:
        note = "needs 2 evaluations"
    elif not done:
        note = "needs a finished run in the study"
    else:
        try:
            f = forecast([rc.curve for rc in done], me.curve, law=law, level=level)
        except CurveLawError as e:
            note = str(e)
    if f is not None:
        rec = registry.make_forecast(
            kind="curve",
            target=registry.Target(metric=metric, run=run, step=me.total_steps),
            predicted=f.value,
            interval=(f.lo, f.hi),
            level=level,
            law=law,
            settings={
                "prefix_step": f.prefix_step,
                "n_prefix": f.n_prefix,
                "study_runs": f.n_study,
            },
            E=None,
            input_sha256=curves_sha256([rc.curve for rc in done] + [me.curve]),
            code=code,
            source=str(runs_dir),
        )
    others = [
        (rc.params, rc.curve.steps * rc.flops_per_step, rc.curve.loss)
        for rc in curves
        if rc.finished and rc.run != run and rc.parent is None
    ]
    band = None
    if me.curve.steps.size:
        band = size_band(
            others,
            me.params,
            float(me.curve.steps[-1] * me.flops_per_step),
            float(me.curve.loss[-1]),
            level=level,
        )
    return RunForecast(run, metric, f, band, rec, note)


def register(output: Path, fr: RunForecast, run_dir: Path) -> bool:
    """Append a run's forecast to the study's registry (forecasts.jsonl) and, when it is new
    there, to the run's TensorBoard (``<run_dir>/forecast/``, at the step it was made from:
    forecast/<metric>_final with _lo and _hi, band/<metric>_lo, _hi and _run). Returns whether
    it was new."""
    if fr.record is None or fr.forecast is None:
        return False
    if not registry.append(Path(output) / registry.FILE, [fr.record]):
        return False
    m = fr.metric
    scalars = {
        f"forecast/{m}_final": fr.forecast.value,
        f"forecast/{m}_final_lo": fr.forecast.lo,
        f"forecast/{m}_final_hi": fr.forecast.hi,
    }
    if fr.band is not None:
        scalars.update(
            {
                f"band/{m}_lo": fr.band.lo,
                f"band/{m}_hi": fr.band.hi,
                f"band/{m}_run": fr.band.observed,
            }
        )
    append_scalars(Path(run_dir) / FORECAST_DIR, fr.forecast.prefix_step, scalars)
    return True
