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
version with the same law and design.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=0.005)
    parser.add_argument("--seed0", type=int, default=7000)
    args = parser.parse_args()
    run((1, 4), args)
    run((1,), args)


if __name__ == "__main__":
    main()
