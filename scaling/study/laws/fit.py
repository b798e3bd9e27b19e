"""``python -m scaling.fit SWEEP.yaml|RUNS_DIR|TABLE``: power-law fits, figures and a report.

Reads a sweep's runs (the sweep file means its output folder), a runs directory
(``<runs_dir>/<run_id>/metrics.jsonl``) or a tidy CSV/Parquet table,
fits ``metric - E = (beta * x)^alpha`` against N (billions of parameters, final evaluation of
each run) and against Cmin (PFLOPs, on the Pareto frontier of all training curves), and writes
into the view's own folder (``<runs_dir>/fit/``, ``fit-best-over-lr/``, ``fit-nd/``...,
`scaling.study.laws.folders`; beside a table ``<table>_fit/``), which a rerun replaces:

    fits.json         every coefficient with its bootstrap interval, r, hold-out check,
                      units and conventions (documented field by field in docs/fitting.md)
    fits.md           the same as a Markdown table (also printed)
    results.csv       the tidy table that was fitted
    fit_vs_N.png/pdf, fit_vs_Cmin.png/pdf
    samples_vs_N.png/pdf  sample quality by size (when scaling.sample_eval has run)

A study with other grid axes than size (``grid.<axis>`` columns: an lr axis, a tokenizer...)
gets one law per value of those axes by default, drawn with its own marker; ``--set
best_over=AXIS`` instead fits each size's best run over that axis (by the law's own metric at the
final evaluation, or ``--set best_by=METRIC``) and lists which run was picked per size; seed
replicates (a ``seed`` axis) are averaged first (`analysis.axes`).

``--set law=nd`` fits the joint law L(N, D) = E + A/N^alpha + B/D^beta instead and
``--optimal-for C`` answers "what size and data for C FLOPs" (scaling.study.laws.fit_joint);
``--set law=nd-repeat`` fits it with repeated data counted as effective data D' and reports
R* (scaling.study.laws.fit_repeat); ``--set per_scale=true`` fits the laws of each scale's
test loss with the entropy of its codes (scaling.study.laws.fit_scales).

With two sources (``python -m scaling.fit A B``) both studies are fitted and compared
(``scaling.study.laws.compare``: laws with bootstrap bands in one figure, the difference of each
exponent with its bootstrap interval).

Defaults come from ``<runs_dir>/fit.yaml`` when present (keys: irreducible, compute, metrics,
holdout, bootstrap, include_subset, and optionally method, smooth, against, paper, ci,
seed, law, data_unit; `analysis.settings.FitSettings`); command-line flags override it.

This module is the command line: it resolves the inputs (sweep file, runs directory or table,
fit.yaml and flags, whether the runs' token store was made with the official tokenizer, the
axes' run-id labels), runs the one fit loop (`analysis.fitting.fit_study`, also what the
notebook and scripts/figures/readme_figures.py run) and writes the outputs. It never imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from analysis.axes import axis_columns, axis_name, group_label, groups
from analysis.fitting import StudyFit, Tokenizer, fit_study
from analysis.overfit import RULE as OVERFIT_RULE
from analysis.paper import PAPER_IRREDUCIBLE, X_UNIT
from analysis.powerlaw import is_loss
from analysis.results import COMPUTE_COLUMNS, ResultsError, load_results
from analysis.sensitivity import MIN_ABS_R, MIN_SIZES, MIN_SIZES_E_FITTED, MIN_VALID
from analysis.settings import FitSettings
from analysis.tokenizer import join_quality
from contracts.atomic import atomic_write_text, replacing_folder
from contracts.fits import FILE as FITS_FILE
from contracts.fits import FitsFile, PowerLawFit, write_fits
from contracts.grid import FILE as GRID_FILE
from contracts.grid import read_grid
from contracts.jsondoc import utc_now
from contracts.tokenizer import FILE as QUALITY_FILE
from contracts.tokenizer import read_quality
from scaling.core.cli import InputError, refuse_replaced_flags, run_cli, setup_logging
from scaling.core.config_io import ConfigError, apply_sets, load_config, load_yaml, parse_sets
from scaling.data.token_store import TokenStoreError, read_meta
from scaling.study.laws.compare import compare_studies
from scaling.study.laws.fit_joint import run_joint, run_optimal
from scaling.study.laws.fit_repeat import run_repeat
from scaling.study.laws.fit_scales import run_per_scale
from scaling.study.laws.folders import default_folder, fit_folder_name, optimal_folder_name
from scaling.study.laws.forecasts import markdown as backtest_markdown
from scaling.study.laws.forecasts import run_backtest, track_forecasts
from scaling.study.sweep.spec import DATA_DIR, DEFAULT_LABELS

COMPUTE_TEXT = {
    "exact": "column 'flops': cumulative training FLOPs counted exactly from the model's shapes "
    "(matmuls incl. block-causal attention and head; training = 3 x forward)",
    "6nd": "column 'flops_6nd': 6 * N * tokens (the usual approximation)",
}
# The official tokenizer (vae_ch160v4096z32.pth): a store made with it has this VQVAE shape and
# file name; the paper's E values are the floor of its token distribution.
OFFICIAL_VQVAE = {"file": "vae_ch160v4096z32.pth", "vocab_size": 4096, "z_channels": 32, "ch": 160}


class FitCLIError(InputError):
    """A problem with the command line or its input; printed as one line, exit status 2."""


# the fit settings were flags of their own; now `--set KEY=VALUE` (one spelling: the key of
# fit.yaml and of a sweep's fit: section)
_SETTING_FLAGS = {
    "--metrics": "metrics=[ce_last,ce_avg]",
    "--against": "against=[N,Cmin]",
    "--compute": "compute=6nd",
    "--irreducible": "irreducible=fit",
    "-E": "irreducible=fit",
    "--final": "final=best",
    "--include-unfinished": "include_unfinished=true",
    "--method": "method=robust",
    "--holdout": "holdout=2",
    "--bootstrap": "bootstrap=200",
    "--ci": "ci=0.9",
    "--smooth": "smooth=1",
    "--include-subset": "include_subset=true",
    "--paper": "paper=true",
    "--seed": "seed=1",
    "--best-over": "best_over=lr",
    "--best-by": "best_by=ce_last",
    "--pool": "pool=true",
    "--law": "law=nd",
    "--data-unit": "data_unit=images",
    "--backtest": "backtest=true",
    "--forecast-frac": "forecast_frac=0.25",
    "--curve-law": "curve_law=mpl",
}
REPLACED_FLAGS = {
    flag: f"--set {example.split('=')[0]}=VALUE (e.g. --set {example})"
    for flag, example in _SETTING_FLAGS.items()
}


def fit_parser() -> argparse.ArgumentParser:
    """The fit command's arguments (its flags' help is also docs/fitting.md's flags table)."""
    p = argparse.ArgumentParser(
        prog="python -m scaling.fit",
        description="Fit power laws metric - E = (beta*x)^alpha against N (billions of params) and "
        "Cmin (PFLOPs on the compute frontier); write fits.json, fits.md and log-log figures.",
    )
    p.add_argument(
        "source",
        nargs="+",
        help="a sweep file (its output folder is read), a runs directory (<run_id>/metrics.jsonl) "
        "or a tidy .csv/.parquet table; two of them: fit both and compare their laws "
        "(scaling.compare)",
    )
    p.add_argument(
        "--out",
        help="output folder (default: the view's own folder, replaced by a rerun: "
        "<runs_dir>/fit, fit-best-over-AXIS, fit-pooled, fit-nd, fit-nd-repeat, "
        "fit-per-scale, optimal-C; beside a table: <table>_fit ...)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="sets",
        metavar="KEY=VALUE",
        help="a fit setting over the runs' fit.yaml (repeatable; the keys of "
        "analysis.settings.FitSettings, docs/configuration.md): --set method=robust "
        "--set metrics=[ce_last] --set irreducible=fit --set best_over=lr",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument(
        "--optimal-for",
        type=_budget,
        metavar="C",
        help="with the joint law: N*, D* (with intervals), the nearest depth and the epochs "
        "of the dataset for a budget of C training FLOPs (implies --set law=nd)",
    )
    p.add_argument(
        "--dataset-images",
        type=_count,
        metavar="N",
        help="--optimal-for: images in the training set that D* is divided by (default: "
        "the runs' token store)",
    )
    return p


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    refuse_replaced_flags(argv if argv is not None else sys.argv[1:], REPLACED_FLAGS)
    return fit_parser().parse_args(argv)


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a compute budget in FLOPs (e.g. 1e21), got {text!r}"
        ) from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(
            f"the compute budget must be a positive number of FLOPs, got {text!r}"
        )
    return value


def _count(text: str) -> int:
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of images, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of images, got {text!r}")
    return value


def load_fit_settings(runs_dir: str | Path) -> FitSettings:
    """A runs directory's fit defaults (its fit.yaml, written from the sweep), else the defaults."""
    fit_yaml = Path(runs_dir) / "fit.yaml"
    return load_config(FitSettings, fit_yaml) if fit_yaml.exists() else FitSettings()


def resolve_settings(args: argparse.Namespace, source: Path) -> tuple[FitSettings, dict[str, str]]:
    """fit.yaml (if `source` is a runs dir holding one) overridden by the `--set`s.

    Returns the settings and, per field, where its value came from (cli, fit.yaml, default).
    """
    origin = {f.name: "default" for f in dataclasses.fields(FitSettings)}
    settings = load_fit_settings(source) if source.is_dir() else FitSettings()
    if source.is_dir() and (source / "fit.yaml").exists():
        given, _ = load_yaml(source / "fit.yaml")  # which keys the file set
        origin.update({k: "fit.yaml" for k in given or {}})
    sets = parse_sets(args.sets, example="method=robust")
    settings = apply_sets(settings, sets)
    origin.update({str(st.key[0]): "cli" for st in sets})
    return settings, origin


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def markdown_table(fits: list[dict], compute: str, notes: Sequence[str] = ()) -> str:
    """fits.json's fit records -> a Markdown table (one row per fit; a `group` column when
    there is a law per axis value, and the runs picked per size for ``best_over``);
    `notes`: lines above it."""
    grouped = any(f.get("group_label") for f in fits)
    lines = [
        "Fits of `metric - E = (beta * x)^alpha`; x = N in billions of parameters, or Cmin in "
        "PFLOPs "
        f"({compute} FLOP count). Intervals: bootstrap over runs.",
        "",
        *[f"- {n}" for n in notes],
        *([""] if notes else []),
        ("| group " if grouped else "")
        + "| metric | vs | E | alpha | alpha CI | beta | beta CI | r | points "
        "| hold-out max rel. err | paper alpha | paper beta | marks |",
        ("|---" if grouped else "") + "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_law_row(f, grouped) for f in fits]
    lines += sensitivity_table(fits)
    lines += _picked_rows(fits, grouped) + _seed_rows(fits)
    return "\n".join(lines) + "\n"


def _law_row(f: dict, grouped: bool) -> str:
    """One fit record's row of fits.md's main table."""
    ci = f.get("ci") or {}
    aci = (
        f"n/a ({ci['not_given']})"
        if ci.get("not_given")
        else "-"
        if f["alpha_ci"] is None
        else f"[{_fmt(f['alpha_ci'][0])}, {_fmt(f['alpha_ci'][1])}]"
        + (" (E refitted per draw)" if ci.get("E") == "refitted" else "")
    )
    bci = "-" if f["beta_ci"] is None else f"[{_fmt(f['beta_ci'][0])}, {_fmt(f['beta_ci'][1])}]"
    E_value = f["E"] if abs(f["E"]) > 1e-9 else 0.0  # a fitted E at its bound (~1e-20) is 0
    E = f"{E_value:.3g}" + (" (fit)" if f["E_mode"] == "fit" else "")
    hold = f["holdout"]
    hold_s = (
        "-"
        if not hold or hold["max_abs_rel_error"] is None
        else f"{100 * hold['max_abs_rel_error']:.2f}% (k={hold['k']})"
    )
    paper = f.get("paper") or {}
    return (
        (f"| {f.get('group_label') or '-'} " if grouped else "")
        + f"| {f['metric']} | {f['against']} | {E} | {f['alpha']:.4g} | {aci} "
        f"| {f['beta']:.4g} | {bci} "
        f"| {_fmt(f['r'], 4)} | {f['n_points']} | {hold_s} | {_fmt(paper.get('alpha'))} "
        f"| {_fmt(paper.get('beta'))} | {'; '.join(f.get('marks') or []) or '-'} |"
    )


def _picked_rows(fits: list[dict], grouped: bool) -> list[str]:
    """fits.md's table of the run picked per size (``--best-over``); [] without one."""
    lines: list[str] = []
    picked = [f for f in fits if f.get("best_over") and f["against"] == "N"]
    if not picked:
        return lines
    if picked:
        b = picked[0]["best_over"]
        lines += [
            "",
            f"Best run per size over `{b['axis']}` (final evaluation"
            + (", seed-averaged" if b.get("seed_averaged") else "")
            + "; laws vs Cmin use the "
            "same runs' frontier):",
            "",
            ("| group " if grouped else "")
            + f"| law's metric | picked by | N | {b['axis']} | run | value | other values |",
            ("|---" if grouped else "") + "|---|---|---|---|---|---|---|",
        ]
        for f in picked:
            for p in f["best_over"]["picked"]:
                by = p["by"]
                others = ", ".join(
                    f"{c['value']:g}: {c[by]:.4g}"
                    if isinstance(c["value"], float)
                    else f"{c['value']}: {c[by]:.4g}"
                    for c in p["candidates"][1:]
                )
                value = f"{p['value']:g}" if isinstance(p["value"], float) else str(p["value"])
                lines.append(
                    (f"| {f.get('group_label') or '-'} " if grouped else "")
                    + f"| {f['metric']} | {by} | {p['params']:,} | {value} | {p['run']} "
                    f"| {p[by]:.4g} | {others or '-'} |"
                )
    return lines


def _seed_rows(fits: list[dict]) -> list[str]:
    """fits.md's table of seed-to-seed spread per size; [] without seed replicates."""
    lines: list[str] = []
    spreads = [f for f in fits if f.get("seed_spread") and f["against"] == "N"]
    if spreads:
        lines += [
            "",
            "Seed replicates: the fits use each size's mean over its seeds; the bootstrap draws "
            "sizes, then the seeds within each size (without replacement). Seed-to-seed standard "
            "deviation of the final value:",
            "",
            "| metric | "
            + " | ".join(f"{p['params'] / 1e9:.3g}B" for p in spreads[0]["seed_spread"])
            + " |",
            "|---|" + "---|" * len(spreads[0]["seed_spread"]),
        ]
        for f in spreads:
            lines.append(
                (f"| {f.get('group_label')} " if f.get("group_label") else "")
                + f"| {f['metric']} | "
                + " | ".join(f"{_fmt(p['sd'])} (n={p['n_seeds']})" for p in f["seed_spread"])
                + " |"
            )
    return lines


def sensitivity_table(fits: list[dict]) -> list[str]:
    """Markdown lines of the sensitivity report: each law's exponent under other choices."""
    rows = [f for f in fits if f.get("sensitivity")]
    if not rows:
        return []

    def key(name: str) -> str:  # "E pinned (5)" and "E pinned (4.5)" share a column
        return "E pinned" if name.startswith("E pinned") else name

    names: list[str] = []
    for f in rows:
        for k in f["sensitivity"]["variants"]:
            if key(k) not in names:
                names.append(key(k))
    grouped = any(f.get("group_label") for f in rows)
    lines = [
        "",
        "Sensitivity of alpha to the fit's choices (E pinned: the paper's E when E is fitted, "
        "else the E given; without a size: its runs dropped before refitting; '-': does not "
        "apply). t-interval: the OLS slope's few-point interval (n - 2 degrees of freedom) "
        "beside the bootstrap's. spread: largest - smallest alpha over the choices but 'no E' "
        "(shown for reference: without E a loss's exponent is not the law's); wider than the "
        "bootstrap interval is marked in the table above.",
        "",
        ("| group " if grouped else "")
        + "| metric | vs | alpha | bootstrap CI | t-interval | "
        + " | ".join(names)
        + " | spread |",
        ("|---" if grouped else "") + "|---|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for f in rows:
        sens = f["sensitivity"]
        by_key = {key(k): (k, v) for k, v in sens["variants"].items()}
        cells = []
        for n in names:
            k, v = by_key.get(n, (n, None))
            cells.append("-" if v is None else _fmt(v, 4) + (f" ({k[10:-1]})" if k != n else ""))
        aci, tci = f["alpha_ci"], sens["t_interval"]
        lines.append(
            (f"| {f.get('group_label') or '-'} " if grouped else "")
            + f"| {f['metric']} | {f['against']} | {f['alpha']:.4g} | "
            + ("n/a" if aci is None else f"[{_fmt(aci[0])}, {_fmt(aci[1])}]")
            + " | "
            + ("-" if tci is None else f"[{_fmt(tci[0])}, {_fmt(tci[1])}]")
            + " | "
            + " | ".join(cells)
            + f" | {_fmt(sens['spread'])}"
            + (" (> CI)" if sens["exceeds_interval"] else "")
            + " |"
        )
    return lines


def _E_name(key: tuple) -> str:
    metric, label = key
    return metric + (f" ({label})" if label else "")


def official_tokenizer(raw: pd.DataFrame) -> Tokenizer:
    """Whether every run's token store was made with the official VQVAE; (yes, in words).

    Reads the stores' meta.json (`scaling.data.token_store.read_meta`; the path is each run's
    config column ``data.store``): the VQVAE's vocab/z/ch and checkpoint file name must be the
    official ones (`OFFICIAL_VQVAE`).
    """
    if "data.store" not in raw.columns:
        return False, "the source records no token store (a table file)"
    for store in sorted(set(raw["data.store"].dropna().astype(str))):
        try:
            meta = read_meta(store)
        except (TokenStoreError, OSError):
            return False, f"token store {store} is not readable here"
        cfg = meta.get("vqvae_config") or {}
        name = Path(str(meta.get("vqvae_path", ""))).name
        if name != OFFICIAL_VQVAE["file"] or any(
            cfg.get(k) != v for k, v in OFFICIAL_VQVAE.items() if k != "file"
        ):
            return False, (
                f"token store {store} was made with another VQVAE ({name or 'unnamed'}, "
                f"vocab {cfg.get('vocab_size')}, ch {cfg.get('ch')})"
            )
    return (
        True,
        f"the runs' token store was made with the official tokenizer ({OFFICIAL_VQVAE['file']})",
    )


def tokenizer_quality(raw: pd.DataFrame) -> dict[str, dict]:
    """Each token store's tokenizer-quality columns (`contracts.tokenizer`), for
    `analysis.tokenizer.join_quality`: the quality file beside the store's VQVAE (its
    meta.json's ``vqvae_path``), or where a sweep measures a checkpoint variant (``vqvae/``
    beside the store), when it measured that very checkpoint (same sha256); stores without
    one (not measured, not readable here) are left out."""
    out: dict[str, dict] = {}
    if "data.store" not in raw.columns:
        return out
    for store in sorted(set(raw["data.store"].dropna().astype(str))):
        try:
            meta = read_meta(store)
        except (TokenStoreError, OSError):
            continue
        places = [Path(store).parent / "vqvae" / QUALITY_FILE]
        if meta.get("vqvae_path"):
            places.insert(0, Path(str(meta["vqvae_path"])).parent / QUALITY_FILE)
        for place in places:
            quality = read_quality(place)
            if quality is not None and quality.vqvae_sha256 == meta.get("vqvae_sha256"):
                out[store] = quality.columns()
                break
    return out


def axis_labels(source: Path, raw: pd.DataFrame) -> dict[str, str]:
    """Each grid axis's run-id label: the sweep's (a runs directory's grid.yaml) over the
    usual ones of `scaling.study.sweep.spec.DEFAULT_LABELS` (depth: d, base_lr: lr, ...)."""
    given = dict(read_grid(source / GRID_FILE).labels) if source.is_dir() else {}
    default = {
        axis_name(c): DEFAULT_LABELS[axis_name(c).split(".")[-1]]
        for c in axis_columns(raw)
        if axis_name(c).split(".")[-1] in DEFAULT_LABELS
    }
    return {**default, **given}


def sweep_output(path: Path) -> Path:
    """A sweep file -> its output folder (read without importing the trainer: no torch)."""
    data, loc = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("output"), str) or not data["output"]:
        raise ConfigError(
            f"{loc.where(('output',))}: output: a sweep file names its output folder "
            f"(output: runs/NAME); {path} has none"
        )
    out = Path(data["output"])
    if not out.is_dir():
        raise FitCLIError(
            f"{path}: its output folder {out} does not exist yet: launch the sweep "
            f"first (python -m scaling.launch {path})"
        )
    return out


def fit_source(source: Path, settings: FitSettings) -> StudyFit:
    """Read a runs directory or table file and fit it with `settings`: `analysis.fitting.fit_study`
    given what only this layer knows (the runs' tokenizer for irreducible "auto", the axes'
    run-id labels). Problems are `warnings.warn`ed; bad input raises `ResultsError`."""
    raw = load_results(source, include_subset=settings.include_subset)
    raw = join_quality(raw, tokenizer_quality(raw))
    tokenizer = official_tokenizer(raw) if settings.irreducible == "auto" else None
    return fit_study(
        raw, settings, source=str(source), labels=axis_labels(source, raw), tokenizer=tokenizer
    )


def fits_file(
    fit: StudyFit,
    source: Path,
    origin: dict[str, str],
    caught: list[str],
    elapsed_s: float | None = None,
) -> FitsFile:
    """The fits.json of a power-law fit (`contracts.fits`; docs/fitting.md, field by field)."""
    settings = fit.settings
    return FitsFile(
        fits=tuple(
            PowerLawFit.from_record(r, where=f"fits[{i}]") for i, r in enumerate(fit.records)
        ),
        tool="python -m scaling.fit",
        source=str(source),
        settings={
            **settings.as_record(),
            "holdout": fit.holdout,
            "sources": origin,
        },
        details={
            "created_utc": utc_now(),
            "source_kind": "runs_dir" if source.is_dir() else "table",
            "n_rows": int(len(fit.table)),
            "n_runs": int(fit.table["run"].nunique()),
            "sizes": fit.sizes,
            "axes": {
                k: fit.axes[k]
                for k in ("size_axes", "seed_axes", "law_axes", "best_over", "labels")
            },
            "conventions": _conventions(fit),
            **({"crossovers": fit.crossovers} if fit.crossovers else {}),
            "warnings": caught,
            "elapsed_s": elapsed_s,
        },
    )


def _conventions(fit: StudyFit) -> dict:
    """fits.json's `conventions`: what every number of a power-law fit means."""
    settings, unfinished, flagged = fit.settings, fit.unfinished, fit.flagged
    return {
        "form": "y - E = (beta * x)^alpha, "
        "fitted as log(y - E) = alpha * log(x) + alpha * log(beta)",
        "x_units": {"N": X_UNIT["N"], "Cmin": X_UNIT["Cmin"]},
        "compute": {
            "choice": settings.compute,
            "column": COMPUTE_COLUMNS[settings.compute],
            "meaning": COMPUTE_TEXT[settings.compute],
            "unit_in_fit": "PFLOPs (1e15 FLOPs)",
        },
        "irreducible": _irreducible_conventions(fit),
        "points_vs_N": (
            "the final evaluation (largest step) of every finished run"
            if settings.final == "last"
            else "the best evaluation (lowest value of the metric) of every finished run"
        )
        + (
            " and of the unfinished runs (included on request)"
            if settings.include_unfinished and unfinished
            else ""
        ),
        "unfinished_runs": unfinished,
        "data_limited": {
            "rule": OVERFIT_RULE,
            "runs": flagged,
        },
        "axes": "one law per value of every grid axis other than size and seed (group); seed "
        "replicates within a law as in 'seeds'; with "
        "best_over, each size's run with the lowest final value of the picking metric "
        "(best_by, else the law's own metric) over that axis, and the Cmin law on the "
        "frontier of those runs",
        "points_vs_Cmin": "evaluations on the Pareto frontier of all runs' training curves "
        "(curves interpolated in log-log between evaluations)",
        "evaluations": "full test-set evaluations only"
        if not settings.include_subset
        else "full and subset evaluations",
        "r": "Pearson correlation of log(x) and log(y - E) over the fitted points",
        "intervals": f"{settings.ci:.0%} bootstrap intervals, resampling runs with replacement "
        f"(with seed replicates: sizes, then seeds within each size; Cmin: frontier "
        f"recomputed per draw), Hesterberg-expanded percentiles; a fitted E is refitted in "
        f"every draw (one draw shared by the loss's N and Cmin laws; ci.E says how E was "
        f"treated); no interval (ci.not_given says why) below {MIN_SIZES} sizes "
        f"({MIN_SIZES_E_FITTED} with E fitted) or {MIN_VALID:.0%} valid draws",
        "marks": "per law: wrong sign (alpha > 0), weak law (|r| < "
        f"{MIN_ABS_R}), sensitive (the sensitivity report's spread wider than the interval)",
        "sensitivity": "per law: alpha with E fitted / E pinned / no E, the other method "
        "(OLS or Huber), without the smallest and without the largest size; the OLS "
        "t-interval with n - 2 degrees of freedom; spread and exceeds_interval",
        "seeds": "runs of one size with different seeds are averaged for the point estimate "
        "(Cmin: their mean curve at shared steps); seed_spread gives the per-size sd",
        "holdout": "refit without the k largest model sizes; "
        "rel_error = predicted / actual - 1 of the metric itself (E included)",
    }


def _irreducible_conventions(fit: StudyFit) -> dict:
    """fits.json's `conventions.irreducible`: the E asked for, the E used and why."""
    return {
        "choice": fit.settings.irreducible,
        "used": fit.E_mode,
        "why": fit.E_reason,
        "values": fit.E_values,
        "shared_fit": {
            _E_name(k): {
                "E": v.E,
                "ci": list(v.ci),
                "at_bound": v.at_bound,
                "interval_wider_than_reducible": v.wide,
                "n_points": v.n_points,
            }
            for k, v in fit.shared.items()
        },
        "paper_values": PAPER_IRREDUCIBLE,
        "applies_to": "losses (ce_*) only; error rates are fitted directly (E = 0)",
    }


def sample_floors(source: Path) -> dict[str, dict[str, float]] | None:
    """The sample metrics' reference scores of a runs folder (`_data/sample_floors.json`,
    written by scripts/figures/demo_samples.py: real training images and their VQVAE
    reconstructions), or None."""
    path = source / DATA_DIR / "sample_floors.json"
    try:
        return json.loads(path.read_text())["floors"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_figures(fit: StudyFit, out: Path, floors: dict | None = None) -> None:
    """fit_vs_N, fit_vs_Cmin and (when scaling.sample_eval ran) samples_vs_N, png and pdf;
    `floors` (`sample_floors`) are drawn in samples_vs_N."""
    # matplotlib only when drawing: --no-plots and importing this module stay without it
    from analysis.plots import plot_samples_vs_n, plot_vs_cmin, plot_vs_n, save_figure

    settings, results, labels = fit.settings, fit.results, fit.labels
    grouped = any(labels)
    n_idx, c_idx = fit.against("N"), fit.against("Cmin")
    if n_idx:
        save_figure(
            plot_vs_n(
                [results[i] for i in n_idx],
                paper=bool(settings.paper),
                labels=[labels[i] for i in n_idx] if grouped else None,
                notes=[fit.notes[i] for i in n_idx],
                flagged=list(fit.flagged) + (fit.unfinished if settings.include_unfinished else []),
            ),
            out / "fit_vs_N",
        )
    if c_idx:
        shown = fit.table
        if fit.axes["best_column"] is not None:  # the curves of the runs picked for some law
            picked = {
                r
                for f in fit.records
                if f.get("best_over")
                for p in f["best_over"]["picked"]
                for r in p["run"].split(", ")
            }
            shown = shown[shown["run"].astype(str).isin(picked)]
        run_labels = (
            {
                str(r): group_label(g, fit.axes["labels"])
                for g, sub in groups(shown, fit.axes["law_columns"])
                for r in sub["run"].unique()
            }
            if grouped
            else None
        )
        save_figure(
            plot_vs_cmin(
                [results[i] for i in c_idx],
                shown,
                paper=bool(settings.paper),
                labels=[labels[i] for i in c_idx] if grouped else None,
                run_labels=run_labels,
            ),
            out / "fit_vs_Cmin",
        )
    fig = plot_samples_vs_n(fit.raw, floors)  # measured sample quality, when sample_eval ran
    if fig is not None:
        save_figure(fig, out / "samples_vs_N")


def fit_and_write(
    source: Path,
    settings: FitSettings,
    origin: dict[str, str],
    out: Path,
    plots: bool = True,
    shown: Path | None = None,
) -> tuple[dict, StudyFit]:
    """Fit `source` (`compute_fit`), print the warnings, the E used and the table, and write
    fits.json, fits.md, results.csv and (with `plots`) the figures into `out` (named `shown`
    in messages: the folder a staging folder will become); with `settings.backtest` the
    backtest too (`scaling.study.laws.forecasts`)."""
    started = time.perf_counter()
    fit, caught = compute_fit(source, settings)
    for message in caught:
        print(f"warning: {message}", file=sys.stderr)
    fits = fits_file(fit, source, origin, caught)
    out.mkdir(parents=True, exist_ok=True)
    E_line = render_E_line(fit)
    print(E_line)
    table_md = render_fits_md(fit, E_line)
    if settings.backtest:  # computes and writes its own files into `out`
        bt_doc = run_backtest(
            fit,
            source,
            out,
            plots=plots,
            frac=settings.forecast_frac,
            curve_law=settings.curve_law,
            level=settings.ci,
        )
        table_md += "\n" + backtest_markdown(bt_doc)
    fits = write_fit(out, source, fit, fits, table_md, plots, started)
    print(table_md)
    print(
        f"wrote {shown or out}/fits.json, fits.md, results.csv"
        + (", figures (png, pdf)" if plots else "")
        + f" in {fits.details['elapsed_s']:.1f} s"
    )
    return fits.as_dict(), fit


def compute_fit(source: Path, settings: FitSettings) -> tuple[StudyFit, list[str]]:
    """`fit_source` with its warnings caught: (the fit, the warnings' messages)."""
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        fit = fit_source(source, settings)
    return fit, [str(w.message) for w in records]


def render_E_line(fit: StudyFit) -> str:
    """The one line that says which E was used and why (printed, and atop fits.md)."""
    return f"E: {fit.E_mode} ({fit.E_reason}): " + ", ".join(
        [f"{_E_name(k)} {v.E:.4g} [{v.ci[0]:.4g}, {v.ci[1]:.4g}]" for k, v in fit.shared.items()]
        + [f"{m} {v:.4g}" for m, v in fit.E_values.items() if is_loss(m)]
    )


def render_fits_md(fit: StudyFit, E_line: str) -> str:
    """fits.md: the notes (E, points vs N, unfinished and data-limited runs) and the table."""
    settings = fit.settings
    md_notes = [E_line, f"N laws: each finished run's {settings.final} evaluation"]
    if fit.unfinished:
        how = "included vs N, marked" if settings.include_unfinished else "left out of the N laws"
        md_notes.append(f"unfinished runs ({how}): " + ", ".join(fit.unfinished))
    if fit.flagged:
        md_notes.append("data-limited runs (marked x in fit_vs_N): " + ", ".join(fit.flagged))
    return markdown_table(fit.records, settings.compute, md_notes) + "".join(
        line + "\n" for line in crossover_rows(fit.crossovers)
    )


def crossover_rows(records: list[dict]) -> list[str]:
    """fits.md's section on where the best value of the ``best_over`` axis changes
    (`analysis.fitting.axis_crossovers`): per metric and x, each value's law and every
    crossover with its interval; [] without best_over."""
    if not records:
        return []
    lines = [
        "",
        f"Where the best `{records[0]['axis']}` changes (one law per value on all its runs; "
        "the crossover of the lowest two; interval: bootstrap of both laws):",
        "",
        "| group | metric | vs | laws (value: alpha [interval], E) | crossover | "
        f"{records[0]['level']:.0%} interval | draws crossing |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        unit = "params" if r["against"] == "N" else "FLOPs"
        laws = "; ".join(
            f"{v['value']}: {v['alpha']:.3g}"
            + (f" [{v['alpha_ci'][0]:.3g}, {v['alpha_ci'][1]:.3g}]" if v["alpha_ci"] else "")
            + f", E {v['E']:.3g}"
            for v in r["laws"]
        )
        found = r["crossovers"] or [None]
        for c in found:
            if c is None:
                where, ci, share = "none in the range searched", "-", "-"
            else:
                where = f"{c['below']} -> {c['above']} at {c['x_raw']:.3g} {unit}" + (
                    "" if c["inside_measured_range"] else " (extrapolated)"
                )
                ci = (
                    f"[{c['ci_raw'][0]:.3g}, {c['ci_raw'][1]:.3g}]"
                    if c["ci_raw"]
                    else f"n/a ({c.get('ci_note')})"
                )
                share = f"{c['crossing_share']:.0%}" if c["crossing_share"] is not None else "-"
            lines.append(
                f"| {r['group_label'] or '-'} | {r['metric']} | {r['against']} | {laws} "
                f"| {where} | {ci} | {share} |"
            )
    return lines


def write_fit(
    out: Path,
    source: Path,
    fit: StudyFit,
    fits: FitsFile,
    table_md: str,
    plots: bool,
    started: float,
) -> FitsFile:
    """fits.md, the runs' forecasts (a runs directory), results.csv, the figures (with
    `plots`), then fits.json with its elapsed_s (seconds since `started`) into `out`;
    returns the fits.json written."""
    atomic_write_text(out / "fits.md", table_md)
    if source.is_dir():
        track_forecasts(source, out, fit.raw, fit.settings.curve_law, fit.settings.ci)
    fit.table.to_csv(out / "results.csv", index=False)
    if plots:
        write_figures(fit, out, sample_floors(source) if source.is_dir() else None)
    elapsed = round(time.perf_counter() - started, 3)
    fits = dataclasses.replace(fits, details={**fits.details, "elapsed_s": elapsed})
    write_fits(out / FITS_FILE, fits)
    return fits


def fit_one(argv: list[str]) -> tuple[dict, StudyFit | None]:
    """One study from a command line: (its fits.json document, its `StudyFit`; None for the
    joint law). The two-study comparison fits each study through this."""
    args = _parse_args(argv)
    if len(args.source) != 1:
        raise FitCLIError(f"one study to fit; got {len(args.source)}: {' '.join(args.source)}")
    return _fit_one(args)


def _fit_one(args: argparse.Namespace) -> tuple[dict, StudyFit | None]:
    given = Path(args.source[0])
    if not given.exists():
        raise FitCLIError(f"{given}: no such sweep file, runs directory or table file")
    source = sweep_output(given) if given.suffix in (".yaml", ".yml") else given
    settings, origin = resolve_settings(args, source)
    if args.optimal_for is not None and settings.law != "nd":
        settings = dataclasses.replace(settings, law="nd")
        origin["law"] = "cli"
    # each view its own folder (scaling.study.laws.folders); --out: exactly where asked
    joint_out = default_folder(source, fit_folder_name(settings))
    if args.optimal_for is not None:
        name = optimal_folder_name(args.optimal_for)
        with _output_folder(args.out, default_folder(source, name)) as (out, shown):
            return run_optimal(args, source, settings, origin, joint_out, out, shown), None
    with _output_folder(args.out, joint_out) as (out, shown):
        if settings.law == "nd-repeat":
            return run_repeat(args, source, settings, origin, out, shown), None
        if settings.per_scale:
            return run_per_scale(args, source, settings, origin, out, shown), None
        if settings.law == "nd":
            doc = run_joint(args, source, settings, origin, out, shown)
            if settings.backtest:  # the whole-curve backtests (no power laws to backtest)
                bt_doc = run_backtest(
                    None,
                    source,
                    out,
                    plots=not args.no_plots,
                    frac=settings.forecast_frac,
                    curve_law=settings.curve_law,
                    level=settings.ci,
                    settings=settings,
                )
                with open(out / "fits.md", "a") as f:
                    f.write("\n" + backtest_markdown(bt_doc))
            if source.is_dir():
                track_forecasts(source, out, load_results(source), settings.curve_law, settings.ci)
            return doc, None
        return fit_and_write(source, settings, origin, out, plots=not args.no_plots, shown=shown)


@contextlib.contextmanager
def _output_folder(given: str | None, default: Path) -> Iterator[tuple[Path, Path]]:
    """(folder to write into, folder to name in messages): `--out` as given (written into,
    other files there kept), else the view's own folder, replaced whole when the fit is done."""
    if given:
        yield Path(given), Path(given)
        return
    with replacing_folder(default) as stage:
        yield stage, default


def run(argv: list[str] | None = None) -> dict:
    """The CLI's work; returns the fits.json document (compare.json for two sources).
    Raises FitCLIError / ResultsError / ConfigError."""
    args = _parse_args(argv)
    if len(args.source) == 2:
        return compare_studies(args, argv, fit_one)
    if len(args.source) > 2:
        raise FitCLIError(
            f"give one study to fit, or two to compare; got {len(args.source)}: "
            f"{' '.join(args.source)}"
        )
    return _fit_one(args)[0]


def main(argv: list[str] | None = None) -> int:
    """Entry point: bad input (a flag, fit.yaml, the table) is one line on stderr, exit 2."""
    import matplotlib

    matplotlib.use("Agg")  # this CLI writes files only, never a window (also on cluster nodes)
    setup_logging()

    def body() -> None:
        run(argv)

    return run_cli(body, input_errors=(ResultsError,))
