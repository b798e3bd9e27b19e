"""``python -m scaling.fit RUNS --set law=nd-repeat``: the repetition-aware joint law.

Fits ``L = E + A / N^alpha + B / D'^beta`` with D' = U + U R* (1 - exp(-R / R*)),
R = D / U - 1 (`analysis.repeatlaw`) on the final point of every run, for each loss asked,
and writes into its folder (``<runs>/fit-nd-repeat/``):

    fits.json                    the law(s) with R_star, R_star_ci (and V_star when the runs
                                 vary their stored views), each not-identified parameter's
                                 reason, under "joint" (`contracts.fits.JointLawFit`)
    fits.md                      the same as Markdown (also printed)
    results.csv                  the tidy table that was fitted (with unique_tokens, views)
    draws.json                   the bootstrap's refitted laws
    effective_data_<metric>.png/pdf  D'/U against D/U: the fitted curve, its band and the runs

U, the unique tokens of a run, and K, the stored sequences it reads per image, are the
columns ``unique_tokens`` and ``views`` of its metrics.jsonl (the trainer writes them: the
images of the training split or its ``data.subset`` x tokens per image; views used x 2 with
flips) or of a table (CSV/Parquet; views 1 if absent). Runs written before those columns
existed get them from their token store's meta.json (config ``data.store``,
``data.train_split``, ``data.subset``: images, or a fraction of the split when below 1;
``data.use_views``).
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

import numpy as np
import pandas as pd

from analysis.repeatlaw import LANGUAGE_R_STAR, RepeatFit, fit_repeat_table
from analysis.results import ResultsError, load_results, prepare
from analysis.settings import FitSettings
from contracts.atomic import atomic_write_json, atomic_write_text
from contracts.fits import FILE as FITS_FILE
from contracts.fits import FitsFile, JointLawFit, write_fits
from contracts.jsondoc import utc_now
from scaling.core.config_io import InvalidValue
from scaling.data.token_store import TokenStoreError, images_in_split, read_meta, rows_per_image
from scaling.training.config import subset_count

SCHEMA_VERSION = 1  # of draws.json
DRAWS = "draws.json"


def subset_images(value: Any, split_images: int, run: str) -> int:
    """The images a run trains on: its ``data.subset`` (None/NaN: the whole split) by the
    trainer's own rule (`scaling.training.config.subset_count`), within `split_images`."""
    if not _given(value):
        return split_images
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ResultsError(f"run {run}: data.subset {value!r} is not a number") from None
    outside = ResultsError(
        f"run {run}: data.subset {value!r} is not within the split's {split_images} images"
    )
    if v <= 0:
        raise outside
    try:
        return subset_count(v, split_images)
    except InvalidValue:
        raise outside from None


def unique_columns(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """`table` with columns ``unique_tokens`` and ``views`` for every run: as its
    metrics.jsonl (or a table) gives them, else from its token store: images of its training
    split (or its data.subset) x tokens per image, and the split's rows per image (its
    data.use_views when set; x2 with flips). A table without views counts 1 view."""
    table = table.copy()
    for col in ("unique_tokens", "views"):
        if col not in table.columns:
            table[col] = np.nan
        table[col] = pd.to_numeric(table[col], errors="coerce")
    missing = table.groupby("run", sort=False)["unique_tokens"].transform(lambda u: u.isna().all())
    if not missing.any():
        table["views"] = table["views"].fillna(1.0)
        return table
    if "data.store" not in table.columns:
        runs = sorted(set(table.loc[missing, "run"].astype(str)))
        raise ResultsError(
            f"{source}: the nd-repeat law needs each run's unique tokens: a column "
            "'unique_tokens' (metrics.jsonl or a table) or runs whose config names their token "
            f"store (data.store); none for {', '.join(runs[:5])}"
        )
    metas: dict[str, dict] = {}
    unique, views = {}, {}
    for run, rows in table[missing].groupby("run", sort=False):
        first = rows.iloc[0]
        store = str(first["data.store"])
        if store not in metas:
            try:
                metas[store] = read_meta(store)
            except (TokenStoreError, OSError) as e:
                raise ResultsError(
                    f"{source}: run {run}: its token store {store} is not readable here ({e}); "
                    "the nd-repeat law needs its meta.json (or fit a table with a "
                    "'unique_tokens' column)"
                ) from None
        meta = metas[store]
        split = first.get("data.train_split")
        split = "train" if not isinstance(split, str) or not split else split
        if split not in meta.get("splits", {}):
            raise ResultsError(f"{source}: run {run}: split {split!r} not in the store {store}")
        entry = meta["splits"][split]
        images = subset_images(first.get("data.subset"), images_in_split(entry), str(run))
        unique[run] = float(images * int(meta["L"]))
        used = first.get("data.use_views")
        flips = 2 if entry.get("flip") else 1
        views[run] = float(int(used) * flips) if _given(used) else float(rows_per_image(entry))
    table.loc[missing, "unique_tokens"] = table.loc[missing, "run"].map(unique)
    table.loc[missing, "views"] = table.loc[missing, "run"].map(views)
    table["views"] = table["views"].fillna(1.0)
    return table


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def repeat_table(source: Path, settings: FitSettings) -> tuple[pd.DataFrame, list[str]]:
    """The prepared table the law is fitted on (with unique_tokens and views) and its losses."""
    metrics = [m for m in settings.metrics if m.startswith("ce")]
    if not metrics:
        raise ResultsError(
            f"--set law=nd-repeat fits losses: metrics {list(settings.metrics)} hold no ce_avg "
            "or ce_last"
        )
    raw = load_results(source, include_subset=False)
    table = prepare(raw, metrics, settings.compute, source=str(source))
    if "tokens" not in table.columns:
        raise ResultsError(f"{source}: column 'tokens' missing: the training tokens of each run")
    return unique_columns(table, str(source)), metrics


def _ci(pair) -> str:
    if pair is None:
        return "-"
    hi = "inf)" if pair[1] is None else f"{pair[1]:.4g}]"
    return f"[{pair[0]:.4g}, {hi}"


def _value(rec: dict, name: str) -> str:
    """A parameter with its interval, or n/a with the reason."""
    if rec.get(name) is None:
        return f"n/a ({rec.get(f'{name}_note') or 'not fitted'})"
    return f"{rec[name]:.4g} {_ci(rec.get(f'{name}_ci'))}"


def markdown(records: list[dict]) -> str:
    """fits.json's nd-repeat records -> Markdown."""
    lines = [
        "Repetition-aware joint law `L = E + A / N^alpha + B / D'^beta`, "
        "D' = U + U R* (1 - exp(-R / R*)), R = D / U - 1 (N parameters, D training tokens, U "
        "unique tokens; D' = D for R <= 0), fitted on the final point of every run; "
        "intervals: bootstrap over families of runs. Language: R* = 15.4 (Muennighoff et al. "
        "2023).",
        "",
        "| metric | E | alpha | beta | A | B | points | sizes | max R | rms log residual |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['metric']} | {r['E']:.4g} {_ci(r['E_ci'])} | {r['alpha']:.4g} "
            f"{_ci(r['alpha_ci'])} | {r['beta']:.4g} {_ci(r['beta_ci'])} | {r['A']:.4g} "
            f"| {r['B']:.4g} | {r['n_points']} | {r['n_sizes']} "
            f"| {r['identifiability']['max_R']:.3g} | {r['rms_log_residual']:.3g} |"
        )
    lines.append("")
    for r in records:
        lines.append(f"- {r['metric']}: R* = {_value(r, 'R_star')}")
        lines.append(f"- {r['metric']}: V* = {_value(r, 'V_star')}")
        if r["alpha_ci"] is None and r["ci"]["bootstrap_samples"]:
            lines.append(f"- {r['metric']}: intervals: {r['ci']['not_given']}")
    return "\n".join(lines) + "\n"


def _document(
    source: Path, settings: FitSettings, origin: dict[str, str], table, docs, caught
) -> FitsFile:
    return FitsFile(
        joint=tuple(JointLawFit.from_record(r, where=f"joint[{i}]") for i, r in enumerate(docs)),
        tool="python -m scaling.fit --set law=nd-repeat",
        source=str(source),
        settings={
            **settings.as_record(),
            "sources": origin,
        },
        details={
            "created_utc": utc_now(),
            "law": "nd-repeat",
            "n_runs": int(table["run"].nunique()),
            "conventions": {
                "points": "the final evaluation of every run directory (a decay branch is a run)",
                "D": "training tokens seen by the run (steps x batch x tokens per image)",
                "U": "unique tokens: images of the run's training split (its data.subset "
                "when set) x tokens per image, from the token store's meta.json; a table's "
                "column unique_tokens",
                "K": "stored rows per image of the training split (views x 2 with flips); a "
                "table's column views (1 if absent)",
            },
            "warnings": caught,
            "elapsed_s": None,
        },
    )


def run_repeat(
    args: argparse.Namespace,
    source: Path,
    settings: FitSettings,
    origin: dict[str, str],
    out: Path,
    shown: Path | None = None,
) -> dict:
    """`--set law=nd-repeat`: fit every loss asked, write fits.json, fits.md, results.csv,
    draws.json and (unless --no-plots) the figures into `out`; returns fits.json's document."""
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        table, metrics = repeat_table(source, settings)
        fits = [
            fit_repeat_table(
                table, m, bootstrap=settings.bootstrap, level=settings.ci, seed=settings.seed
            )
            for m in metrics
        ]
        docs = [f.to_dict() for f in fits]
    caught = [str(w.message) for w in records]
    for message in caught:
        print(f"warning: {message}", file=sys.stderr)
    doc = _document(source, settings, origin, table, docs, caught)
    out.mkdir(parents=True, exist_ok=True)
    text_md = markdown(docs)
    atomic_write_text(out / "fits.md", text_md)
    table.to_csv(out / "results.csv", index=False)
    atomic_write_json(
        out / DRAWS,
        {
            "schema_version": SCHEMA_VERSION,
            "what": "the bootstrap's refitted nd-repeat laws, one list per metric (fits.json's "
            "intervals are percentiles over them)",
            "draws": {f.metric: [law.as_dict() for law in f.samples] for f in fits},
        },
    )
    drawn = []
    if not args.no_plots:
        from analysis.plots import save_figure

        for f in fits:
            fig = plot_effective_data(f)
            if fig is not None:
                save_figure(fig, out / f"effective_data_{f.metric}")
                drawn.append(f.metric)
    elapsed = round(time.perf_counter() - started, 3)
    doc = dataclasses.replace(doc, details={**doc.details, "elapsed_s": elapsed})
    write_fits(out / FITS_FILE, doc)
    print(text_md)
    print(
        f"wrote {shown or out}/fits.json, fits.md, results.csv, {DRAWS}"
        + (f", effective_data_{'/'.join(drawn)} (png, pdf)" if drawn else "")
        + f" in {elapsed:.1f} s"
    )
    return doc.as_dict()


def plot_effective_data(fit: RepeatFit):
    """D'/U against D/U (passes over the unique data): the fitted curve with its bootstrap
    band, the no-penalty diagonal and the runs (K = 1 law; None when R* is not identified)."""
    if fit.law.R_star is None or not fit.told("R_star"):
        return None
    from matplotlib.figure import Figure

    p = fit.points
    passes = np.geomspace(0.5, max(2.0, 2 * float((p["D"] / p["U"]).max())), 200)  # D / U
    fig = Figure(figsize=(6.0, 4.4))
    ax = fig.add_subplot()
    ax.plot(passes, passes, "k--", lw=1, label="fresh data (D' = D)")
    curve = fit.law.effective(passes, 1.0)  # U = 1: D'/U
    ax.plot(passes, curve, lw=2, label=f"fitted R* = {fit.law.R_star:.3g}")
    if fit.samples:
        band = np.array([s.effective(passes, 1.0) for s in fit.samples])
        lo, hi = np.quantile(band, [0.025, 0.975], axis=0)
        ax.fill_between(passes, lo, hi, alpha=0.25, label="bootstrap 95% band")
    lang = dataclasses.replace(fit.law, R_star=LANGUAGE_R_STAR, V_star=None)
    ax.plot(passes, lang.effective(passes, 1.0), ":", lw=1.5, label="language R* = 15.4")
    u = fit.law.unique(p["U"], p["K"])
    ax.scatter(
        p["D"] / u,
        p["D_eff"] / u,
        s=18,
        zorder=3,
        edgecolors="k",
        linewidths=0.3,
        label="runs (their D'/U_views)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("passes over the unique data D / U (U with its views)")
    ax.set_ylabel("effective passes D' / U")
    ax.set_title(f"Effective against nominal data ({fit.metric})")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig
