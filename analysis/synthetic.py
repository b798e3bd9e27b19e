"""Synthetic tidy tables drawn from known laws: for tests, docs and trying the fitting CLI.

`final_points_table` gives one final evaluation per model size from laws vs N;
`training_curves_table` gives whole training curves whose Pareto frontier follows laws vs
Cmin exactly (before noise). Noise is log-normal: every value is multiplied by
exp(sigma * z), z standard normal (on the reducible part for losses).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .paper import METRICS, PAPER_LAWS, X_SCALE, PaperLaw

# the paper's 12 sizes: even depths 6..30 without d28 (one of 13 must go), N ~ 73728 d^3
PAPER_DEPTHS = (6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 30)


def paper_sizes(depths=PAPER_DEPTHS) -> np.ndarray:
    """Approximate parameter counts of the paper's grid (main params 73728 * depth^3);
    [len(depths)]."""
    return 73728.0 * np.asarray(depths, dtype=float) ** 3


def _laws(against: str, laws: dict[str, PaperLaw] | None) -> dict[str, PaperLaw]:
    if laws is not None:
        return laws
    return {law.metric: law for law in PAPER_LAWS if law.against == against}


def final_points_table(
    sizes=None, sigma: float = 0.01, seed: int = 0, laws: dict[str, PaperLaw] | None = None
) -> pd.DataFrame:
    """One row per model size: the metrics drawn from the laws vs N (default: the paper's).

    sizes: [R] parameter counts (default `paper_sizes()`). Returns a tidy table with columns
    run, params, step, tokens, flops, flops_6nd and the four metrics.
    """
    sizes = paper_sizes() if sizes is None else np.asarray(sizes, dtype=float)
    laws = _laws("N", laws)
    rng = np.random.default_rng(seed)
    x = sizes / X_SCALE["N"]
    tokens = np.full_like(sizes, 3e11)
    table = pd.DataFrame(
        {
            "run": [f"n{i:02d}" for i in range(len(sizes))],
            "params": sizes.astype(np.int64),
            "step": 100000,
            "tokens": tokens,
            "flops": 6 * sizes * tokens,
            "flops_6nd": 6 * sizes * tokens,
        }
    )
    for metric in METRICS:
        law = laws[metric]
        table[metric] = law.E + law.reducible(x) * np.exp(sigma * rng.standard_normal(len(x)))
    return table


def training_curves_table(
    sizes=None,
    c_range=(30.0, 3e7),
    evals: int = 12,
    sigma: float = 0.01,
    seed: int = 0,
    laws: dict[str, PaperLaw] | None = None,
    curvature: float = 0.3,
) -> pd.DataFrame:
    """Training curves whose lower envelope is the laws vs Cmin (default: the paper's).

    Run r (sizes ascending) lies exactly on the law for compute (PFLOPs) in its own band
    [c_r, c_{r+1}] (log-spaced bands over `c_range`) and above it elsewhere: in ln C units
    u, ``ln y_r(u) = ln law(u) + k * (gap below the band)^2 + k * (gap above it)^2`` with
    k = curvature * |alpha|, so every curve still decreases. Each run is evaluated `evals`
    times (log-spaced) from 1.5 bands before its band to 0.5 band after it, clipped to
    `c_range`, so the frontier is the law over the whole range. Returns a tidy table (flops
    in FLOPs, tokens = flops / (6 params)).
    """
    sizes = paper_sizes() if sizes is None else np.asarray(sizes, dtype=float)
    laws = _laws("Cmin", laws)
    rng = np.random.default_rng(seed)
    R = len(sizes)
    edges = np.linspace(np.log(c_range[0]), np.log(c_range[1]), R + 1)
    width = edges[1] - edges[0]
    rows = []
    for r in range(R):
        lo, hi = edges[r], edges[r + 1]
        # the first run starts and the last ends at the range's edges, so the envelope is the law
        # there
        u = np.linspace(max(lo - 1.5 * width, edges[0]), min(hi + 0.5 * width, edges[-1]), evals)
        c = np.exp(u)
        below = np.clip(lo - u, 0, None)
        above = np.clip(u - hi, 0, None)
        flops = c * X_SCALE["Cmin"]
        tokens = flops / (6 * sizes[r])
        cols = {
            "run": f"c{r:02d}",
            "params": int(sizes[r]),
            "step": np.arange(1, evals + 1) * 1000,
            "tokens": tokens,
            "flops": flops,
            "flops_6nd": flops,
        }
        for metric in METRICS:
            law = laws[metric]
            k = curvature * abs(law.alpha)
            red = law.reducible(c) * np.exp(k * below**2 + k * above**2)
            cols[metric] = law.E + red * np.exp(sigma * rng.standard_normal(evals))
        rows.append(pd.DataFrame(cols))
    return pd.concat(rows, ignore_index=True)


def study_table(
    sizes=None, sigma: float = 0.01, seed: int = 0, evals: int = 24, curvature: float = 0.3
) -> pd.DataFrame:
    """A whole study drawn from the paper's laws: each run's final evaluation follows the
    laws vs N, and the Pareto frontier of all training curves follows the laws vs Cmin.

    Run r ends at the compute where its final loss lies on (last run) or above (others, 2x
    further) the Cmin laws of both losses. Before that it follows a Cmin law exactly over its
    own band of compute (bands tile the frontier) and lies above it elsewhere (quadratic in
    ln C before the band, a straight line in log-log from the band's end to its final value
    after it). Error rates follow the same construction, but the paper's error-rate laws are
    not consistent with each other at the largest sizes (the N law asks for less error than
    the Cmin law allows at that compute), so their finals are clipped to the Cmin law there.
    Noise: log-normal with `sigma` on the reducible part, independent per evaluation.
    Returns a tidy table (flops in FLOPs, tokens = flops / (6 params), finished = True).
    """
    sizes = paper_sizes() if sizes is None else np.sort(np.asarray(sizes, dtype=float))
    lawN, lawC = _laws("N", None), _laws("Cmin", None)
    rng = np.random.default_rng(seed)
    R = len(sizes)
    x = sizes / X_SCALE["N"]
    losses = [m for m in METRICS if m.startswith("ce")]
    final_red = {m: lawN[m].reducible(x) for m in METRICS}
    # ln C (PFLOPs) at which each loss's Cmin law equals the run's final value
    u_star = np.array(
        [
            [np.log(final_red[m][r]) / lawC[m].alpha - np.log(lawC[m].beta) for m in losses]
            for r in range(R)
        ]
    )
    U = u_star.max(axis=1) + np.where(np.arange(R) < R - 1, np.log(2.0), 0.0)  # final ln C
    b = u_star.min(axis=1) - 0.05  # band ends, before every loss's crossing
    a = np.concatenate([[b[0] - (b[1] - b[0])], b[:-1]])  # band starts: the bands tile
    rows = []
    for r in range(R):
        start = max(a[0], a[r] - 1.5 * (b[r] - a[r]))  # the first run starts the frontier
        u = np.linspace(start, U[r], evals)
        cols = {
            "run": f"s{r:02d}",
            "params": int(sizes[r]),
            "step": np.arange(1, evals + 1) * 1000,
            "flops": np.exp(u) * X_SCALE["Cmin"],
        }
        cols["tokens"] = cols["flops"] / (6 * sizes[r])
        cols["flops_6nd"] = cols["flops"]
        for m in METRICS:
            law = lawC[m]
            ln_law = law.alpha * (np.log(law.beta) + u)
            ln_b = law.alpha * (np.log(law.beta) + b[r])
            ln_end = law.alpha * (np.log(law.beta) + U[r])
            ln_final = min(max(np.log(final_red[m][r]), ln_end), ln_b)  # monotone, on/above the law
            k = curvature * abs(law.alpha)
            before = ln_law + k * np.clip(a[r] - u, 0, None) ** 2
            after = ln_b + (ln_final - ln_b) * (u - b[r]) / (U[r] - b[r])
            ln_red = np.where(u < a[r], before, np.where(u <= b[r], ln_law, after))
            cols[m] = law.E + np.exp(ln_red + sigma * rng.standard_normal(evals))
        rows.append(pd.DataFrame(cols))
    table = pd.concat(rows, ignore_index=True)
    table["finished"] = True
    return table


def joint_law_table(
    law,
    sizes,
    data_per_size,
    sigma: float = 0.005,
    seed: int = 0,
    tokens_per_image: int = 30,
    flops_per_token=lambda N: 6.0 * N,
) -> pd.DataFrame:
    """Final points drawn from a joint law (`analysis.jointlaw.JointLaw`, D in tokens).

    sizes [S] params; data_per_size [P] tokens, crossed with the sizes (one run per pair, as
    a WSD run with decay branches gives). The loss is law.predict(N, D) * exp(sigma * z).
    Columns run, params, step, tokens, images, flops, ce_avg.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.asarray(sizes, float):
        for D in np.asarray(data_per_size, float):
            loss = float(law.predict(N, D)) * float(np.exp(sigma * rng.standard_normal()))
            rows.append(
                {
                    "run": f"N{N:.4g}-D{D:.4g}",
                    "params": N,
                    "step": 1,
                    "tokens": D,
                    "images": D / tokens_per_image,
                    "flops": flops_per_token(N) * D,
                    "ce_avg": loss,
                }
            )
    return pd.DataFrame(rows)


def repeat_law_table(
    law,
    sizes,
    unique_tokens,
    epochs,
    views=(1,),
    sigma: float = 0.005,
    seed: int = 0,
    tokens_per_image: int = 30,
    flops_per_token=lambda N: 6.0 * N,
) -> pd.DataFrame:
    """Final points drawn from a repetition-aware law (`analysis.repeatlaw.RepeatLaw`).

    sizes [S] params, unique_tokens [P] (the training split's images x tokens per image),
    epochs [Q] passes over the images and views [V] stored views per image, crossed (one run
    each; D = unique tokens x epochs). The loss is law.predict(N, D, U, K) * exp(sigma * z).
    Columns run, params, step, tokens, images, unique_tokens, views, flops, ce_avg.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for N in np.asarray(sizes, float):
        for U in np.asarray(unique_tokens, float):
            for ep in np.asarray(epochs, float):
                for K in views:
                    D = U * ep
                    mean = float(law.predict(N, D, U, K))
                    rows.append(
                        {
                            "run": f"N{N:.4g}-U{U:.4g}-e{ep:g}-K{K}",
                            "params": N,
                            "step": 1,
                            "tokens": D,
                            "images": D / tokens_per_image,
                            "unique_tokens": U,
                            "views": float(K),
                            "flops": flops_per_token(N) * D,
                            "ce_avg": mean * float(np.exp(sigma * rng.standard_normal())),
                        }
                    )
    return pd.DataFrame(rows)
