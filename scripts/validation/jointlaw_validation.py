"""Validate the joint-law fitter on tables drawn from a known L(N, D) with noise.

    python scripts/validation/jointlaw_validation.py [--repeats 200] [--bootstrap 200] [--sigma
    0.005]

Draws `repeats` tables from TRUE (6 sizes x 5 data amounts crossed, log-normal noise sigma;
analysis.synthetic.joint_law_table), fits each (analysis.jointlaw.fit_joint_table) and prints
(1) recovery: the median and 90th-percentile absolute error of alpha, beta, E, and of the
exponent of N*(C); (2) coverage: how often the 95% bootstrap interval contains the true value.
tests/analysis/test_jointlaw.py runs a reduced version with the same law and design.
"""

from __future__ import annotations

import argparse

import numpy as np

from analysis.jointlaw import ComputeModel, JointLaw, exponents, fit_joint_table
from analysis.results import prepare
from analysis.synthetic import joint_law_table

TRUE = JointLaw(E=1.8, A=60.0, alpha=0.34, B=80.0, beta=0.28)
SIZES = np.geomspace(1e4, 1e6, 6)
DATA = np.geomspace(3e5, 3e7, 5)


def draw(seed: int, sigma: float):
    """One fitted table (seeded)."""
    return prepare(joint_law_table(TRUE, SIZES, DATA, sigma=sigma, seed=seed), ["ce_avg"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--sigma", type=float, default=0.005)
    parser.add_argument("--seed0", type=int, default=5000)
    args = parser.parse_args()
    true_aN = exponents(TRUE, ComputeModel(6.0, 1.0))[0]
    names = ("alpha", "beta", "E", "a_N")
    errors = {k: [] for k in names}
    covered = {k: 0 for k in names}
    for r in range(args.repeats):
        fit = fit_joint_table(
            draw(args.seed0 + r, args.sigma), bootstrap=args.bootstrap, seed=r, holdout=False
        )
        truth = {"alpha": TRUE.alpha, "beta": TRUE.beta, "E": TRUE.E, "a_N": true_aN}
        est = {
            "alpha": fit.law.alpha,
            "beta": fit.law.beta,
            "E": fit.law.E,
            "a_N": exponents(fit.law, fit.compute)[0],
        }
        for k in names:
            errors[k].append(abs(est[k] - truth[k]))
            ci = fit.ci(k)
            covered[k] += ci is not None and ci[0] <= truth[k] <= ci[1]
    print(
        f"{args.repeats} tables, 30 points each (6 sizes x 5 data amounts), noise sigma "
        f"{args.sigma}, "
        f"{args.bootstrap} bootstrap draws per fit"
    )
    print("| parameter | true | median abs error | 90th pct abs error | 95% interval covers |")
    print("|---|---|---|---|---|")
    for k in names:
        e = np.array(errors[k])
        t = true_aN if k == "a_N" else getattr(TRUE, k)
        print(
            f"| {k} | {t:.4g} | {np.median(e):.4f} | {np.quantile(e, 0.9):.4f} | "
            f"{covered[k]}/{args.repeats} ({100 * covered[k] / args.repeats:.0f}%) |"
        )


if __name__ == "__main__":
    main()
