"""``python -m scaling.fit RUNS --set per_scale=true``: the laws of each scale.

The evaluator records the test cross-entropy of every scale (``ce_by_scale`` of metrics.jsonl,
coarse to fine; the table's columns ``ce_s0``, ``ce_s1``, ...). For each scale k this fits
its laws vs N and vs Cmin with the fit loop of
`scaling.fit` (`analysis.fitting.fit_study`, the settings given; E fitted per scale unless a
number is given: the paper's E is for whole-image losses) and writes into
``<runs>/fit-per-scale/``:

    fits.json          one power-law record per scale and x (metric ``ce_scale<k>``, with
                       ``scale``, ``pn`` and the scale's code entropy), `contracts.fits`
    fits.md            the table (also printed)
    results.csv        the table that was fitted (one ce_s<k> column per scale)
    by_scale_vs_N.png/pdf, by_scale_vs_Cmin.png/pdf
                       each scale's points and law, with the entropy of its codes

The entropy drawn is the plug-in entropy, in nats, of the scale's codes over the token store's
evaluation split (`analysis.tokenizer.scale_codes`): the loss of the best model that ignores
every context (the unigram baseline). It is not a floor of the loss: a model that uses the
class and the coarser scales goes below it. It bounds each scale's irreducible loss from above
(E_k <= H_k), so a scale whose fitted E is near its entropy learns little from its context,
and a scale whose loss sits far above both limits the scaling.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.fitting import StudyFit, fit_study
from analysis.results import ResultsError, load_results
from analysis.settings import FitSettings
from analysis.tokenizer import ScaleCodes, scale_codes
from contracts.atomic import atomic_write_text
from contracts.fits import FILE as FITS_FILE
from contracts.fits import FitsFile, PowerLawFit, write_fits
from contracts.jsondoc import utc_now
from scaling.data.token_store import TokenStoreError, read_meta


def scale_columns(raw: pd.DataFrame, source: str) -> tuple[pd.DataFrame, int]:
    """The rows of `raw` that have every scale's loss (columns ce_s0, ce_s1, ...: the table's
    reading of metrics.jsonl's ce_by_scale, `analysis.results`); and the number of scales."""
    n = 0
    while f"ce_s{n}" in raw.columns:
        n += 1
    if n == 0:
        raise ResultsError(
            f"{source}: no per-scale losses (columns ce_s0, ce_s1, ... from metrics.jsonl's "
            "ce_by_scale): the per-scale laws need the evaluator's per-scale test losses"
        )
    cols = [f"ce_s{k}" for k in range(n)]
    table = raw.dropna(subset=cols).copy()
    if table.empty:
        raise ResultsError(f"{source}: no evaluation has every scale's loss")
    return table, n


def store_entropy(table: pd.DataFrame) -> tuple[list[ScaleCodes] | None, str]:
    """The code statistics per scale over the runs' token store's evaluation split, and where
    they come from (None and why not when the store is not readable here)."""
    if "data.store" not in table.columns:
        return None, "the runs' token store is not named (config data.store)"
    stores = table["data.store"].dropna().unique()
    if len(stores) != 1:
        return None, f"the runs use {len(stores)} token stores"
    store = Path(str(stores[0]))
    split = "val"
    if "data.eval_split" in table.columns and table["data.eval_split"].notna().any():
        split = str(table["data.eval_split"].dropna().iloc[0])
    try:
        meta = read_meta(store)
        tokens = np.load(store / split / "tokens.npy", mmap_mode="r")
    except (TokenStoreError, OSError, ValueError) as e:
        return None, f"the token store {store} is not readable here ({e})"
    patch_nums = [int(p) for p in meta["patch_nums"]]
    edges = np.cumsum([0] + [p * p for p in patch_nums])
    if tokens.ndim != 2 or tokens.shape[1] != edges[-1]:
        return None, f"{store / split / 'tokens.npy'}: shape {tokens.shape}, L = {edges[-1]}"
    codes = [np.asarray(tokens[:, a:b]) for a, b in zip(edges[:-1], edges[1:])]
    stats = scale_codes(codes, int(meta["vocab_size"]), patch_nums)
    return stats, f"{store}, split {split!r} ({tokens.shape[0]:,} sequences)"


def _scale_settings(settings: FitSettings) -> FitSettings:
    """The settings of one scale's fit: its loss only, E fitted unless a number is given."""
    irreducible = settings.irreducible if isinstance(settings.irreducible, float) else "fit"
    return dataclasses.replace(
        settings,
        metrics=("ce_last",),  # the scale's loss, under the loop's name for a loss
        irreducible=irreducible,
        law="power",
        per_scale=False,
        backtest=False,
        best_by=None,
    )


def fit_scales(source: Path, settings: FitSettings) -> tuple[list[StudyFit], pd.DataFrame, int]:
    """Fit every scale's laws (`fit_study` on the scale's loss); (fits, table, scales)."""
    raw = load_results(source, include_subset=False)
    table, n = scale_columns(raw, str(source))
    one = _scale_settings(settings)
    fits = []
    for k in range(n):
        scaled = table.drop(columns=["ce_last"], errors="ignore").rename(
            columns={f"ce_s{k}": "ce_last"}
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fits.append(fit_study(scaled, one, source=f"{source} (scale {k})"))
        for w in caught:  # the loop calls the scale's loss ce_last: name it
            text = str(w.message).replace("ce_last", f"ce_s{k}")
            warnings.warn(f"scale {k}: {text}", stacklevel=2)
    return fits, table, n


def records(fits: list[StudyFit], stats: list[ScaleCodes] | None) -> list[dict[str, Any]]:
    """fits.json's records: each scale's laws, its metric named ce_scale<k>."""
    out = []
    for k, fit in enumerate(fits):
        for rec in fit.records:
            # the paper's laws are whole-image losses: no comparison for a scale
            extra = {"scale": k, "metric": f"ce_scale{k}", "paper": None}
            if stats is not None:
                extra |= {"pn": stats[k].pn, "entropy_nats": stats[k].entropy_nats}
            out.append({**rec, **extra})
    return out


def markdown(recs: list[dict], entropy_source: str) -> str:
    """The per-scale table (fits.md)."""
    lines = [
        "Per-scale laws `ce_k - E_k = (beta x)^alpha` (x = N in billions of parameters, or "
        "Cmin in PFLOPs), E fitted per scale; H_k: plug-in entropy of scale k's codes "
        f"(nats; {entropy_source}): the context-free baseline, an upper bound on E_k.",
        "",
        "| scale | pn | H_k | vs | E_k | alpha | alpha CI | r | points |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in recs:
        ci = r.get("alpha_ci")
        ci_s = "-" if ci is None else f"[{ci[0]:.3g}, {ci[1]:.3g}]"
        H = f"{r['entropy_nats']:.3g}" if "entropy_nats" in r else "-"
        lines.append(
            f"| {r['scale']} | {r.get('pn', '-')} | {H} | {r['against']} | {r['E']:.3g} "
            f"| {r['alpha']:.4g} | {ci_s} | {r['r']:.4f} | {r['n_points']} |"
        )
    return "\n".join(lines) + "\n"


def plot_scales(fits: list[StudyFit], against: str, stats: list[ScaleCodes] | None):
    """One panel per scale: the points and law vs `against`, the entropy of its codes."""
    from matplotlib.figure import Figure

    n = len(fits)
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.0 * cols, 2.6 * rows))
    for k, fit in enumerate(fits):
        ax = fig.add_subplot(rows, cols, k + 1)
        idx = fit.against(against)
        if not idx:
            continue
        res = fit.results[idx[0]]
        p = res.points
        ax.scatter(p["x"], p["y"], s=12, zorder=3)
        xs = np.geomspace(p["x"].min() / 1.5, p["x"].max() * 1.5, 100)
        ax.plot(xs, res.law.predict(xs), lw=1.5, label=f"alpha {res.law.alpha:.3g}")
        if res.law.E > 1e-9:
            ax.axhline(res.law.E, color="grey", ls=":", lw=1, label=f"E {res.law.E:.3g}")
        if stats is not None:
            H = stats[k].entropy_nats
            ax.axhline(H, color="k", ls="--", lw=1, label=f"code entropy {H:.3g}")
        ax.set_xscale("log")
        title = f"scale {k}" + (f" ({stats[k].pn}x{stats[k].pn})" if stats else "")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xlabel(res.x_unit, fontsize=7)
    fig.suptitle(f"Test CE per scale vs {against}; dashed: unigram entropy of the codes")
    fig.tight_layout()
    return fig


def run_per_scale(
    args: argparse.Namespace,
    source: Path,
    settings: FitSettings,
    origin: dict[str, str],
    out: Path,
    shown: Path | None = None,
) -> dict:
    """`--set per_scale=true`: every scale's laws into `out`; returns fits.json's document."""
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught_w:
        warnings.simplefilter("always")
        fits, table, n = fit_scales(source, settings)
    caught = [str(w.message) for w in caught_w]
    for message in caught:
        print(f"warning: {message}", file=sys.stderr)
    stats, entropy_source = store_entropy(table)
    if stats is not None and len(stats) != n:
        entropy_source = f"the store has {len(stats)} scales, the runs {n}"
        stats = None
    recs = records(fits, stats)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(recs, entropy_source)
    atomic_write_text(out / "fits.md", text)
    table.to_csv(out / "results.csv", index=False)
    if not args.no_plots:
        from analysis.plots import save_figure

        for against in settings.against:
            save_figure(plot_scales(fits, against, stats), out / f"by_scale_vs_{against}")
    doc = FitsFile(
        fits=tuple(PowerLawFit.from_record(r, where=f"fits[{i}]") for i, r in enumerate(recs)),
        tool="python -m scaling.fit --set per_scale=true",
        source=str(source),
        settings={
            **settings.as_record(),
            "sources": origin,
        },
        details={
            "created_utc": utc_now(),
            "per_scale": True,
            "scales": n,
            "entropy": {
                "source": entropy_source,
                "what": "plug-in entropy (nats) of each scale's codes over the evaluation "
                "split: the context-free baseline, an upper bound on the scale's E (not a "
                "floor of its loss)",
                "scales": None if stats is None else [dataclasses.asdict(s) for s in stats],
            },
            "warnings": caught,
            "elapsed_s": round(time.perf_counter() - started, 3),
        },
    )
    write_fits(out / FITS_FILE, doc)
    print(text)
    print(
        f"wrote {shown or out}/fits.json, fits.md, results.csv"
        + ("" if args.no_plots else ", figures (png, pdf)")
    )
    return doc.as_dict()
