"""Log-log figures in the paper's layout: metrics vs N, and training curves with the Cmin frontier.

Losses are drawn as the reducible part (metric - E), the quantity the law describes, and the
axis label says which E was subtracted and whether it was fitted. Every law carries its
bootstrap band (`analysis.compare.law_band`); with a hold-out check (k > 0) the law fitted
without the k largest models is drawn with its predictions of them. The paper's laws are
dotted black, only over the x-range where the paper measured them: in the panel where that
range meets the data, else in an inset panel of their own; the legend says which.
`plot_compare` draws two studies' laws in one figure. Compute is in PFLOPs, N in billions of
parameters. A study with other axes than size passes one fit per axis value (``labels``):
each gets its own colour, marker and legend entry.

This module never chooses a matplotlib backend: a notebook keeps its inline figures; the
command-line tools that write files choose a non-interactive one themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from .compare import law_band
from .paper import MEASURED_RANGE, X_SCALE, paper_law
from .powerlaw import FitResult
from .sample_metrics import SAMPLE_PANELS

LABELS = {
    "ce_avg": "test loss, average over scales",
    "ce_last": "test loss, last scale",
    "err_avg": "token error rate, average",
    "err_last": "token error rate, last scale",
}
X_LABELS = {"N": "N (billions of parameters)", "Cmin": "compute (PFLOPs)"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LINESTYLES = ("-", "--", ":", "-.")


def _readable_log_axis(axis, lo: float, hi: float) -> None:
    """Log axis whose labels stay readable when the data spans less than ~1.5 decades."""
    if hi / lo < 10**1.5:
        values = ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
        values = [v for v in values if lo * 0.95 <= v <= hi * 1.05 and v > 0]
        axis.set_major_locator(ticker.FixedLocator(values))
        axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.set_minor_locator(ticker.NullLocator())
    else:
        axis.set_major_locator(ticker.LogLocator(base=10))
        axis.set_major_formatter(ticker.LogFormatterSciNotation(base=10))


def _ylabel(fit: FitResult) -> str:
    label = LABELS.get(fit.metric, fit.metric)
    # a fitted E at its lower bound (~1e-20) is zero for the reader
    E = fit.law.E if abs(fit.law.E) > 1e-9 else 0.0
    if fit.E_mode == "fit":
        return f"{label} - E  (E = {E:.3g}, fitted)"
    return f"{label} - E  (E = {E:.3g}, fixed)" if E else label


def _law_notes(fit: FitResult) -> str:
    """What the legend must add to a law: why it has no interval, and its row marks."""
    notes = ([f"no interval: {fit.ci_note}"] if fit.ci_note else []) + [
        m.split(":")[0] for m in fit.marks
    ]
    return "".join(f"\n  {n}" for n in notes)


# the largest value a metric can take: a band is clipped there (an error rate above 1 is no
# prediction, only the power law's form extrapolated by a bootstrap draw)
X_UNIT_SHORT = {"N": "B params", "Cmin": "PFLOPs"}
INSET_RANGE = {"N": "18.5M-2.0B params", "Cmin": "~6 decades (approx.)"}  # paper.MEASURED_RANGE
METRIC_MAX = {"err_avg": 1.0, "err_last": 1.0, "sample_err": 1.0, "sample_acc": 1.0}


def _band(
    ax, fit: FitResult, xs: np.ndarray, shift: float, color: str, label: str | None, alpha=0.18
) -> None:
    """The law's bootstrap band (minus `shift`), clipped to the metric's range; points where
    it is not positive are left out of the log axis."""
    band = law_band(fit, xs)
    if band is None:
        return
    lo, hi = band[0] - shift, band[1] - shift
    top = METRIC_MAX.get(getattr(fit, "metric", ""))
    if top is not None:
        lo, hi = np.minimum(lo, top - shift), np.minimum(hi, top - shift)
    ok = hi > 0
    lo = np.where(lo > 0, lo, np.nan)
    ax.fill_between(
        xs[ok],
        lo[ok],
        hi[ok],
        color=color,
        alpha=alpha,
        lw=0,
        label=label and f"{label} ({fit.level:.0%} bootstrap band, {fit.bootstrap_valid} draws)",
    )


def _holdout(ax, fit: FitResult, xs: np.ndarray) -> None:
    """The law fitted without the k largest models, and its predictions of their points."""
    hold = fit.holdout
    if hold is None or not len(hold.points):
        return
    E = fit.law.E
    ax.plot(
        xs,
        hold.law.predict(xs) - E,
        "-.",
        color="C2",
        lw=1.2,
        label=f"fit without the {hold.k} largest (hold-out), max err "
        f"{100 * hold.max_abs_rel_error:.1f}%",
    )
    pts = hold.points
    ax.plot(
        pts["x"],
        pts["predicted"].to_numpy(float) - E,
        "x",
        color="C2",
        ms=7,
        mew=1.5,
        label="its predictions of the held-out points",
    )
    ax.plot(
        pts["x"],
        pts["y"].to_numpy(float) - E,
        "s",
        mfc="none",
        color="C2",
        ms=8,
        mew=1.2,
        label="held-out points (measured)",
    )


def _paper_overlay(ax, fit: FitResult, x_lo: float, x_hi: float) -> str | None:
    """Draw the published law only where the paper measured it; returns where it went
    ('panel' or 'inset'), None when there is no published law for this metric."""
    try:
        law = paper_law(fit.metric, fit.against)
    except KeyError:
        return None
    p_lo, p_hi = MEASURED_RANGE[fit.against]
    lo, hi = max(x_lo, p_lo), min(x_hi, p_hi)
    label = f"paper: ({law.beta:.3g} {fit.against})^{law.alpha:.3g}" + (
        f", E={law.E:g}" if law.E else ""
    )
    if lo < hi:  # the ranges meet: in the panel, over the overlap only, as our y (metric - our E)
        xs = np.geomspace(lo, hi, 50)
        y = law.predict(xs) - fit.law.E
        ok = y > 0
        if ok.any():
            ax.plot(
                xs[ok],
                y[ok],
                ":",
                color="k",
                lw=1.6,
                alpha=0.7,
                label=label + " (its range)",
            )
            return "panel"
    # no overlap: an inset with the law over its own range, in its own quantity (metric - its E)
    # lower left: the data fall from upper left to lower right, the legend goes upper right;
    # small type everywhere, y labels inside on the right, so nothing spills onto the panel
    inset = ax.inset_axes([0.07, 0.07, 0.3, 0.28])
    xs = np.geomspace(p_lo, p_hi, 50)
    y = law.reducible(xs)
    inset.plot(xs, y, ":", color="k", lw=1.6, alpha=0.7)
    inset.set_xscale("log")
    inset.set_yscale("log")
    _readable_log_axis(inset.yaxis, float(y.min()), float(y.max()))
    inset.yaxis.set_minor_formatter(ticker.NullFormatter())
    inset.yaxis.tick_right()
    inset.tick_params(which="both", labelsize=5.5, pad=1)
    inset.set_title(f"paper's law\n{INSET_RANGE[fit.against]}", fontsize=5.5, pad=2)
    inset.set_xlabel(
        f"{fit.against} ({X_UNIT_SHORT.get(fit.against, '')})", fontsize=5.5, labelpad=0
    )
    ax.plot(
        [],
        [],
        ":",
        color="k",
        lw=1.6,
        alpha=0.7,
        label=label + " (inset: no overlap)",
    )
    return "inset"


def _finish(ax, x: np.ndarray, y: np.ndarray) -> None:
    """Log axes with readable ticks; the y view keeps the points and lines in sight.

    A wide one-sided bootstrap band (an E the sizes barely locate) would stretch the y view
    over decades and squeeze the points and their tick labels together at one edge: the
    view is the points' and lines' range with a margin, and such a band runs off the frame.
    """
    ax.set_xscale("log")
    ax.set_yscale("log")
    _readable_log_axis(ax.xaxis, float(x.min()), float(x.max()))
    values = [np.asarray(y, dtype=float).ravel()]
    values += [np.asarray(line.get_ydata(), dtype=float).ravel() for line in ax.get_lines()]
    seen = np.concatenate(values)
    seen = seen[np.isfinite(seen) & (seen > 0)]
    lo, hi = float(seen.min()), float(seen.max())
    pad = max(1.15, (hi / lo) ** 0.1)
    view_lo, view_hi = ax.get_ylim()
    ax.set_ylim(max(view_lo, lo / pad), min(view_hi, hi * pad))
    _readable_log_axis(ax.yaxis, lo, hi)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=6.5, loc="upper right" if ax.child_axes else "best")  # clear of the inset


def _by_metric(fits: Sequence[FitResult], labels: Sequence[str | None] | None):
    """[(metric, [(fit, label, index)])] in first-seen metric order."""
    labels = list(labels) if labels is not None else [None] * len(fits)
    if len(labels) != len(fits):
        raise ValueError(f"labels: {len(labels)} given for {len(fits)} fits")
    groups: dict[str, list] = {}
    for fit, label in zip(fits, labels):
        groups.setdefault(fit.metric, []).append((fit, label))
    distinct = list(dict.fromkeys(labels))
    return [(m, [(f, lab, distinct.index(lab)) for f, lab in items]) for m, items in groups.items()]


def _title_note(where: set) -> str:
    if not where:
        return ""
    return "; paper's laws over their measured range" + (
        " (inset where it does not meet the data)" if "inset" in where else ""
    )


def plot_vs_n(
    fits: Sequence[FitResult],
    paper: bool = False,
    labels: Sequence[str | None] | None = None,
    notes: Sequence[Mapping[int, str] | None] | None = None,
    flagged: Sequence[str] = (),
) -> plt.Figure:
    """2x2 figure (one panel per metric): final points, fitted line, equation and r in the legend.

    labels: one per fit (e.g. 'lr=0.003') when a metric has a fit per axis value; each label
    gets its own colour and marker. notes: one per fit, {params: text} written beside that
    size's point (e.g. the lr picked for each size by ``best_over``). Seed replicates
    (``fit.seed_spread``) are drawn as the mean per size with +-1 seed-to-seed sd.
    flagged: runs to mark with red crosses (data-limited or unfinished runs).
    """
    keep = [i for i, f in enumerate(fits) if f.against == "N"]  # labels, notes: parallel to fits
    labels = [list(labels)[i] for i in keep] if labels is not None else None
    notes = [list(notes)[i] for i in keep] if notes is not None else [None] * len(keep)
    fits = [fits[i] for i in keep]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), squeeze=False, layout="constrained")
    panels = _by_metric(fits, labels)
    note_of = {id(f): n for f, n in zip(fits, notes)}
    where: set = set()
    for ax, (_, items) in zip(axes.flat, panels):
        all_x, all_y = [], []
        for fit, label, k in items:
            colour = "C0" if label is None else f"C{k % 10}"
            line_colour = "C3" if label is None else colour
            x, y = fit.points["x"].to_numpy(), fit.points["y"].to_numpy() - fit.law.E
            if (
                getattr(fit, "seed_spread", None) is not None
            ):  # seed replicates: mean, +-1 seed-to-seed sd
                sp = fit.seed_spread.sort_values("params")
                ax.errorbar(
                    sp["params"].to_numpy(float) / X_SCALE["N"],
                    sp["mean"].to_numpy(float) - fit.law.E,
                    yerr=np.nan_to_num(sp["sd"].to_numpy(float)),
                    fmt=MARKERS[k % len(MARKERS)],
                    color=colour,
                    ms=5,
                    capsize=3,
                    label=f"mean of {int(sp['n_seeds'].max())} seeds per size, +-1 sd"
                    if label is None
                    else None,
                )
            else:
                ax.plot(
                    x,
                    y,
                    MARKERS[k % len(MARKERS)],
                    color=colour,
                    ms=6,
                    label="final evaluation of each run" if label is None else None,
                )
            marked = fit.points["run"].astype(str).isin([str(r) for r in flagged]).to_numpy()
            if marked.any():
                ax.plot(
                    x[marked],
                    y[marked],
                    "x",
                    color="C3",
                    ms=9,
                    mew=1.5,
                    label="flagged: data-limited or unfinished",
                )
            xs = np.geomspace(x.min() / 1.3, x.max() * 1.3, 100)
            ax.plot(
                xs,
                fit.law.predict(xs) - fit.law.E,
                "-",
                color=line_colour,
                lw=1.5,
                marker=None if label is None else MARKERS[k % len(MARKERS)],
                markevery=[],
                label=(f"{label}: " if label else "")
                + f"{fit.equation()}, r={fit.r:.4f}"
                + _law_notes(fit),
            )
            if label is None:  # one law per panel: its band and hold-out
                _band(ax, fit, xs, fit.law.E, "C3", "law")
                _holdout(ax, fit, xs)
            else:  # one law per group: each its own band, lighter (hold-outs: fits.json)
                _band(ax, fit, xs, fit.law.E, line_colour, None, alpha=0.12)
            done: set = set()
            for xv, yv in zip(x, y):  # notes are keyed by size (params): one per size
                n = int(round(xv * X_SCALE["N"]))
                text = (note_of.get(id(fit)) or {}).get(n)
                if text and n not in done:
                    done.add(n)
                    ax.annotate(
                        text,
                        (xv, yv),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                        color=colour,
                    )
            all_x += [x, xs]
            all_y.append(y)
        if paper:
            x_all = np.concatenate(all_x)
            w = _paper_overlay(ax, items[0][0], float(x_all.min()), float(x_all.max()))
            where.add(w) if w else None
        ax.set_xlabel(X_LABELS["N"])
        ax.set_ylabel(_ylabel(items[0][0]))
        _finish(ax, np.concatenate(all_x), np.concatenate(all_y))
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("Scaling with model size N" + _title_note(where))
    return fig


def plot_vs_cmin(
    fits: Sequence[FitResult],
    table: pd.DataFrame,
    paper: bool = False,
    labels: Sequence[str | None] | None = None,
    run_labels: Mapping[str, str] | None = None,
) -> plt.Figure:
    """One panel per metric: every run's training curve (colour by size), the frontier, the fit.

    table: the prepared tidy table the fits came from (columns run, params, compute, metrics).
    labels: one per fit when a metric has a frontier and law per axis value (own colour and
    marker each); run_labels: {run: label} to draw each run's curve in its group's line style.
    """
    keep = [i for i, f in enumerate(fits) if f.against == "Cmin"]  # labels: parallel to fits
    labels = [list(labels)[i] for i in keep] if labels is not None else None
    fits = [fits[i] for i in keep]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), squeeze=False, layout="constrained")
    sizes = table.groupby("run")["params"].max().sort_values(kind="stable") / X_SCALE["N"]
    cmap = plt.get_cmap("plasma")
    norm = matplotlib.colors.LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.01))
    colours = {run: cmap(0.85 * norm(v)) for run, v in sizes.items()}  # skip the palest yellow
    distinct: list[str | None] = list(dict.fromkeys(labels)) if labels is not None else [None]
    style = {
        run: LINESTYLES[distinct.index(lab) % len(LINESTYLES)] if lab in distinct else "-"
        for run, lab in (run_labels or {}).items()
    }
    panels = _by_metric(fits, labels)
    where: set = set()
    for ax, (metric, items) in zip(axes.flat, panels):
        E = items[0][0].law.E
        all_y = [f.points["y"].to_numpy() - f.law.E for f, _, _ in items]
        excluded_shown = False
        for run in sizes.index:
            df = table[table["run"] == run].sort_values("compute")
            y = df[metric].to_numpy(float) - E
            ok = y > 0
            ax.plot(
                df["compute"].to_numpy()[ok] / X_SCALE["Cmin"],
                y[ok],
                style.get(str(run), "-"),
                color=colours[run],
                lw=1,
                alpha=0.85,
            )
            all_y.append(y[ok])
            if "cmin_excluded" in df.columns:  # left out of the frontier (cmin_from)
                out = ok & df["cmin_excluded"].to_numpy(bool)
                if out.any():
                    ax.plot(
                        df["compute"].to_numpy()[out] / X_SCALE["Cmin"],
                        y[out],
                        "x",
                        ms=4,
                        color="0.45",
                        label=None if excluded_shown else "left out of the frontier (cmin_from)",
                    )
                    excluded_shown = True
        for fit, label, k in items:
            fr = fit.points
            colour = "k" if label is None else f"C{k % 10}"
            ax.plot(
                fr["x"],
                fr["y"] - fit.law.E,
                MARKERS[k % len(MARKERS)],
                ms=5,
                mfc="none",
                mew=1.2,
                color=colour,
                label="frontier points (fitted)" if label is None else None,
            )
            x = fr["x"].to_numpy()
            xs = np.geomspace(x.min(), x.max(), 100)
            ax.plot(
                xs,
                fit.law.predict(xs) - fit.law.E,
                "-",
                color="C3" if label is None else colour,
                lw=2,
                marker=None if label is None else MARKERS[k % len(MARKERS)],
                markevery=[],
                mfc="none",
                label=(f"{label}: " if label else "")
                + f"{fit.equation()}, r={fit.r:.4f}"
                + _law_notes(fit),
            )
            if label is None:
                _band(ax, fit, xs, fit.law.E, "C3", "law")
                _holdout(ax, fit, xs)
            else:
                _band(ax, fit, xs, fit.law.E, colour, None, alpha=0.12)
        all_x = table["compute"].to_numpy(float) / X_SCALE["Cmin"]
        if paper:
            w = _paper_overlay(ax, items[0][0], float(all_x.min()), float(all_x.max()))
            where.add(w) if w else None
        ax.set_xlabel(X_LABELS["Cmin"])
        ax.set_ylabel(_ylabel(items[0][0]))
        _finish(ax, all_x, np.concatenate(all_y))
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if fits:
        shown = matplotlib.colors.ListedColormap(cmap(np.linspace(0, 0.85, 256)))
        bar = fig.colorbar(
            plt.cm.ScalarMappable(norm=norm, cmap=shown),
            ax=axes.ravel().tolist(),
            shrink=0.6,
            pad=0.02,
        )
        bar.set_label("model size N (billions of parameters)")
    fig.suptitle(
        "Training curves and the compute frontier Cmin"
        + _title_note(where)
        + (
            " (line style: "
            + ", ".join(f"{LINESTYLES[i % 4]!r} {lab}" for i, lab in enumerate(distinct))
            + ")"
            if run_labels and labels is not None
            else ""
        )
    )
    return fig


def plot_compare(
    fits_a: Sequence[FitResult], fits_b: Sequence[FitResult], against: str, names: tuple[str, str]
) -> plt.Figure:
    """Two studies' laws against `against` ("N" or "Cmin") in one figure, one panel per metric
    fitted in both: each study's fitted points, law and bootstrap band.

    The y-axis is the metric itself (each law with its own E), so studies with different E
    share one scale; the legend gives each law and E.
    """
    pairs = [
        (a, b)
        for a in fits_a
        if a.against == against
        for b in fits_b
        if b.against == against and b.metric == a.metric
    ]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False, layout="constrained")
    for ax, (a, b) in zip(axes.flat, pairs):
        xs_all, ys_all = [], []
        for fit, name, colour, marker in ((a, names[0], "C0", "o"), (b, names[1], "C1", "s")):
            x, y = fit.points["x"].to_numpy(float), fit.points["y"].to_numpy(float)
            ax.plot(
                x,
                y,
                marker,
                color=colour,
                ms=5,
                mfc="none" if against == "Cmin" else colour,
                label=f"{name}: " + ("final evaluations" if against == "N" else "frontier points"),
            )
            xs = np.geomspace(x.min() / 1.2, x.max() * 1.2, 100)
            E = fit.law.E if abs(fit.law.E) > 1e-9 else 0.0
            alpha_ci = (
                "" if fit.alpha_ci is None else f" [{fit.alpha_ci[0]:.3g}, {fit.alpha_ci[1]:.3g}]"
            )
            ax.plot(
                xs,
                fit.law.predict(xs),
                "-",
                color=colour,
                lw=1.6,
                label=f"{name}: alpha = {fit.law.alpha:.3g}{alpha_ci}"
                + (f", E = {E:.3g}" if E else ""),
            )
            _band(ax, fit, xs, 0.0, colour, None)
            xs_all.append(xs)
            ys_all.append(y)
        ax.set_xlabel(X_LABELS[against])
        ax.set_ylabel(LABELS.get(a.metric, a.metric) + " (each law with its own E)")
        _finish(ax, np.concatenate(xs_all), np.concatenate(ys_all))
    for ax in list(axes.flat)[len(pairs) :]:
        ax.set_visible(False)
    what = "model size N" if against == "N" else "compute (Cmin frontier)"
    fig.suptitle(
        f"{names[0]} vs {names[1]}: scaling with {what}, {pairs[0][0].level:.0%} bootstrap bands"
        if pairs
        else f"{names[0]} vs {names[1]}"
    )
    return fig


def save_figure(fig: plt.Figure, path_stem: str | Path, formats=("png", "pdf")) -> list[Path]:
    """Write `fig` as <path_stem>.png and .pdf (150 dpi PNG); closes it; returns the paths."""
    paths = []
    for fmt in formats:
        path = Path(f"{path_stem}.{fmt}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def plot_samples_vs_n(
    table: pd.DataFrame, floors: dict[str, dict[str, float]] | None = None
) -> plt.Figure | None:
    """Sample quality (scaling.sample_eval's columns) of each run's last sample evaluation
    against N, one panel per metric present; None when the table has none. Measured points
    only (fit them with ``scaling.fit --set metrics=[sample_fd,sample_err]`` or ``fid``).

    `floors`: reference scores drawn as horizontal lines, {name: {metric: value}} (e.g. real
    training images and their VQVAE reconstructions: what a perfect sampler would score)."""
    panels = [
        (c, label) for c, label in SAMPLE_PANELS if c in table.columns and table[c].notna().any()
    ]
    if not panels or "params" not in table.columns:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (col, label) in zip(axes[0], panels):
        rows = table[table[col].notna()].sort_values("step" if "step" in table.columns else col)
        last = rows.groupby("run", sort=False).tail(1).sort_values("params")
        x = last["params"].to_numpy(float) / X_SCALE["N"]
        y = last[col].to_numpy(float)
        ax.plot(x, y, "o-", color="C0", label="VAR samples")
        for xi, yi, run in zip(x, y, last["run"]):
            ax.annotate(str(run), (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
        for (name, values), style in zip((floors or {}).items(), (":", "--", "-.")):
            if col in values:
                ax.axhline(values[col], color="0.35", ls=style, lw=1.2, label=name)
        if floors:
            ax.legend(fontsize=7, loc="best")
        ax.set_xscale("log")
        _readable_log_axis(ax.xaxis, float(x.min()), float(x.max()))
        ax.set_xlabel(X_LABELS["N"])
        ax.set_title(label, fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
    settings = table[table[panels[0][0]].notna()].iloc[-1]
    extra = ", ".join(
        f"{k.replace('sample_', '')} {settings[k]:g}"
        for k in ("sample_count", "sample_cfg", "sample_top_k", "sample_top_p")
        if k in table.columns and pd.notna(settings[k])
    )
    fig.suptitle(
        f"Sample quality against model size ({extra})"
        if extra
        else "Sample quality against model size"
    )
    fig.tight_layout()
    return fig
