"""Coverage of the whole-curve forecasts' 95% intervals, per law, by simulation.

    python scripts/validation/curvelaw_coverage.py [--studies 25] [--seed 2026] [--only lra]

Each row draws `--studies` studies from a whole-curve law with known parameters
(`analysis.curvelaw.simulate_coverage`: six runs of 400-1600 steps, eight log-spaced
evaluations, Gaussian noise 0.01 per evaluation) and forecasts them with a law (the same, or
the schedule-blind `const` on curves drawn from `lra`: a misspecified law). Schedules:
``lin`` (each run's end from its first 25%), ``wsd`` (each run's end after its cool-down from
its constant phase) and ``branches`` (WSD runs with two decay branches each, at 25% and 50%,
evaluated once at their end; each branch's end from its parent's constant phase). Prints one
Markdown row per case as it finishes: the share of intervals holding the observed value,
the mean |relative error| and the mean interval half-width in units of the noise.
"""

from __future__ import annotations

import argparse
import time

from threadpoolctl import threadpool_limits

from analysis.curvelaw import simulate_coverage

# (law drawn, law fitted, schedule, studies scale): mpl's fits are ~10x slower, fewer studies
CASES = (
    ("lra", "lra", "lin", 1.0),
    ("lra", "lra", "wsd", 1.0),
    ("lra", "lra", "branches", 1.0),
    ("lra", "const", "lin", 1.0),
    ("lra", "const", "wsd", 1.0),
    ("lra", "const", "branches", 1.0),
    ("const", "const", "lin", 1.0),
    ("mpl", "mpl", "lin", 0.4),
    ("mpl", "mpl", "wsd", 0.4),
)


def main() -> None:
    """Run the cases and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=25)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--only", help="only the cases whose fitted law is this one")
    args = ap.parse_args()
    print(
        "| law drawn | law fitted | schedule | forecasts | inside the 95% interval "
        "| mean abs. rel. error | mean half-width / noise |"
    )
    print("|---|---|---|---|---|---|---|", flush=True)
    for drawn, fitted, schedule, scale in CASES:
        if args.only and fitted != args.only:
            continue
        t0 = time.perf_counter()
        with threadpool_limits(1):
            r = simulate_coverage(
                n_studies=max(2, round(scale * args.studies)),
                law=drawn,
                fit_law=fitted,
                schedule=schedule,
                seed=args.seed,
            )
        print(
            f"| `{drawn}` | `{fitted}` | {schedule} | {r['n']} | {100 * r['coverage']:.0f}% "
            f"| {100 * r['mean_abs_rel_error']:.2f}% | {r['mean_halfwidth_over_noise']:.1f} |"
            f"  <!-- {time.perf_counter() - t0:.0f} s -->",
            flush=True,
        )


if __name__ == "__main__":
    main()
