"""Figures of the study planner: simulated exponents per design, and the evaluation schedule."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt  # no backend chosen here (notebooks keep theirs); the CLI chooses
import numpy as np
from matplotlib.ticker import MaxNLocator

from .paper import X_SCALE


def plot_exponents(designs: Sequence[tuple[str, list]], metric: str) -> plt.Figure:
    """One panel per exponent (vs N, vs Cmin, and the joint law's alpha and beta where some
    design plans it): the fitted exponents of every simulated study, one violin per design (the
    planned grid first; empty where the design does not plan that law), the prior's exponent
    as a dashed line.

    designs: [(name, [analysis.simulate.LawSummary, ...])].
    """
    keys, priors = [], {}
    for _, res in designs:
        for s in res:
            if s.metric == metric and s.key not in keys:
                keys.append(s.key)
                priors[s.key] = s.prior_alpha
    fig, axes = plt.subplots(
        1,
        len(keys),
        figsize=(5.0 * len(keys), 0.55 * len(designs) + 2.2),
        squeeze=False,
        layout="constrained",
    )
    names = [name for name, _ in designs]
    pos = np.arange(len(designs))[::-1]
    for ax, key in zip(axes[0], keys):
        data = []
        for _, res in designs:
            s = next((r for r in res if r.key == key and r.metric == metric), None)
            data.append(s.alphas if s is not None and len(s.alphas) else np.array([np.nan]))
        shown = [i for i, d in enumerate(data) if np.isfinite(d).any()]
        if shown:
            parts = ax.violinplot(
                [data[i] for i in shown],
                positions=pos[shown],
                vert=False,
                showmedians=True,
                widths=0.8,
            )
            for i, body in zip(shown, parts["bodies"]):
                body.set_facecolor("C3" if i == 0 else "C0")
                body.set_alpha(0.5)
        name = "alpha" if key[0] != "ND" else key[1]
        ax.axvline(
            priors[key], ls="--", color="0.3", lw=1.2, label=f"prior {name} = {priors[key]:.4g}"
        )
        ax.set_yticks(pos)
        ax.set_yticklabels(names if ax is axes[0][0] else [], fontsize=8)
        law = f"vs {key[0]}" if key[0] != "ND" else f"L(N, D), {'N' if key[1] == 'alpha' else 'D'}"
        ax.set_xlabel(f"fitted exponent {name} of {metric} {law}")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Simulated exponents: the planned grid (red) and alternatives ({metric})")
    return fig


def plot_eval_points(runs: Sequence[tuple[str, np.ndarray, float]]) -> plt.Figure:
    """Planned full evaluations of every run on a compute axis (PFLOPs, log), one row per run.

    runs: [(run_id, eval compute [k] in FLOPs, params)].
    """
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(runs) + 1.6), layout="constrained")
    for i, (_, c, _) in enumerate(runs):
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
