"""``python -m scaling.fit RUNS --set backtest=true``: how well the study's laws predict, and the
registry.

Writes into the fit's output folder:

    backtest.json   every prediction: leave-future-out over sizes and over compute (power
                    laws, `analysis.backtest`), and the whole-curve forecasts (each finished
                    run's final metric from its first `forecast_frac` of steps, per curve law;
                    each decay branch's final from its parent's constant phase and the gain of
                    its cool-down; `analysis.curvelaw`)
    backtest.md     the tables (also appended to fits.md as a section)
    backtest.png/pdf  |prediction error| against the extrapolation factor, N and Cmin

Every prediction is appended to the study's forecast registry (``forecasts.jsonl``,
`analysis.registry`) with its score (the observed value is already known in a backtest).
`score_pending` scores the registry's earlier forecasts whose runs have finished since; the
fit CLI calls it on every fit of a runs directory.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from analysis import backtest as bt
from analysis import registry
from analysis.curvelaw import (
    LAWS,
    CurveLawError,
    backtest_curves,
    forecast,
    value_at_compute,
)
from analysis.fitting import StudyFit
from analysis.powerlaw import Irreducible
from analysis.results import ResultsError, load_results, prepare
from analysis.settings import FitSettings
from contracts.atomic import atomic_write_json, atomic_write_text
from contracts.metrics import METRICS
from scaling.study.sweep.curves import (
    RunCurve,
    code_version,
    curves_sha256,
    forecast_run,
    register,
    study_curves,
)

CURVE_METRIC = "ce_avg"


def registry_path(source: Path, out: Path) -> Path:
    """The study's forecasts.jsonl: in the runs directory, or beside a table's fit outputs."""
    return (source if source.is_dir() else out) / registry.FILE


def power_backtest(fit: StudyFit) -> list[dict[str, Any]]:
    """Both leave-future-out backtests of the study's power laws (`analysis.backtest`), with
    the fit's E choice, method and final-evaluation rule; one dict per prediction."""
    if fit.axes["law_columns"] or fit.axes["best_column"] is not None:
        warnings.warn(
            "backtest: the study has laws per axis value (or --best-over); the backtest "
            "fits one law through all runs of each size and is skipped here",
            stacklevel=2,
        )
        return []
    s = fit.settings
    # E_mode is resolved by choose_irreducible: "paper", "none", "fit" or a number
    E = cast(Irreducible, fit.E_mode)
    table = fit.table
    if fit.unfinished and not s.include_unfinished:
        table_n = table[~table["run"].astype(str).isin(fit.unfinished)]
    else:
        table_n = table
    rows: list[dict[str, Any]] = []
    if "N" in s.against:
        rows += bt.backtest_sizes(table_n, s.metrics, E, s.method, s.final)
    if "Cmin" in s.against:
        rows += bt.backtest_compute(table, s.metrics, E, s.method)
    return rows


def _curve_rows(curves: list[RunCurve], frac: float, level: float) -> dict[str, list[dict]]:
    """Per law: each finished plain run's final forecast from its first `frac`; the shared
    parameters from the other families' finished runs and decay branches."""
    plain = [
        rc
        for rc in curves
        if rc.finished
        and rc.parent is None
        and rc.curve.steps.size >= 3
        and rc.curve.steps[-1] == rc.total_steps
    ]
    study = [rc.curve for rc in curves if rc.finished and rc.curve.steps.size]
    out = {}
    for law in LAWS:
        try:
            out[law] = backtest_curves([rc.curve for rc in plain], law, frac, level, study)
        except CurveLawError as e:
            warnings.warn(f"backtest: whole-curve law {law}: {e}", stacklevel=2)
            out[law] = []
    return out


def _branch_rows(
    curves: list[RunCurve], level: float, at_fork: bool = False, cache: dict | None = None
) -> dict[str, list[dict]]:
    """Per law: each finished decay branch's final forecast from its parent's evaluations in
    its constant phase (`at_fork`: only those made by the step the branch forks at, what is
    known when it starts; branches with fewer than 2 are skipped), the shared parameters
    from the runs and branches of the other sizes; and the predicted gain of the cool-down
    (the loss with the lr held at its peak to the same step, minus the loss after the
    cool-down). Where the parent's constant phase was evaluated on both sides of the branch's
    last step, the gain is also measured: the parent's loss there (log-log interpolation
    between those evaluations, the lr held at its peak) minus the branch's final loss.
    cache: study fits shared by the branches of one size (`analysis.curvelaw.forecast`)."""
    cache = {} if cache is None else cache
    by = {rc.run: rc for rc in curves}
    out: dict[str, list[dict]] = {law: [] for law in LAWS}
    for b in curves:
        p = by.get(b.parent or "")
        if p is None or not b.finished or b.curve.steps[-1] != b.total_steps:
            continue
        cut = min(p.decay_start, b.branch_step or 0) if at_fork else p.decay_start
        prefix = p.curve.until(cut)
        if prefix.steps.size < 2:
            continue
        study = [
            rc.curve
            for rc in curves
            if rc.finished and rc.params != b.params and rc.curve.steps.size >= 1
        ]
        peak = float(b.curve.lr[: b.decay_start].max())
        held = np.concatenate(
            [b.curve.lr[: b.decay_start], np.full(b.total_steps - b.decay_start, peak)]
        )
        for law in LAWS:
            try:
                f = forecast(
                    study,
                    prefix,
                    [(b.curve.lr, b.total_steps, 1.0)],
                    law=law,
                    level=level,
                    cache=cache,
                )
                g = forecast(
                    study,
                    prefix,
                    [(held, b.total_steps, 1.0), (b.curve.lr, b.total_steps, -1.0)],
                    law=law,
                    level=level,
                    cache=cache,
                )
            except CurveLawError as e:
                warnings.warn(f"backtest: {b.run} ({law}): {e}", stacklevel=2)
                continue
            obs = float(b.curve.loss[-1])
            held_phase = p.curve.until(p.decay_start)
            at_end = value_at_compute(held_phase.steps, held_phase.loss, float(b.total_steps))
            out[law].append(
                {
                    "run": b.run,
                    "parent": p.run,
                    "observed": obs,
                    "predicted": f.value,
                    "lo": f.lo,
                    "hi": f.hi,
                    "rel_error": f.value / obs - 1,
                    "inside": bool(f.lo <= obs <= f.hi),
                    "n_prefix": f.n_prefix,
                    "prefix_step": f.prefix_step,
                    "steps": b.total_steps,
                    "gain": g.value,
                    "gain_lo": g.lo,
                    "gain_hi": g.hi,
                    "gain_observed": None if at_end is None else at_end - obs,
                }
            )
    return out


def _curve_summary(rows: list[dict]) -> dict[str, Any]:
    if not rows:
        return {"n": 0}
    err = np.abs([r["rel_error"] for r in rows])
    out: dict[str, Any] = {
        "n": len(rows),
        "mean_abs_rel_error": float(err.mean()),
        "max_abs_rel_error": float(err.max()),
        "coverage": float(np.mean([r["inside"] for r in rows])),
    }
    gains = [r for r in rows if r.get("gain_observed") is not None]
    if gains:
        out["gain"] = {
            "n": len(gains),
            "mean_abs_error": float(np.mean([abs(r["gain"] - r["gain_observed"]) for r in gains])),
            "mean_abs_observed": float(np.mean([abs(r["gain_observed"]) for r in gains])),
            "coverage": float(
                np.mean([r["gain_lo"] <= r["gain_observed"] <= r["gain_hi"] for r in gains])
            ),
        }
    return out


def _records(
    fit: StudyFit | None,
    table: pd.DataFrame,
    power: list[dict],
    curve: dict,
    branch: dict,
    fork: dict,
    frac: float,
    level: float,
    code,
    source: str,
    curves,
) -> list:
    """Registry records (forecast, then its score) of every backtest prediction."""
    recs: list = []
    sha = registry.table_sha256(
        table, [c for c in ("run", "step", "params", "compute", *METRICS) if c in table.columns]
    )
    for r in power:
        E = {"choice": r["E_choice"], "value": r["E"]}
        kind = "backtest_size" if r["against"] == "N" else "backtest_compute"
        target = (
            registry.Target(metric=r["metric"], run=r["target"], params=r["x"])
            if r["against"] == "N"
            else registry.Target(metric=r["metric"], run=r["target"], flops=r["x"])
        )
        f = registry.make_forecast(
            kind=kind,
            target=target,
            predicted=r["predicted"],
            interval=None,
            level=None,
            law=f"power vs {r['against']}" if fit is not None else "nd",
            settings={
                "fit_max": r["fit_max"],
                "factor": r["factor"],
                **(
                    {"method": fit.settings.method, "final": fit.settings.final}
                    if fit is not None
                    else {}
                ),
            },
            E=E,
            input_sha256=sha,
            code=code,
            source=source,
            interval_note="a backtest's point prediction (its error against the extrapolation "
            "factor is the result)",
        )
        recs += [f, registry.score(f, r["observed"])]
    csha = curves_sha256([rc.curve for rc in curves])
    for kind, source_of, table in (
        ("curve", "prefix", curve),
        ("cooldown", "decay branch from parent", branch),
        ("cooldown", "decay branch from parent at its fork", fork),
    ):
        for law, rows in table.items():
            for r in rows:
                f = registry.make_forecast(
                    kind=kind,
                    target=registry.Target(metric=CURVE_METRIC, run=r["run"], step=r["steps"]),
                    predicted=r["predicted"],
                    interval=(r["lo"], r["hi"]),
                    level=level,
                    law=law,
                    settings={
                        "backtest": source_of,
                        "prefix_step": r["prefix_step"],
                        "n_prefix": r["n_prefix"],
                        **({"prefix_frac": frac} if kind == "curve" else {"parent": r["parent"]}),
                    },
                    E=None,
                    input_sha256=csha,
                    code=code,
                    source=source,
                )
                recs += [f, registry.score(f, r["observed"])]
    return recs


def _summary_rows(summary: dict[str, dict[str, Any]]) -> list[str]:
    """One Markdown row per whole-curve law that made forecasts: count, errors, coverage."""
    return [
        f"| {law} | {s['n']} | {_pct(s['mean_abs_rel_error'])} "
        f"| {_pct(s['max_abs_rel_error'])} | {s['coverage']:.2f} |"
        for law, s in summary.items()
        if s["n"]
    ]


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def markdown(doc: dict[str, Any]) -> str:
    """backtest.md: the power-law table and the whole-curve tables."""
    lines = [
        "## Backtest",
        "",
        "Leave-future-out: fit on the k smallest sizes and predict each larger size's final "
        "value (vs N); fit below a compute cut and predict above it (vs Cmin). Factor: "
        "target size / largest fitted size, or target compute / cut. "
        f"Law and E: {doc['E']}.",
        "",
        bt.markdown(doc["power"]) if doc["power"] else "(no power-law backtest: see warnings)\n",
    ]
    curve, branch = doc["curve"], doc["branch"]
    if any(curve["rows"].values()):
        lines += [
            f"Whole-curve forecasts of {CURVE_METRIC}: each finished run's final value from its "
            f"first {100 * curve['frac']:.0f}% of steps, the shared parameters from the other "
            f"runs; {100 * curve['level']:.0f}% prediction intervals.",
            "",
            "| law | runs | mean abs. rel. error | max abs. rel. error | coverage |",
            "|---|---|---|---|---|",
        ]
        lines += _summary_rows(curve["summary"])
        best = curve["rows"].get(doc["law"]) or []
        if best:
            lines += [
                "",
                f"Per run ({doc['law']}):",
                "",
                "| run | prefix steps | observed | forecast | interval | rel. error | inside |",
                "|---|---|---|---|---|---|---|",
            ]
            for r in best:
                lines.append(
                    f"| {r['run']} | {r['prefix_step']}/{r['steps']} ({r['n_prefix']} evals) "
                    f"| {r['observed']:.4f} | {r['predicted']:.4f} "
                    f"| [{r['lo']:.4f}, {r['hi']:.4f}] "
                    f"| {100 * r['rel_error']:+.2f}% | {'yes' if r['inside'] else 'no'} |"
                )
        lines.append("")
    if any(branch["rows"].values()):
        lines += [
            f"Decay branches: each branch's final {CURVE_METRIC} from its parent's evaluations "
            "in the constant phase; shared parameters from the runs of the other sizes.",
            "",
            "| law | branches | mean abs. rel. error | max abs. rel. error | coverage |",
            "|---|---|---|---|---|",
        ]
        lines += _summary_rows(branch["summary"])
        fork = branch.get("at_fork") or {}
        if any((fork.get("rows") or {}).values()):
            lines += [
                "",
                "The same, from only the parent's evaluations made by the step each branch "
                "forks at (what is known when it starts; branches with fewer than 2 such "
                "evaluations left out):",
                "",
                "| law | branches | mean abs. rel. error | max abs. rel. error | coverage |",
                "|---|---|---|---|---|",
                *_summary_rows(fork["summary"]),
            ]
        gains = {law: s["gain"] for law, s in branch["summary"].items() if s.get("gain")}
        if gains:
            lines += [
                "",
                "The gain of each cool-down (the loss with the lr held at its peak to the same "
                "step minus the loss after the cool-down), predicted from the parent's constant "
                "phase, against the gain measured where the parent was evaluated on both sides "
                "of the branch's end (log-log interpolation):",
                "",
                "| law | branches | mean abs. observed gain | mean abs. error of the predicted "
                "gain | inside its interval |",
                "|---|---|---|---|---|",
                *(
                    f"| {law} | {g['n']} | {g['mean_abs_observed']:.4f} "
                    f"| {g['mean_abs_error']:.4f} | {g['coverage']:.2f} |"
                    for law, g in gains.items()
                ),
            ]
        rows = branch["rows"].get(doc["law"]) or []
        if rows:
            lines += [
                "",
                f"Per branch ({doc['law']}):",
                "",
                "| branch | parent evals used | observed | forecast | interval | rel. error "
                "| inside | predicted gain | measured gain |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for r in rows:
                measured = r.get("gain_observed")
                lines.append(
                    f"| {r['run']} | {r['n_prefix']} (to step {r['prefix_step']}) "
                    f"| {r['observed']:.4f} | {r['predicted']:.4f} "
                    f"| [{r['lo']:.4f}, {r['hi']:.4f}] "
                    f"| {100 * r['rel_error']:+.2f}% | {'yes' if r['inside'] else 'no'} "
                    f"| {r['gain']:.4f} [{r['gain_lo']:.4f}, {r['gain_hi']:.4f}] "
                    f"| {'-' if measured is None else f'{measured:.4f}'} |"
                )
        lines.append("")
    return "\n".join(lines)


def plot(doc: dict[str, Any], out: Path) -> None:
    """backtest.png/pdf: |relative error| against the extrapolation factor, N and Cmin."""
    import matplotlib.pyplot as plt

    from analysis.plots import save_figure

    rows = pd.DataFrame(doc["power"])
    if rows.empty:
        return
    panels = [a for a in ("N", "Cmin") if (rows["against"] == a).any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, against in zip(axes[0], panels, strict=True):
        sub = rows[rows["against"] == against]
        for metric, g in sub.groupby("metric", sort=True):
            ax.scatter(g["factor"], 100 * g["rel_error"].abs(), s=18, label=metric, alpha=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(
            "extrapolation factor (N / largest fitted N)"
            if against == "N"
            else "extrapolation factor (C / compute cut)"
        )
        ax.set_ylabel("|prediction error| (%)")
        ax.set_title(f"leave-future-out vs {against}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "backtest")
    plt.close(fig)


def run_backtest(
    fit: StudyFit | None,
    source: Path,
    out: Path,
    plots: bool = True,
    frac: float = 0.25,
    curve_law: str = "lra",
    level: float = 0.95,
    settings: FitSettings | None = None,
) -> dict[str, Any]:
    """Backtest `fit` (power laws; None: the joint law L(N, D) with `settings`) and, for a
    runs directory, its curves; write backtest.json, backtest.md and the figure into `out`,
    append every prediction and its score to the registry. Returns the backtest.json
    document."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = load_results(source) if fit is None else fit.raw
        if fit is not None:
            power, table = power_backtest(fit), fit.table
        else:
            settings = settings or FitSettings(law="nd")
            losses = [m for m in settings.metrics if m.startswith("ce")]
            table = prepare(raw, losses, settings.compute, source=str(source))
            power = bt.backtest_joint(table, losses, settings.data_unit)
        curves: list[RunCurve] = []
        if source.is_dir():
            curves = study_curves(source, raw, CURVE_METRIC)
        curve = _curve_rows(curves, frac, level) if curves else {law: [] for law in LAWS}
        cache: dict = {}  # the study fits of one size serve all its branches, both ways
        none: dict[str, list[dict]] = {law: [] for law in LAWS}
        branch = _branch_rows(curves, level, cache=cache) if curves else none
        fork = _branch_rows(curves, level, at_fork=True, cache=cache) if curves else none
    msgs = [str(w.message) for w in caught]
    for m in msgs:
        print(f"warning: {m}")
    E_text = (
        "the joint law L(N, D) = E + A/N^a + B/D^b (E fitted with it) on each run's final "
        "point; vs Cmin: runs whose final compute is below the cut"
        if fit is None
        else "refitted on the data below each cut"
        if fit.E_mode == "fit"
        else f"{fit.E_mode} (as the study's fit)"
    )
    doc = {
        "E": E_text,
        "power": power,
        "power_summary": bt.summary(power),
        "law": curve_law,
        "curve": {
            "metric": CURVE_METRIC,
            "frac": frac,
            "level": level,
            "rows": curve,
            "summary": {law: _curve_summary(r) for law, r in curve.items()},
        },
        "branch": {
            "metric": CURVE_METRIC,
            "level": level,
            "rows": branch,
            "summary": {law: _curve_summary(r) for law, r in branch.items()},
            "at_fork": {
                "rows": fork,
                "summary": {law: _curve_summary(r) for law, r in fork.items()},
            },
        },
        "warnings": msgs,
    }
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(doc)
    atomic_write_text(out / "backtest.md", text)
    atomic_write_json(out / "backtest.json", doc)
    if plots:
        plot(doc, out)
    code = code_version()
    n = registry.append(
        registry_path(source, out),
        _records(fit, table, power, curve, branch, fork, frac, level, code, str(source), curves),
    )
    print(text)
    print(
        f"wrote {out}/backtest.json, backtest.md"
        + (", backtest.png/pdf" if plots else "")
        + f"; {n} new registry lines in {registry_path(source, out)}"
    )
    return doc


def _observed(target: registry.Target, table: pd.DataFrame) -> float | None:
    """The observed value of a registry target in a tidy table, when its run has finished
    and evaluated at the target's step (or, without a run, a finished run of that size whose
    final compute is within 10% of the target's)."""
    if target.metric not in table.columns:
        return None
    fin = table[table["finished"].astype(bool)] if "finished" in table.columns else table
    if target.run is not None and target.step is not None:
        rows = fin[(fin["run"].astype(str) == target.run) & (fin["step"] == target.step)]
        if "eval" in rows.columns:
            rows = rows[rows["eval"].fillna("full") == "full"]
        return float(rows[target.metric].iloc[-1]) if len(rows) else None
    if target.run is None and target.params and target.flops:
        last = fin.sort_values("step").groupby("run").tail(1)
        near = last[
            (np.abs(last["params"].astype(float) / target.params - 1) < 0.1)
            & (np.abs(last["flops"].astype(float) / target.flops - 1) < 0.1)
        ]
        return float(near[target.metric].iloc[0]) if len(near) else None
    return None


def score_pending(
    path: Path, table: pd.DataFrame
) -> list[tuple[registry.ForecastRecord, registry.ScoreRecord]]:
    """Score the registry's unscored forecasts whose targets are now observed in `table`;
    append the scores and return them."""
    try:
        records = registry.read(path)
    except registry.RegistryError as e:
        raise ResultsError(str(e)) from None
    new = []
    for f in registry.pending(records):
        obs = _observed(f.target, table)
        if obs is not None and math.isfinite(obs):
            new.append((f, registry.score(f, obs)))
    if new:
        registry.append(path, [s for _, s in new])
    return new


def track_forecasts(
    source: Path, out: Path, raw: pd.DataFrame, law: str = "lra", level: float = 0.95
) -> None:
    """The registry's side of every fit of a runs directory: append a whole-curve forecast of
    each unfinished run's final ce_avg (`scaling.study.sweep.curves.forecast_run`), then score
    the forecasts whose runs have finished (printed)."""
    path = registry_path(source, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit has reported the table's problems
        curves = study_curves(source, raw, CURVE_METRIC)
    code = code_version()
    new = sum(
        register(
            source,
            forecast_run(source, curves, rc.run, CURVE_METRIC, law, level, code),
            source / rc.run,
        )
        for rc in curves
        if not rc.finished
    )
    if new:
        print(f"forecast registry: {new} forecast(s) of unfinished runs added to {path}")
    scored = score_pending(path, raw)
    for f, s in scored:
        inside = (
            "" if s.inside is None else (" inside" if s.inside else " OUTSIDE") + " its interval"
        )
        print(
            f"forecast registry: scored {f.kind} {f.target.run or ''} {f.target.metric}: "
            f"predicted {f.predicted:.4g}, observed {s.observed:.4g} "
            f"({100 * s.rel_error:+.2f}%){inside}"
        )


def register_optimal(source: Path, out: Path, fit: Any, report: dict[str, Any]) -> None:
    """Append a ``--optimal-for`` answer to the registry: the loss the joint law predicts for
    the budget's N* and D*, to be scored when a run of the nearest depth's size at about that
    compute (within 10%) finishes. Its interval: the joint law's bootstrap draws evaluated at
    (N*, D*) (`analysis.jointlaw.interval`)."""
    from analysis.jointlaw import interval

    n, d = report["N"], report["D"]
    draws = np.array([float(s.predict(n, d)) for s in fit.samples]) if fit.samples else None
    iv = interval(draws, len(fit.points), fit.level) if draws is not None else None
    depth = report.get("nearest_depth") or {}
    f = registry.make_forecast(
        kind="optimal_for",
        target=registry.Target(
            metric=report["metric"], params=float(depth.get("params") or n), flops=report["C"]
        ),
        predicted=report["predicted_loss"],
        interval=iv,
        level=fit.level if iv else None,
        law="nd",
        settings={
            "C": report["C"],
            "N_opt": n,
            "D_opt": d,
            "D_unit": report["D_unit"],
            "nearest_depth": depth.get("depth"),
        },
        E={"choice": "fitted jointly (joint law)", "value": float(fit.law.E)},
        input_sha256=registry.table_sha256(
            fit.points, [c for c in fit.points.columns if c in ("N", "D", "C", "L")]
        ),
        code=code_version(),
        source=str(source),
        interval_note="bootstrap draws of the joint law at (N*, D*); coverage not checked here"
        if iv
        else "no bootstrap",
    )
    n_new = registry.append(registry_path(source, out), [f])
    if n_new:
        print(f"forecast registry: the predicted loss added to {registry_path(source, out)}")
