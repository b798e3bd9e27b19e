"""Validate the repetition-aware law's fitter on tables drawn from a known law with noise.

    python scripts/validation/repeatlaw_validation.py [--repeats 100] [--bootstrap 100]
        [--sigma 0.005]

Draws `repeats` tables from TRUE (4 sizes 1e4-1e6 x 2 unique-token counts 3e5, 3e6 x 4
epochs 1, 4, 16, 64 x 2 stored views 1, 4, crossed: 64 runs; log-normal noise sigma;
analysis.synthetic.repeat_law_table), fits each (analysis.repeatlaw.fit_repeat_table) and
prints (1) recovery: the median and 90th-percentile absolute error of alpha, beta, R* and
V*; (2) coverage: how often the 95% bootstrap interval contains the true value (an interval
open above counts as covering when its lower end is below the truth). A second design
without views (K = 1) checks R* alone. tests/analysis/test_repeatlaw.py runs a reduced
version with the same law and design. ``--design demo_data`` draws the runs of
sweeps/demo_data.yaml instead (families of a run and its decay branches share their noise)
and says how often R* and V* are identified and covered.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from analysis.repeatlaw import RepeatLaw, fit_repeat_table
from analysis.results import prepare
from analysis.synthetic import repeat_law_table

TRUE = RepeatLaw(E=1.8, A=60.0, alpha=0.34, B=80.0, beta=0.28, R_star=15.0, V_star=2.0)
SIZES = np.geomspace(1e4, 1e6, 4)
UNIQUE = [3e5, 3e6]
EPOCHS = [1, 4, 16, 64]


def run(views: tuple[int, ...], args: argparse.Namespace) -> None:
    """Fit `args.repeats` tables of the design with `views` and print errors and coverage."""
    names = ("alpha", "beta", "R_star") + (("V_star",) if len(views) > 1 else ())
    errors: dict[str, list[float]] = {k: [] for k in names}
    covered = {k: 0 for k in names}
    for r in range(args.repeats):
        table = repeat_law_table(
            TRUE, SIZES, UNIQUE, EPOCHS, views=views, sigma=args.sigma, seed=args.seed0 + r
        )
        fit = fit_repeat_table(prepare(table, ["ce_avg"]), bootstrap=args.bootstrap, seed=r)
        for k in names:
            est = getattr(fit.law, k)
            errors[k].append(abs(est - getattr(TRUE, k)) if est is not None else math.inf)
            ci = fit.ci(k)
            if ci is not None:
                hi = math.inf if ci[1] is None else ci[1]
                covered[k] += ci[0] <= getattr(TRUE, k) <= hi
    n_runs = len(SIZES) * len(UNIQUE) * len(EPOCHS) * len(views)
    print(
        f"\n{args.repeats} tables, {n_runs} runs each (views {list(views)}), noise sigma "
        f"{args.sigma}, {args.bootstrap} bootstrap draws\n"
    )
    print("| parameter | true | median abs error | 90th pct abs error | 95% interval covers |")
    print("|---|---|---|---|---|")
    for k in names:
        e = np.array(errors[k])
        print(
            f"| {k} | {getattr(TRUE, k):g} | {np.median(e):.4g} | {np.quantile(e, 0.9):.4g} "
            f"| {covered[k]}/{args.repeats} |"
        )


def demo_data(args: argparse.Namespace) -> None:
    """The design of sweeps/demo_data.yaml (2 sizes; subsets of 100, 300, 1,000, 10,000
    images; 2,500, 5,000, 10,000 and 20,000 images seen through a run's decay branches; 1 or
    4 views; L = 30), drawn from TRUE with noise `args.sigma`: how well it tells R* and V*."""
    L = 30
    sizes = [50_340.0, 146_713.0]  # the demo's d2 and d3 (params)
    rows = []
    for N in sizes:
        for subset in (100, 300, 1_000, 10_000):
            for K in (1, 4):
                for seen in (2_500, 5_000, 10_000, 20_000):
                    rows.append((N, seen * L, subset * L, K, f"N{N:g}-n{subset}-k{K}"))
    N, D, U, K, fam = (np.array([r[i] for r in rows]) for i in range(5))
    names = ("alpha", "beta", "R_star", "V_star")
    errors: dict[str, list[float]] = {k: [] for k in names}
    covered = {k: 0 for k in names}
    told = {k: 0 for k in names}
    given = {k: 0 for k in names}
    rng = np.random.default_rng(args.seed0)
    for r in range(args.repeats):
        mean = TRUE.predict(N, D, U, K)
        # a run and its branches share one seed's noise: one draw per family
        _, inv = np.unique(fam, return_inverse=True)
        noise = rng.standard_normal(inv.max() + 1)[inv]
        table = pd.DataFrame(
            {
                "run": [f"{f}-{d:g}" for f, d in zip(fam, D)],
                "family": fam,
                "params": N,
                "step": 1,
                "tokens": D,
                "unique_tokens": U,
                "views": K.astype(float),
                "flops": 6.0 * N * D,
                "ce_avg": mean * np.exp(args.sigma * noise),
            }
        )
        fit = fit_repeat_table(prepare(table, ["ce_avg"]), bootstrap=args.bootstrap, seed=r)
        rec = fit.to_dict()
        for k in names:
            est = rec[k]
            if est is None:
                errors[k].append(math.inf)
                continue
            told[k] += 1
            errors[k].append(abs(est - getattr(TRUE, k)))
            ci = rec[f"{k}_ci"]
            if ci is not None:
                given[k] += 1
                hi = math.inf if ci[1] is None else ci[1]
                covered[k] += ci[0] <= getattr(TRUE, k) <= hi
    print(
        f"\nthe demo_data design (64 runs: 16 parents + 48 branches, families share noise), "
        f"{args.repeats} tables, noise sigma {args.sigma}, {args.bootstrap} bootstrap draws\n"
    )
    print(
        "| parameter | true | identified | median abs error | interval given "
        "| 95% interval covers (of given) |"
    )
    print("|---|---|---|---|---|---|")
    for k in names:
        e = np.array(errors[k])
        print(
            f"| {k} | {getattr(TRUE, k):g} | {told[k]}/{args.repeats} | {np.median(e):.4g} "
            f"| {given[k]}/{args.repeats} | {covered[k]}/{given[k]} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=0.005)
    parser.add_argument("--seed0", type=int, default=7000)
    parser.add_argument(
        "--design", choices=("grid", "demo_data"), default="grid", help="the runs drawn"
    )
    args = parser.parse_args()
    if args.design == "demo_data":
        demo_data(args)
        return
    run((1, 4), args)
    run((1,), args)


if __name__ == "__main__":
    main()
