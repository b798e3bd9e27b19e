"""Measure how often the fitter's 95% bootstrap interval covers the true exponent.

    python scripts/validation/bootstrap_coverage.py [--repeats 100] [--cmin-bootstrap 60]

Draws tables from the paper's laws (12 sizes, 1% log-normal noise; analysis.synthetic), the
same seeds as tests/analysis/test_powerlaw.py, fits them and prints, per law, how many of the
repetitions' intervals contain the true alpha (expanded intervals, and plain percentiles vs N).
"""

from __future__ import annotations

import argparse

from analysis.paper import METRICS, paper_law
from analysis.powerlaw import fit_vs_cmin, fit_vs_n
from analysis.results import prepare
from analysis.synthetic import final_points_table, training_curves_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=1000, help="draws per fit vs N")
    parser.add_argument("--cmin-bootstrap", type=int, default=60, help="draws per fit vs Cmin")
    args = parser.parse_args()
    print("| law | interval | covered |\n|---|---|---|")
    for ci_method in ("expanded", "percentile"):
        for metric in METRICS:
            alpha = paper_law(metric, "N").alpha
            covered = 0
            for seed in range(args.repeats):
                table = prepare(final_points_table(sigma=0.01, seed=1000 + seed), [metric])
                fit = fit_vs_n(
                    table,
                    metric,
                    irreducible="paper",
                    bootstrap=args.bootstrap,
                    seed=seed,
                    ci_method=ci_method,
                )
                covered += fit.alpha_ci[0] <= alpha <= fit.alpha_ci[1]
            print(f"| {metric} vs N | {ci_method} | {covered}/{args.repeats} |", flush=True)
    for metric in METRICS:
        alpha = paper_law(metric, "Cmin").alpha
        covered = 0
        for seed in range(args.repeats):
            table = prepare(training_curves_table(sigma=0.01, seed=2000 + seed, evals=8), [metric])
            fit = fit_vs_cmin(
                table, metric, irreducible="paper", bootstrap=args.cmin_bootstrap, seed=seed
            )
            covered += fit.alpha_ci[0] <= alpha <= fit.alpha_ci[1]
        print(f"| {metric} vs Cmin | expanded | {covered}/{args.repeats} |", flush=True)


if __name__ == "__main__":
    main()
