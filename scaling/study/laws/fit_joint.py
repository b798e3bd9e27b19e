"""``python -m scaling.fit RUNS --set law=nd`` and ``--optimal-for C``: the joint law L(N, D).

Fits ``L = E + A / N^alpha + B / D^beta`` (analysis.jointlaw) on the annealed final point of
every run (decay branches are runs), for each loss metric asked (ce_avg, ce_last), and writes
into its folder (``<runs>/fit-nd/``):

    fits.json                  the joint law(s) with bootstrap intervals, hold-out, compute
                               model and compute-optimal exponents (docs/fitting.md)
    fits.md                    the same as Markdown (also printed)
    results.csv                the tidy table that was fitted
    draws.json                 the bootstrap's refitted laws (what --optimal-for reuses)
    isoflop_<metric>.png/pdf   loss vs N at fixed compute, with the fitted minimum
    optimal_<metric>.png/pdf   N*(C) and D*(C) with bootstrap bands

``--optimal-for C`` prints and writes (``<runs>/optimal-C/optimal.json`` and ``optimal.md``), for
a training budget of C FLOPs (exact count), N*, D* with intervals, the depth whose model is
closest to N* (the runs' width rule; the exact counter var_core.counting, torch-free) and the
epochs of the dataset that D* means, from the saved ``fit-nd/`` law and draws when they match
the runs and settings (else it fits and saves them first).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from analysis.jointlaw import ComputeModel, JointFit, JointLaw, fit_joint_table
from analysis.results import COMPUTE_COLUMNS, ResultsError, load_results, prepare
from analysis.settings import FitSettings
from contracts.atomic import atomic_write_text, replacing_folder
from contracts.draws import FILE as DRAWS  # the bootstrap's laws, beside fits.json
from contracts.draws import DrawsFile, JointLawDraw, read_draws, write_draws
from contracts.fits import FILE as FITS_FILE
from contracts.fits import FitsFile, JointLawFit, read_fits, write_fits
from contracts.jsondoc import utc_now
from contracts.optimal import FILE as OPTIMAL_FILE
from contracts.optimal import NearestDepth, OptimalAnswer, OptimalFile, write_optimal
from scaling.data.token_store import TokenStoreError, images_in_split, read_meta
from scaling.study.laws.forecasts import register_optimal
from scaling.study.sweep.spec import StoreHint


def _ci(pair) -> str:
    return "-" if pair is None else f"[{pair[0]:.4g}, {pair[1]:.4g}]"


def markdown(records: list[dict], d_unit: str) -> str:
    """fits.json's joint-law records -> Markdown."""
    lines = [
        f"Joint law `L = E + A / N^alpha + B / D^beta` (N parameters, D training {d_unit}), "
        "fitted on the final (annealed) point of every run and branch; intervals: bootstrap "
        "over families (a run with its decay branches). N* ~ C^a_N and D* ~ C^a_D at compute C "
        "(exact FLOPs).",
        "",
        "| metric | E | alpha | beta | A | B | a_N | a_D | points | sizes | hold-out max rel. err "
        "|",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        o = r["optimal"]
        hold = r["holdout"] or {}
        hold_s = f"{100 * hold['max_abs_rel_error']:.2f}%" if "max_abs_rel_error" in hold else "-"
        lines.append(
            f"| {r['metric']} | {r['E']:.4g} {_ci(r['E_ci'])} | {r['alpha']:.4g} "
            f"{_ci(r['alpha_ci'])} "
            f"| {r['beta']:.4g} {_ci(r['beta_ci'])} | {r['A']:.4g} | {r['B']:.4g} "
            f"| {o['N_exponent']:.3g} {_ci(o['N_exponent_ci'])} | {o['D_exponent']:.3g} "
            f"{_ci(o['D_exponent_ci'])} "
            f"| {r['n_points']} | {r['n_sizes']} | {hold_s} |"
        )
    budgets = records[0]["optimal"]["budgets"] if records else None
    if budgets:
        lines += [
            "",
            f"Compute-optimal allocation ({records[0]['metric']}):",
            "",
            f"| C (FLOPs) | N* | N* interval | D* ({d_unit}) | D* interval |",
            "|---|---|---|---|---|",
        ]
        for j, C in enumerate(budgets["C"]):
            nci = budgets["N_ci"][j] if budgets["N_ci"] else None
            dci = budgets["D_ci"][j] if budgets["D_ci"] else None
            lines.append(
                f"| {C:.3g} | {budgets['N'][j]:.4g} | {_ci(nci)} | {budgets['D'][j]:.4g} | "
                f"{_ci(dci)} |"
            )
    return "\n".join(lines) + "\n"


def _store_meta(table: pd.DataFrame) -> dict[str, Any] | None:
    """The runs' token store meta.json (via the config column data.store), if readable."""
    if "data.store" not in table.columns:
        return None
    for store in table["data.store"].dropna().unique():
        try:
            return read_meta(str(store))
        except (TokenStoreError, OSError):
            continue
    return None


def _family(table: pd.DataFrame) -> dict[str, Any]:
    """The runs' width and head rule: width = r * depth and a fixed head size, when every run
    follows one (else the official 64 * depth, head size 64)."""
    rule = {
        "width_per_depth": 64.0,
        "head_dim": 64.0,
        "source": "official rule (width 64 d, head dim 64)",
    }
    cols = {"model.depth", "model.width", "model.heads"}
    if not cols <= set(table.columns):
        return rule
    runs = table.drop_duplicates("run")
    d = runs["model.depth"].astype(float)
    w = runs["model.width"].astype(float).fillna(64 * d)
    h = runs["model.heads"].astype(float).fillna(d)
    ratio, head = (w / d).unique(), (w / h).unique()
    if len(ratio) == 1 and len(head) == 1:
        rule = {
            "width_per_depth": float(ratio[0]),
            "head_dim": float(head[0]),
            "source": f"the runs' rule (width {ratio[0]:g} d, head dim {head[0]:g})",
        }
    return rule


def nearest_depth(
    n_star: float, table: pd.DataFrame, meta: dict[str, Any] | None
) -> dict[str, Any]:
    """The depth whose VAR (the runs' width rule, the store's vocabulary and scales) has the
    parameter count closest to `n_star` in log space. Without a readable store: ImageNet's
    (`scaling.study.sweep.spec.StoreHint`)."""
    # only here: the fit CLI imports var_core (the exact counter) for --optimal-for alone
    from scaling.training.budget import var_kwargs_from_store
    from scaling.training.config import ModelConfig
    from var_core import counting

    meta = meta or StoreHint().meta()
    rule = _family(table)
    best: dict[str, Any] | None = None
    for depth in range(1, 257):
        width = int(round(rule["width_per_depth"] * depth))
        heads = max(1, int(round(width / rule["head_dim"])))
        if width % heads:
            continue
        n = counting.params(
            **var_kwargs_from_store(ModelConfig(depth=depth, width=width, heads=heads), meta)
        )
        gap = abs(math.log(n / n_star))
        if best is None or gap < best["gap"]:
            best = {"depth": depth, "width": width, "heads": heads, "params": n, "gap": gap}
    if best is None:
        raise ResultsError(f"no depth of 1..256 has a width divisible by its heads ({rule})")
    best.pop("gap")
    best["rule"] = rule["source"]
    return best


def optimal_report(
    fit: JointFit, C: float, table: pd.DataFrame, dataset_images: int | None
) -> tuple[str, OptimalAnswer]:
    """Text and answer for a budget of C FLOPs: N*, D*, nearest depth, epochs."""
    opt = fit.optimal([C])
    n, d = opt["N"][0], opt["D"][0]
    nci = opt["N_ci"][0] if opt["N_ci"] else None
    dci = opt["D_ci"][0] if opt["D_ci"] else None
    p = fit.points
    meta = _store_meta(table)
    if dataset_images is None:
        if meta is None:
            raise ResultsError(
                "--optimal-for: the runs' token store (meta.json) is not readable here; "
                "give the dataset size with --dataset-images"
            )
        train = (
            table["data.train_split"].dropna().iloc[0]
            if "data.train_split" in table.columns
            else "train"
        )
        dataset_images = images_in_split(meta["splits"][train])  # images, not stored views
    per_image = 1.0
    if fit.d_unit == "tokens":
        final = table.drop_duplicates("run", keep="last")
        ratio = (final["tokens"] / final["images"]).unique() if "images" in final.columns else []
        if len(ratio) != 1:
            raise ResultsError(
                "--optimal-for: cannot tell tokens per image from the table "
                "(columns tokens and images); fit with --set data_unit=images"
            )
        per_image = float(ratio[0])
    images = d / per_image
    depth = nearest_depth(n, table, meta)
    answer = OptimalAnswer(
        C=C,
        metric=fit.metric,
        N=float(n),
        N_ci=None if nci is None else (float(nci[0]), float(nci[1])),
        D=float(d),
        D_ci=None if dci is None else (float(dci[0]), float(dci[1])),
        D_unit=fit.d_unit,
        images=float(images),
        dataset_images=int(dataset_images),
        epochs=float(images / dataset_images),
        nearest_depth=NearestDepth(**depth),
        predicted_loss=float(fit.law.predict(n, d)),
        extrapolation=float(C / p["C"].max()),
    )
    text = (
        f"budget C = {C:.3g} FLOPs (exact count, training), law of {fit.metric}:\n"
        f"  N* = {n:.4g} parameters  {_ci(nci)}\n"
        f"  D* = {d:.4g} {fit.d_unit}  {_ci(dci)}"
        + (f"  = {images:.4g} images" if fit.d_unit == "tokens" else "")
        + "\n"
        f"  nearest depth: d{depth['depth']} (width {depth['width']}, {depth['heads']} heads, "
        f"N = {depth['params']:,}; {depth['rule']})\n"
        f"  epochs of the dataset ({dataset_images:,} images): {images / dataset_images:.3g}\n"
        f"  predicted {fit.metric}: {answer.predicted_loss:.4f}; the budget is "
        f"{answer.extrapolation:.3g}x the largest run's compute"
    )
    return text, answer


def _joint_table(source: Path, settings: FitSettings) -> tuple[pd.DataFrame, list[str]]:
    """The prepared table the joint law is fitted on, and the losses to fit."""
    metrics = [m for m in settings.metrics if m.startswith("ce")]
    if not metrics:
        raise ResultsError(
            f"--set law=nd fits losses: metrics {list(settings.metrics)} hold no ce_avg or ce_last"
        )
    raw = load_results(source, include_subset=False)
    table = prepare(raw, metrics, settings.compute, source=str(source))
    if settings.data_unit not in table.columns:
        raise ResultsError(
            f"{source}: column {settings.data_unit!r} missing: the joint law needs "
            f"the training {settings.data_unit} of each run"
        )
    return table, metrics


def _budgets(fits: list[JointFit]) -> list[float]:
    """Powers of ten from the runs' smallest compute to 1000x their largest (fits.md's table)."""
    c = fits[0].points["C"]
    return [
        10.0**k for k in range(math.floor(math.log10(c.min())), math.ceil(math.log10(c.max())) + 4)
    ]


def _report_warnings(records) -> list[str]:
    caught = [str(w.message) for w in records]
    for message in caught:
        print(f"warning: {message}", file=sys.stderr)
    return caught


def _joint_document(
    source: Path,
    settings: FitSettings,
    origin: dict[str, str],
    table: pd.DataFrame,
    docs: list[dict],
    caught: list[str],
) -> FitsFile:
    """The fits.json of a joint-law fit (`contracts.fits`; its elapsed_s filled in later)."""
    return FitsFile(
        joint=tuple(JointLawFit.from_record(r, where=f"joint[{i}]") for i, r in enumerate(docs)),
        tool="python -m scaling.fit --set law=nd",
        source=str(source),
        settings={
            **settings.as_record(),
            "sources": origin,
        },
        details={
            "created_utc": utc_now(),
            "law": "nd",
            "n_runs": int(table["run"].nunique()),
            "conventions": {
                "points": "the final evaluation of every run directory (a decay branch is a "
                "run: it is annealed by its cool-down)",
                "compute": {
                    "choice": settings.compute,
                    "column": COMPUTE_COLUMNS[settings.compute],
                    "branches": "a branch's compute counts its parent's steps up to the branch "
                    "point plus its own",
                },
                "D": f"training {settings.data_unit} seen by the run (steps x batch"
                + (" x tokens per image)" if settings.data_unit == "tokens" else ")"),
            },
            "optimal_for": None,
            "warnings": caught,
            "elapsed_s": None,
        },
    )


def fit_and_write_joint(
    source: Path,
    settings: FitSettings,
    origin: dict[str, str],
    out: Path,
    plots: bool,
    shown: Path | None = None,
) -> tuple[dict, list[JointFit], pd.DataFrame]:
    """Fit the joint law of every loss asked and write fits.json, fits.md, results.csv,
    draws.json (the bootstrap's laws, which `--optimal-for` reuses) and the figures into
    `out` (named `shown` in messages). Returns (fits.json document, fits, table)."""
    started = time.perf_counter()
    # thousands of 5-parameter fits: BLAS threads only add synchronisation (as the planner)
    with warnings.catch_warnings(record=True) as records, threadpool_limits(1):
        warnings.simplefilter("always")
        table, metrics = _joint_table(source, settings)
        fits = [
            fit_joint_table(
                table,
                m,
                settings.data_unit,
                bootstrap=settings.bootstrap,
                level=settings.ci,
                seed=settings.seed,
            )
            for m in metrics
        ]
        docs = [f.to_dict(_budgets(fits)) for f in fits]
    caught = _report_warnings(records)
    doc = _joint_document(source, settings, origin, table, docs, caught)
    out.mkdir(parents=True, exist_ok=True)
    text_md = markdown(docs, settings.data_unit)
    atomic_write_text(out / "fits.md", text_md)
    table.to_csv(out / "results.csv", index=False)
    write_draws(
        out / DRAWS,
        DrawsFile(
            {f.metric: tuple(JointLawDraw(**law.as_dict()) for law in f.samples) for f in fits}
        ),
    )
    if plots:
        # matplotlib only when drawing
        from analysis.jointplots import plot_isoflop, plot_optimal
        from analysis.plots import save_figure as save

        for f in fits:
            save(plot_isoflop(f), out / f"isoflop_{f.metric}")
            save(plot_optimal(f), out / f"optimal_{f.metric}")
    elapsed = round(time.perf_counter() - started, 3)
    doc = dataclasses.replace(doc, details={**doc.details, "elapsed_s": elapsed})
    write_fits(out / FITS_FILE, doc)
    print(text_md)
    print(
        f"wrote {shown or out}/fits.json, fits.md, results.csv, {DRAWS}"
        + (", figures (png, pdf)" if plots else "")
        + f" in {elapsed:.1f} s"
    )
    return doc.as_dict(), fits, table


def run_joint(
    args: argparse.Namespace,
    source: Path,
    settings: FitSettings,
    origin: dict[str, str],
    out: Path,
    shown: Path | None = None,
) -> dict:
    """`--set law=nd`: the joint-law fit of the CLI; returns the fits.json document."""
    return fit_and_write_joint(source, settings, origin, out, not args.no_plots, shown)[0]


# the settings a saved joint fit must share with a new command for --optimal-for to reuse it
_SAME = ("metrics", "compute", "data_unit", "bootstrap", "ci", "seed")


def saved_joint_fits(
    folder: Path, settings: FitSettings, table: pd.DataFrame
) -> tuple[list[JointFit] | None, str]:
    """The joint fits saved in `folder` by `fit --set law=nd`, rebuilt with their bootstrap draws
    when they were made from this very table with the same settings; else (None, why not)."""
    try:
        doc = read_fits(folder / FITS_FILE)
        draws = read_draws(folder / DRAWS).draws
        fitted = (folder / "results.csv").read_text()
    except (OSError, ValueError) as e:  # ContractError is a ValueError
        return None, f"no saved joint fit in {folder} ({type(e).__name__})"
    if doc.joint is None:
        return None, f"{folder / FITS_FILE} holds no joint law"
    saved = doc.settings
    for key in _SAME:
        now = getattr(settings, key)
        now = list(now) if isinstance(now, tuple) else now
        if saved.get(key) != now:
            return None, f"{folder} was fitted with {key} {saved.get(key)!r}, not {now!r}"
    if table.to_csv(index=False) != fitted:
        return None, f"the runs changed since {folder} was fitted"
    fits = []
    for law in doc.joint:
        cm = law.compute_model
        if cm is None or law.level is None or law.bootstrap_samples is None:
            return None, f"{folder / FITS_FILE}: {law.metric} has no compute model or bootstrap"
        fits.append(
            JointFit(
                law.metric,
                settings.data_unit,
                JointLaw(law.E, law.A, law.alpha, law.B, law.beta),
                pd.DataFrame(law.record["points"]),
                ComputeModel(cm.k, cm.gamma, cm.max_rel_error_on_runs),
                level=law.level,
                samples=[JointLaw(**d.as_dict()) for d in draws.get(law.metric, ())],
                bootstrap=law.bootstrap_samples,
                holdout=law.record["holdout"],
            )
        )
    return fits, f"reused the joint fit of {folder} ({doc.details.get('created_utc')})"


def run_optimal(
    args: argparse.Namespace,
    source: Path,
    settings: FitSettings,
    origin: dict[str, str],
    joint_out: Path,
    out: Path,
    shown: Path | None = None,
) -> dict:
    """`--optimal-for C`: N*, D*, nearest depth and epochs for C FLOPs, from the joint law
    saved in `joint_out` (fit first, and saved there, when it is missing or stale); writes
    optimal.json and optimal.md into `out`. Returns the optimal.json document."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        table, _ = _joint_table(source, settings)
    _report_warnings(records)
    fits, how = saved_joint_fits(joint_out, settings, table)
    if fits is None:
        print(f"{how}: fitting the joint law into {joint_out} first", file=sys.stderr)
        with replacing_folder(joint_out) as stage:
            fits = fit_and_write_joint(
                source, settings, origin, stage, not args.no_plots, joint_out
            )[1]
        how = f"fitted the joint law into {joint_out}"
    else:
        print(how, file=sys.stderr)
    text, answer = optimal_report(fits[0], args.optimal_for, table, args.dataset_images)
    # the forecast registry (forecasts.jsonl)
    register_optimal(source, out, fits[0], answer.as_dict())
    optimal = OptimalFile(answer, str(source), str(joint_out), how, created_utc=utc_now())
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "optimal.md", text + "\n")
    write_optimal(out / OPTIMAL_FILE, optimal)
    print(text)
    print(f"wrote {shown or out}/{OPTIMAL_FILE}, optimal.md")
    return optimal.as_dict()
