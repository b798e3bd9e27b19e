"""Log-log figures in the paper's layout: metrics vs N, and training curves with the Cmin frontier.

Losses are drawn as the reducible part (metric - E), the quantity the law describes, and the
axis label says which E was subtracted and whether it was fitted. Every law carries its
bootstrap band (`analysis.compare.law_band`); with a hold-out check (k > 0) the law fitted
without the k largest models is drawn with its predictions of them. The paper's laws are
dotted black. `plot_compare` draws two studies' laws in one figure. Compute is in PFLOPs, N
in billions of parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window (also on headless cluster nodes)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import ticker  # noqa: E402

from .compare import law_band  # noqa: E402
from .paper import X_SCALE, paper_law  # noqa: E402
from .powerlaw import FitResult  # noqa: E402

LABELS = {"ce_avg": "test loss, average over scales", "ce_last": "test loss, last scale",
          "err_avg": "token error rate, average", "err_last": "token error rate, last scale"}
X_LABELS = {"N": "N (billions of parameters)", "Cmin": "compute (PFLOPs)"}


def _readable_log_axis(axis, lo: float, hi: float) -> None:
    """Log axis whose labels stay readable when the data spans less than ~1.5 decades."""
    if hi / lo < 10 ** 1.5:
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


def _band(ax, fit: FitResult, xs: np.ndarray, shift: float, color: str, label: str | None) -> None:
    """The law's bootstrap band (minus `shift`); points where it is not positive are left out
    of the log axis."""
    band = law_band(fit, xs)
    if band is None:
        return
    lo, hi = band[0] - shift, band[1] - shift
    ok = hi > 0
    lo = np.where(lo > 0, lo, np.nan)
    ax.fill_between(xs[ok], lo[ok], hi[ok], color=color, alpha=0.18, lw=0,
                    label=label and f"{label} ({fit.level:.0%} bootstrap band, {fit.bootstrap_valid} draws)")


def _holdout(ax, fit: FitResult, xs: np.ndarray) -> None:
    """The law fitted without the k largest models, and its predictions of their points."""
    hold = fit.holdout
    if hold is None or not len(hold.points):
        return
    E = fit.law.E
    ax.plot(xs, hold.law.predict(xs) - E, "-.", color="C2", lw=1.2,
            label=f"fit without the {hold.k} largest (hold-out), max err "
                  f"{100 * hold.max_abs_rel_error:.1f}%")
    pts = hold.points
    ax.plot(pts["x"], pts["predicted"].to_numpy(float) - E, "x", color="C2", ms=7, mew=1.5,
            label="its predictions of the held-out points")
    ax.plot(pts["x"], pts["y"].to_numpy(float) - E, "s", mfc="none", color="C2", ms=8, mew=1.2,
            label="held-out points (measured)")


def _paper_line(ax, fit: FitResult, xs: np.ndarray) -> None:
    try:
        law = paper_law(fit.metric, fit.against)
    except KeyError:
        return
    # same y quantity as the plotted points: the metric minus the E of *our* fit
    y = law.predict(xs) - fit.law.E
    if (y > 0).all():
        ax.plot(xs, y, ":", color="k", lw=1.6, alpha=0.7,
                label=f"paper (ImageNet): ({law.beta:.3g} {fit.against})^{law.alpha:.3g}" + (f", E={law.E:g}" if law.E else ""))


def _finish(ax, x: np.ndarray, y: np.ndarray) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    _readable_log_axis(ax.xaxis, float(x.min()), float(x.max()))
    _readable_log_axis(ax.yaxis, float(y.min()), float(y.max()))
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")


def plot_vs_n(fits: Sequence[FitResult], paper: bool = False) -> plt.Figure:
    """2x2 figure (one panel per metric): final points, fitted line, equation and r in the legend."""
    fits = [f for f in fits if f.against == "N"]
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), squeeze=False, layout="constrained")
    for ax, fit in zip(axes.flat, fits):
        x, y = fit.points["x"].to_numpy(), fit.points["y"].to_numpy() - fit.law.E
        if fit.seed_spread is not None:  # seed replicates: mean of the seeds, +-1 seed-to-seed sd
            sp = fit.seed_spread.sort_values("params")
            sd = np.nan_to_num(sp["sd"].to_numpy(float))
            ax.errorbar(sp["params"].to_numpy(float) / X_SCALE["N"], sp["mean"].to_numpy(float) - fit.law.E,
                        yerr=sd, fmt="o", color="C0", ms=5, capsize=3,
                        label=f"mean of {int(sp['n_seeds'].max())} seeds per size, +-1 sd")
        else:
            ax.plot(x, y, "o", color="C0", ms=5, label="final evaluation of each run")
        xs = np.geomspace(x.min() / 1.3, x.max() * 1.3, 100)
        ax.plot(xs, fit.law.predict(xs) - fit.law.E, "-", color="C3", lw=1.5,
                label=f"{fit.equation()}, r={fit.r:.4f}")
        _band(ax, fit, xs, fit.law.E, "C3", "law")
        _holdout(ax, fit, xs)
        if paper:
            _paper_line(ax, fit, xs)
        ax.set_xlabel(X_LABELS["N"])
        ax.set_ylabel(_ylabel(fit))
        _finish(ax, np.concatenate([x, xs]), y)
    for ax in list(axes.flat)[len(fits):]:
        ax.set_visible(False)
    fig.suptitle("Scaling with model size N")
    return fig


def plot_vs_cmin(fits: Sequence[FitResult], table: pd.DataFrame, paper: bool = False) -> plt.Figure:
    """One panel per metric: every run's training curve (colour by size), the frontier, the fit.

    table: the prepared tidy table the fits came from (columns run, params, compute, metrics).
    """
    fits = [f for f in fits if f.against == "Cmin"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False, layout="constrained")
    sizes = table.groupby("run")["params"].max().sort_values(kind="stable") / X_SCALE["N"]
    cmap = plt.get_cmap("plasma")
    norm = matplotlib.colors.LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.01))
    colours = {run: cmap(0.85 * norm(v)) for run, v in sizes.items()}  # skip the palest yellow
    for ax, fit in zip(axes.flat, fits):
        E = fit.law.E
        all_y = [fit.points["y"].to_numpy() - E]
        for run in sizes.index:
            df = table[table["run"] == run].sort_values("compute")
            y = df[fit.metric].to_numpy(float) - E
            ok = y > 0
            ax.plot(df["compute"].to_numpy()[ok] / X_SCALE["Cmin"], y[ok], "-", color=colours[run], lw=1,
                    alpha=0.85)
            all_y.append(y[ok])
        fr = fit.points
        ax.plot(fr["x"], fr["y"] - E, "o", ms=4, mfc="none", mew=1.2, color="k", label="frontier points (fitted)")
        x = fr["x"].to_numpy()
        xs = np.geomspace(x.min(), x.max(), 100)
        ax.plot(xs, fit.law.predict(xs) - E, "-", color="C3", lw=2, label=f"{fit.equation()}, r={fit.r:.4f}")
        _band(ax, fit, xs, E, "C3", "law")
        _holdout(ax, fit, xs)
        if paper:
            _paper_line(ax, fit, xs)
        ax.set_xlabel(X_LABELS["Cmin"])
        ax.set_ylabel(_ylabel(fit))
        all_x = table["compute"].to_numpy(float) / X_SCALE["Cmin"]
        _finish(ax, all_x, np.concatenate(all_y))
    for ax in list(axes.flat)[len(fits):]:
        ax.set_visible(False)
    if fits:
        shown = matplotlib.colors.ListedColormap(cmap(np.linspace(0, 0.85, 256)))
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=shown), ax=axes.ravel().tolist(),
                           shrink=0.6, pad=0.02)
        bar.set_label("model size N (billions of parameters)")
    fig.suptitle("Training curves and the compute frontier Cmin")
    return fig


def plot_compare(fits_a: Sequence[FitResult], fits_b: Sequence[FitResult], against: str,
                 names: tuple[str, str]) -> plt.Figure:
    """Two studies' laws against `against` ("N" or "Cmin") in one figure, one panel per metric
    fitted in both: each study's fitted points, law and bootstrap band.

    The y-axis is the metric itself (each law with its own E), so studies with different E
    share one scale; the legend gives each law and E.
    """
    pairs = [(a, b) for a in fits_a if a.against == against
             for b in fits_b if b.against == against and b.metric == a.metric]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False, layout="constrained")
    for ax, (a, b) in zip(axes.flat, pairs):
        xs_all, ys_all = [], []
        for fit, name, colour, marker in ((a, names[0], "C0", "o"), (b, names[1], "C1", "s")):
            x, y = fit.points["x"].to_numpy(float), fit.points["y"].to_numpy(float)
            ax.plot(x, y, marker, color=colour, ms=5, mfc="none" if against == "Cmin" else colour,
                    label=f"{name}: " + ("final evaluations" if against == "N" else "frontier points"))
            xs = np.geomspace(x.min() / 1.2, x.max() * 1.2, 100)
            E = fit.law.E if abs(fit.law.E) > 1e-9 else 0.0
            alpha_ci = "" if fit.alpha_ci is None else \
                f" [{fit.alpha_ci[0]:.3g}, {fit.alpha_ci[1]:.3g}]"
            ax.plot(xs, fit.law.predict(xs), "-", color=colour, lw=1.6,
                    label=f"{name}: alpha = {fit.law.alpha:.3g}{alpha_ci}" + (f", E = {E:.3g}" if E else ""))
            _band(ax, fit, xs, 0.0, colour, None)
            xs_all.append(xs)
            ys_all.append(y)
        ax.set_xlabel(X_LABELS[against])
        ax.set_ylabel(LABELS.get(a.metric, a.metric) + " (each law with its own E)")
        _finish(ax, np.concatenate(xs_all), np.concatenate(ys_all))
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_visible(False)
    what = "model size N" if against == "N" else "compute (Cmin frontier)"
    fig.suptitle(f"{names[0]} vs {names[1]}: scaling with {what}, {pairs[0][0].level:.0%} "
                 f"bootstrap bands" if pairs else f"{names[0]} vs {names[1]}")
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


SAMPLE_PANELS = (("sample_acc", "class accuracy of samples (demo classifier)"),
                 ("sample_fd", "Frechet distance to val, classifier features"),
                 ("fid", "FID"), ("is", "Inception Score"), ("precision", "precision"), ("recall", "recall"))


def plot_samples_vs_n(table: pd.DataFrame) -> plt.Figure | None:
    """Sample quality (scaling.sample_eval's columns) of each run's last sample evaluation
    against N, one panel per metric present; None when the table has none. Measured points
    only (fit them with ``scaling.fit --metrics sample_fd,sample_err`` or ``fid``)."""
    panels = [(c, label) for c, label in SAMPLE_PANELS if c in table.columns and table[c].notna().any()]
    if not panels or "params" not in table.columns:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (col, label) in zip(axes[0], panels):
        rows = table[table[col].notna()].sort_values("step" if "step" in table.columns else col)
        last = rows.groupby("run", sort=False).tail(1).sort_values("params")
        x = last["params"].to_numpy(float) / X_SCALE["N"]
        y = last[col].to_numpy(float)
        ax.plot(x, y, "o-", color="C0")
        for xi, yi, run in zip(x, y, last["run"]):
            ax.annotate(str(run), (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xscale("log")
        _readable_log_axis(ax.xaxis, float(x.min()), float(x.max()))
        ax.set_xlabel(X_LABELS["N"])
        ax.set_title(label, fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
    settings = table[table[panels[0][0]].notna()].iloc[-1]
    extra = ", ".join(f"{k.replace('sample_', '')} {settings[k]:g}" for k in ("sample_count", "sample_cfg",
                      "sample_top_k", "sample_top_p") if k in table.columns and pd.notna(settings[k]))
    fig.suptitle(f"Sample quality against model size ({extra})" if extra else "Sample quality against model size")
    fig.tight_layout()
    return fig
