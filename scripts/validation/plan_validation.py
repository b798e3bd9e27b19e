"""Validation figures of the study planner and of the seed-aware fits (numbers for
docs/planning.md).

1. Planner vs end to end: `python -m scaling.plan` predicts, for a small 6-size grid (the sweep
   of tests/study/laws/test_plan.py), the median width of the 95% bootstrap interval of each
   exponent, the
   spread of the fitted exponents and the coverage. The same grid is then drawn STUDIES times
   here (own generator, from the planner's calibrated curves), written as run directories and
   fitted by `python -m scaling.fit` (in process); the observed numbers are printed beside the
   predicted ones.
2. Seeds: studies of a known law with known seed noise (12 sizes x 3 seeds), fitted with the
   seed-averaged N fit; coverage of the 95% interval with the seeds drawn without replacement
   (default) and with replacement.
3. The joint law L(N, D): the WSD grid of tests/study/laws/test_plan.py's joint-law test (6 sizes, 3
decay
   branches each: 24 points) planned with a given joint prior, then drawn JOINT_STUDIES times here
   and fitted
   by `python -m scaling.fit --set law=nd` (in process, on run directories); predicted vs
   observed interval width, 95% range and coverage of alpha and beta, for two noise models:
   independent per point (--eval-noise) and seed noise shared by a parent and its branches
   (--noise-sd, the planner's default model).
4. A study's own fits as prior (--only demo --demo-fits runs/demo/fit/fits.json): the planner's
   simulated exponents for sweeps/demo.yaml (50 studies, 100 bootstrap samples, noise from the
   file) beside the exponents that study measured; does the central 95% of the simulated
   exponents hold each measured one?

    python scripts/validation/plan_validation.py [--studies 200] [--seed-studies 400]
    [--joint-studies 100] [--demo-fits runs/demo/fit/fits.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "study" / "laws"))


def planner_vs_end_to_end(studies: int, replicates: int) -> None:
    from planned_study import write_planned_study  # one drawn study as run directories
    from test_plan import LAWS, _sweep  # the small grid and its prior

    from scaling.study.laws.fit import run as fit_run
    from scaling.study.laws.plan import run as plan_run

    sd = 0.03
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the CLI prints its report
            doc = plan_run(
                [
                    str(_sweep(tmp)),
                    *LAWS,
                    "--noise-sd",
                    str(sd),
                    "--replicates",
                    str(replicates),
                    "--bootstrap",
                    "200",
                    "--alt-replicates",
                    "0",
                    "--no-plots",
                    "--seed",
                    "3",
                ]
            )
        print(f"planner: {time.perf_counter() - t0:.1f} s")
        rng = np.random.default_rng(11)
        width, alpha = {"N": [], "Cmin": []}, {"N": [], "Cmin": []}
        lo_hi = {"N": [], "Cmin": []}
        for rep in range(studies):
            root = write_planned_study(tmp / f"study{rep}", doc, sd, rng)
            with contextlib.redirect_stdout(io.StringIO()):
                fitted = fit_run([str(root), "--no-plots", "--set", f"seed={rep}"])
            for f in fitted["fits"]:
                width[f["against"]].append(f["alpha_ci"][1] - f["alpha_ci"][0])
                alpha[f["against"]].append(f["alpha"])
                lo_hi[f["against"]].append(f["alpha_ci"])
    print(
        f"\n1. planner ({replicates} simulated studies) vs end to end ({studies} studies through "
        "scaling.fit)"
    )
    print(
        "| law | predicted CI width | observed CI width | predicted 95% range | observed 95% range "
        "| predicted coverage | observed coverage |"
    )
    print("|---|---|---|---|---|---|---|")
    for law in doc["precision"]:
        a = law["against"]
        prior = law["prior_alpha"]
        lo, hi = np.quantile(alpha[a], [0.025, 0.975])
        cov = np.mean([lo_ <= prior <= h for lo_, h in lo_hi[a]])
        print(
            f"| ce_last vs {a} | {law['median_ci_width']:.4f} | {np.median(width[a]):.4f} | "
            f"{law['spread95']:.4f} "
            f"| {hi - lo:.4f} | {100 * law['coverage']:.0f}% | {100 * cov:.0f}% |"
        )


def seeds_coverage(studies: int) -> None:
    import analysis.powerlaw as pl
    import analysis.seeds as seeds
    from analysis.powerlaw import fit_vs_n
    from analysis.results import prepare

    alpha, beta, E, sd = -0.23, 2.0, 4.5, 0.05
    sizes = np.geomspace(2e7, 2e9, 12)
    print(f"\n2. seed-averaged N fits, 12 sizes x 3 seeds, seed sd {sd} (log), {studies} studies")
    print("| seeds drawn | coverage of the 95% interval | median alpha | sd of alpha (expected) |")
    print("|---|---|---|---|")
    original = seeds.bootstrap_size_seed
    for within in ("without", "with"):
        pl.bootstrap_size_seed = lambda s, d, r, _w=within: original(s, d, r, within=_w)
        rng = np.random.default_rng(1)
        hits, alphas = 0, []
        for rep in range(studies):
            rows = []
            for i, n in enumerate(sizes):
                for s, z in enumerate(rng.standard_normal(3)):
                    rows.append(
                        {
                            "run": f"d{i}-s{s}",
                            "params": n,
                            "seed": s,
                            "step": 1,
                            "flops": 1e18,
                            "ce_last": E + (beta * n / 1e9) ** alpha * np.exp(sd * z),
                        }
                    )
            fit = fit_vs_n(
                prepare(pd.DataFrame(rows), ["ce_last"]),
                "ce_last",
                irreducible=E,
                bootstrap=400,
                seed=rep,
            )
            hits += fit.alpha_ci[0] <= alpha <= fit.alpha_ci[1]
            alphas.append(fit.law.alpha)
        expected = sd / np.sqrt(3) / (np.std(np.log(sizes)) * np.sqrt(12))
        print(
            f"| {within} replacement | {100 * hits / studies:.1f}% | {np.median(alphas):.4f} "
            f"| {np.std(alphas):.4f} ({expected:.4f}) |"
        )
    pl.bootstrap_size_seed = original


def joint_vs_end_to_end(studies: int, replicates: int, bootstrap: int) -> None:
    from test_plan import LAWS, _sweep  # the tests' sweep, with WSD decay branches below
    from threadpoolctl import threadpool_limits

    from scaling.study.laws.fit import run as fit_run
    from scaling.study.laws.plan import run as plan_run

    E, A, alpha, B, beta, sd = 3.0, 22.0, 0.3, 33.0, 0.4, 0.01
    truth = {"alpha": alpha, "beta": beta}
    print(
        f"\n3. joint law, planner ({replicates} simulated studies) vs end to end ({studies} "
        "studies through "
        f"scaling.fit --set law=nd), {bootstrap} bootstrap samples, noise sd {sd}"
    )
    print(
        "| noise | exponent | predicted CI width | observed CI width | predicted 95% range | "
        "observed 95% range "
        "| predicted coverage | observed coverage |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for noise, flags in (
        ("independent per point", ["--noise-sd", "0", "--eval-noise", str(sd)]),
        ("seed, shared by a parent and its branches", ["--noise-sd", str(sd)]),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            t0 = time.perf_counter()
            sweep = _sweep(
                tmp,
                "wsd3.yaml",
                base={"optim": {"schedule": "wsd", "warmup_frac": 0.05}},
                branches={"at": [0.125, 0.25, 0.5], "cooldown": 0.2},
            )
            with contextlib.redirect_stdout(io.StringIO()):
                doc = plan_run(
                    [
                        str(sweep),
                        *LAWS,
                        "--joint-law",
                        f"ce_last={E},{A},{alpha},{B},{beta}",
                        *flags,
                        "--replicates",
                        str(replicates),
                        "--bootstrap",
                        str(bootstrap),
                        "--alt-replicates",
                        "0",
                        "--no-plots",
                        "--seed",
                        "3",
                    ]
                )
            planned = time.perf_counter() - t0
            points = doc["joint"]["points"]
            families = np.array([p["family"] for p in points])
            # each branch names its parent (config branch.parent), so that the fitter draws a
            # parent with its branches as one family, as the planner does
            parent_of = {p["family"]: p["run"] for p in points if "-b" not in p["run"]}
            rng = np.random.default_rng(11)
            value, ci = {"alpha": [], "beta": []}, {"alpha": [], "beta": []}
            e_ci: list[tuple[float, float]] = []  # the fit's E interval (no planner figure)
            for rep in range(studies):
                root = tmp / f"study{rep}"
                z = (
                    sd * rng.standard_normal(families.max() + 1)[families]
                    if noise.startswith("seed")
                    else sd * rng.standard_normal(len(points))
                )
                for p, zi in zip(points, z):
                    d = root / p["run"]
                    d.mkdir(parents=True)
                    parent = parent_of[p["family"]]
                    (d / "config.yaml").write_text(
                        "seed: 0\n"
                        + (f"branch:\n  parent: {parent}\n" if p["run"] != parent else "")
                    )
                    loss = E + (A * p["N"] ** -alpha + B * p["D"] ** -beta) * np.exp(zi)
                    (d / "metrics.jsonl").write_text(
                        json.dumps(
                            {
                                "step": 1,
                                "params": p["N"],
                                "tokens": p["D"],
                                "flops": 4.5 * p["N"] * p["D"],
                                "eval": "full",
                                "ce_last": loss,
                            }
                        )
                        + "\n"
                    )
                (root / "fit.yaml").write_text(
                    f"law: nd\nmetrics: [ce_last]\nbootstrap: {bootstrap}\n"
                )
                with contextlib.redirect_stdout(io.StringIO()), threadpool_limits(1):
                    fitted = fit_run([str(root), "--no-plots", "--set", f"seed={rep}"])["joint"][0]
                for k in value:
                    value[k].append(fitted[k])
                    ci[k].append(fitted[f"{k}_ci"])
                if fitted.get("E_ci"):
                    e_ci.append(tuple(fitted["E_ci"]))
            for law in doc["joint"]["precision"]:
                k = law["param"]
                lo, hi = np.quantile(value[k], [0.025, 0.975])
                width = np.median([h - lo_ for lo_, h in ci[k]])
                cov = np.mean([lo_ <= truth[k] <= h for lo_, h in ci[k]])
                print(
                    f"| {noise} | {k} | {law['median_ci_width']:.4f} | {width:.4f} | "
                    f"{law['spread95']:.4f} "
                    f"| {hi - lo:.4f} | {100 * law['coverage']:.0f}% | {100 * cov:.0f}% |"
                )
            cov_e = np.mean([lo_ <= E <= h for lo_, h in e_ci]) if e_ci else float("nan")
            width_e = np.median([h - lo_ for lo_, h in e_ci]) if e_ci else float("nan")
            print(
                f"| {noise} | E | - | {width_e:.4f} | - | - | - | {100 * cov_e:.0f}% "
                f"({len(e_ci)} intervals) |"
            )
            print(f"(planner: {planned:.1f} s wall, {doc['cpu_s']:.1f} s CPU)", file=sys.stderr)


def own_fits_as_prior(fits: Path, sweep: Path, replicates: int) -> None:
    from scaling.study.laws.plan import _parse_args, compute_plan

    args = _parse_args(
        [
            str(sweep),
            "--prior",
            str(fits),
            "--replicates",
            str(replicates),
            "--bootstrap",
            "100",
            "--alt-replicates",
            "0",
            "--no-plots",
        ]
    )
    plan = compute_plan(args)
    laws = json.loads(fits.read_text())["fits"]
    measured = {(f["metric"], f["against"]): f["alpha"] for f in laws}
    own_width = {
        (f["metric"], f["against"]): f["alpha_ci"][1] - f["alpha_ci"][0]
        for f in laws
        if f.get("alpha_ci")
    }
    print(f"\n4. {fits} as prior for {sweep}: {replicates} simulated studies")
    print(
        "| metric | vs | measured alpha | predicted median | predicted 95% range | holds "
        "| noise-free fit | median CI width (the study's own) | curve check |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s in plan.summaries:
        lo, hi = np.quantile(s.alphas, [0.025, 0.975])
        got = measured[(s.metric, s.against)]
        m = plan.models[s.metric]
        check = m.law_error(s.against)
        print(
            f"| {s.metric} | {s.against} | {got:.4f} | {s.median:.4f} | [{lo:.4f}, {hi:.4f}] "
            f"| {'yes' if lo <= got <= hi else 'no'} | {s.noise_free_alpha:.4f} "
            f"| {s.ci_width:.3g} ({own_width.get((s.metric, s.against), float('nan')):.3g}) "
            f"| {100 * check:.2g}% {m.for_law(s.against).calibrated_to} |"
        )
    for metric, why in plan.refused.items():
        for a in plan.against:
            print(
                f"| {metric} | {a} | {measured[(metric, a)]:.4f} | not simulated | - | - | - | - "
                f"| {why} |"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=200)
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--seed-studies", type=int, default=400)
    p.add_argument("--joint-studies", type=int, default=100)
    p.add_argument("--joint-replicates", type=int, default=100)
    p.add_argument("--joint-bootstrap", type=int, default=100)
    p.add_argument("--demo-fits", type=Path, help="a study's fits.json: part 4 with it as prior")
    p.add_argument("--demo-sweep", type=Path, default=ROOT / "sweeps" / "demo.yaml")
    p.add_argument("--demo-replicates", type=int, default=50)
    p.add_argument("--only", choices=["power", "seeds", "joint", "demo"], help="run one part")
    args = p.parse_args()
    if args.only in (None, "power"):
        planner_vs_end_to_end(args.studies, args.replicates)
    if args.only in (None, "seeds"):
        seeds_coverage(args.seed_studies)
    if args.only in (None, "joint"):
        joint_vs_end_to_end(args.joint_studies, args.joint_replicates, args.joint_bootstrap)
    if args.only in (None, "demo") and args.demo_fits is not None:
        own_fits_as_prior(args.demo_fits, args.demo_sweep, args.demo_replicates)


if __name__ == "__main__":
    main()
