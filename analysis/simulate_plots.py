"""Figures of the study planner: simulated exponents per design, and the evaluation schedule."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt  # no backend chosen here (notebooks keep theirs); the CLI chooses
import numpy as np

from .paper import X_SCALE


def plot_exponents(designs: Sequence[tuple[str, list]], metric: str) -> plt.Figure:
    """One panel per law (vs N, vs Cmin): the fitted exponents of every simulated study, one
    violin per design (the planned grid first), the prior's exponent as a dashed line.

    designs: [(name, [analysis.simulate.LawSummary, ...])].
    """
    against = [s.against for s in designs[0][1] if s.metric == metric]
    fig, axes = plt.subplots(1, len(against), figsize=(5.5 * len(against), 0.55 * len(designs) + 2.2),
                             squeeze=False, layout="constrained")
    names = [name for name, _ in designs]
    for ax, a in zip(axes[0], against):
        data, prior = [], None
        for _, res in designs:
            s = next(r for r in res if r.against == a and r.metric == metric)
            data.append(s.alphas if len(s.alphas) else np.array([np.nan]))
            prior = s.prior_alpha
        pos = np.arange(len(designs))[::-1]
        parts = ax.violinplot(data, positions=pos, vert=False, showmedians=True, widths=0.8)
        for i, body in enumerate(parts["bodies"]):
            body.set_facecolor("C3" if i == 0 else "C0")
            body.set_alpha(0.5)
        ax.axvline(prior, ls="--", color="0.3", lw=1.2, label=f"prior alpha = {prior:.4g}")
        ax.set_yticks(pos)
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xlabel(f"fitted exponent alpha of {metric} vs {a}")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Simulated exponents: the planned grid (red) and alternatives ({metric})")
    return fig


def plot_eval_points(runs: Sequence[tuple[str, np.ndarray, float]]) -> plt.Figure:
    """Planned full evaluations of every run on a compute axis (PFLOPs, log), one row per run.

    runs: [(run_id, eval compute [k] in FLOPs, params)].
    """
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(runs) + 1.6), layout="constrained")
    for i, (run_id, c, params) in enumerate(runs):
        c = np.asarray(c, float) / X_SCALE["Cmin"]
        ax.plot(c, np.full_like(c, i), "|", ms=9, color="C0")
        ax.plot(c[-1:], [i], "o", ms=5, color="C3")
        ax.hlines(i, c[0], c[-1], color="0.7", lw=0.8, zorder=0)
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels([f"{r} ({p / 1e9:.3g}B)" for r, _, p in runs], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training compute at the evaluation (PFLOPs)")
    ax.set_title("Planned full evaluations per run (|), final step (o)")
    ax.grid(True, axis="x", which="both", alpha=0.25)
    return fig
