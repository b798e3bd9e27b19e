"""Figures of the joint law: IsoFLOP curves and the compute-optimal N*(C), D*(C).

Built with matplotlib's object API (`matplotlib.figure.Figure`): no pyplot, no backend is
chosen or changed on import.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .jointlaw import JointFit, optimal


def isoflop_budgets(fit: JointFit, count: int = 4) -> np.ndarray:
    """`count` compute budgets (FLOPs) spread in log space over the runs' compute range."""
    c = fit.points["C"].to_numpy(float)
    return np.geomspace(c.min(), c.max(), count)


def plot_isoflop(fit: JointFit, budgets: Sequence[float] | None = None) -> Figure:
    """Loss against N at fixed compute: for each budget C the law along D = C / (k N^gamma),
    its minimum N*(C) marked; the runs' final points coloured by their own compute."""
    cs = isoflop_budgets(fit) if budgets is None else np.asarray(budgets, float)
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    p = fit.points
    n_lo, n_hi = p["N"].min() / 4, p["N"].max() * 4
    Ns = np.geomspace(n_lo, n_hi, 300)
    colors = [
        (0.1 + 0.8 * i / max(len(cs) - 1, 1), 0.3, 0.9 - 0.8 * i / max(len(cs) - 1, 1))
        for i in range(len(cs))
    ]
    for C, color in zip(cs, colors):
        D = C / fit.compute.k / Ns**fit.compute.gamma
        ax.plot(Ns, fit.law.predict(Ns, D), color=color, lw=1.5, label=f"C = {C:.2g} FLOPs")
        n_star, d_star = optimal(fit.law, fit.compute, [C])
        ax.plot(n_star, fit.law.predict(n_star, d_star), "*", color=color, ms=12, mec="k", mew=0.5)
    sc = ax.scatter(
        p["N"],
        p["L"],
        c=np.log10(p["C"]),
        cmap="viridis",
        s=22,
        zorder=3,
        edgecolors="k",
        linewidths=0.3,
    )
    fig.colorbar(sc, ax=ax, label="log10 compute of the point (FLOPs)")
    ax.set_xscale("log")
    ax.set_xlabel("N (parameters)")
    ax.set_ylabel(f"{fit.metric} (final, annealed)")
    lo, hi = p["L"].min(), p["L"].max()
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.3 * (hi - lo))
    ax.set_title("IsoFLOP curves of the fitted L(N, D); * = compute-optimal N")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_optimal(fit: JointFit, budgets: Sequence[float] | None = None) -> Figure:
    """N*(C) and D*(C) on log-log axes with their bootstrap bands; the runs' (C, N) and
    (C, D) as points."""
    p = fit.points
    cs = np.geomspace(p["C"].min() / 10, p["C"].max() * 1e4, 60) if budgets is None else budgets
    opt = fit.optimal(cs)
    C = np.asarray(opt["C"])
    fig = Figure(figsize=(10, 4.2))
    for i, (key, label, col) in enumerate(
        (("N", "N* (parameters)", "N"), ("D", f"D* (training {fit.d_unit})", "D"))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.plot(C, opt[key], color="C0", lw=2, label=f"{key}*(C)")
        band = opt[f"{key}_ci"]
        if band and all(b is not None for b in band):
            ax.fill_between(
                C,
                [b[0] for b in band],
                [b[1] for b in band],
                color="C0",
                alpha=0.2,
                label=f"{100 * fit.level:.0f}% bootstrap band",
            )
        ax.scatter(p["C"], p[col], s=16, color="k", zorder=3, label="runs (final points)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs, exact count)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Compute-optimal size and data from the joint law of {fit.metric}")
    fig.tight_layout()
    return fig
