"""Log-log figures in the paper's layout: metrics vs N, and training curves with the Cmin frontier.

Losses are drawn as the reducible part (metric - E), the quantity the law describes, and the
axis label says which E was subtracted. Compute is in PFLOPs, N in billions of parameters.
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
    return f"{label} - {fit.law.E:.3g}" if abs(fit.law.E) > 1e-9 else label


def _paper_line(ax, fit: FitResult, xs: np.ndarray) -> None:
    try:
        law = paper_law(fit.metric, fit.against)
    except KeyError:
        return
    # same y quantity as the plotted points: the metric minus the E of *our* fit
    y = law.predict(xs) - fit.law.E
    if (y > 0).all():
        ax.plot(xs, y, "--", color="0.45", lw=1.2,
                label=f"paper: ({law.beta:.3g} {fit.against})^{law.alpha:.3g}" + (f", E={law.E:g}" if law.E else ""))


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
        ax.plot(x, y, "o", color="C0", ms=5, label="final evaluation of each run")
        xs = np.geomspace(x.min() / 1.3, x.max() * 1.3, 100)
        ax.plot(xs, fit.law.predict(xs) - fit.law.E, "-", color="C3", lw=1.5,
                label=f"{fit.equation()}, r={fit.r:.4f}")
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
