"""Coverage of the fitted E's 95% profile interval, by number of sizes (numbers for
docs/fitting.md, "Fitting E").

    python scripts/validation/e_interval.py [--draws 300]

Final points at the paper's sizes (all 12, every other one, the 6 smallest) drawn from the
paper's N laws (ce_avg, E = 5; ce_last, E = 4.5) with log-normal noise of 1% and 3% on the
reducible part, E located on them as `scaling.fit` locates it (`E_from: N`:
`analysis.irreducible.fit_shared_E`); how often its interval holds the true E, with the
shipped small-sample calibration (`profile_threshold`: the F form) and with the asymptotic
chi2_1 it replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import analysis.irreducible as irreducible  # noqa: E402
from analysis.paper import paper_law  # noqa: E402
from analysis.synthetic import paper_sizes  # noqa: E402

SHIPPED = irreducible.profile_threshold


def asymptotic(n: int, n_sets: int, level: float) -> float:
    """The chi2_1 bound of the interval before the small-sample calibration."""
    return float(stats.chi2.ppf(level, 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=300)
    args = p.parse_args()
    rng = np.random.default_rng(1)
    grids = {
        "12 sizes": slice(None),
        "6 sizes (every other)": slice(None, None, 2),
        "6 smallest": slice(0, 6),
    }
    print("| metric | sizes | noise | F (shipped) | chi2_1 (before) |")
    print("|---|---|---|---|---|")
    for metric in ("ce_avg", "ce_last"):
        law = paper_law(metric, "N")
        for name, pick in grids.items():
            n = paper_sizes()[pick] / 1e9
            for sd in (0.01, 0.03):
                hits = {"F": 0, "chi2": 0}
                for _ in range(args.draws):
                    y = law.E + (law.beta * n) ** law.alpha * np.exp(
                        sd * rng.standard_normal(len(n))
                    )
                    for label, threshold in (("F", SHIPPED), ("chi2", asymptotic)):
                        irreducible.profile_threshold = threshold
                        lo, hi = irreducible.fit_shared_E([(n, y)]).ci
                        hits[label] += lo <= law.E <= hi
                    irreducible.profile_threshold = SHIPPED
                print(
                    f"| {metric} | {name} | {sd:.0%} | {hits['F'] / args.draws:.1%} "
                    f"| {hits['chi2'] / args.draws:.1%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
