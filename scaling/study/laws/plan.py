"""``python -m scaling.plan SWEEP.yaml``: what a study will cost and how sharp its laws will be.

Before anything is submitted, for the sweep file as written:

1. **Cost** per run and in total (`scaling.study.laws.plan_cost`): training and evaluation FLOPs
   (exact count, `var_core.counting` via `scaling.training.budget.RunBudget`; evaluation =
   forward FLOPs x images evaluated, as the trainer counts them; a decay branch pays for its
   cool-down only), GPU-hours at the sweep's assumed throughput
   (`cluster.assumed_tflops_per_gpu`), training tokens, and the token store's size on disk.
2. **Precision**: a prior law (the paper's by default, a fits.json, or laws on the command
   line) is replayed through the sweep's own sizes, lengths and evaluation schedule many times
   with a seed-noise model, and every replicate is fitted with the fitting library of
   ``scaling.fit`` and the sweep's `fit:` settings (`analysis.simulate`). Per law: median
   fitted exponent, bias against the prior, width of the central 95% of the fitted exponents,
   median width of the fit's 95% bootstrap interval, and how often that interval covers the
   prior's exponent. When the runs give several data amounts per size (decay branches), the
   joint law L(N, D) of ``scaling.fit --law nd`` is planned the same way from a prior joint
   law (an assumption: the paper gives none; see `load_joint_prior`).
2c. **Repetition** (`scaling.study.laws.plan_repeat`): each run's effective data D'/D and the
   loss its repetition costs under a prior R* (a nd-repeat fits.json, else the language value,
   flagged as an assumption).
3. **Alternatives** in one table (`scaling.study.laws.plan_designs`): the same sweep with more
   seeds, fewer or more sizes, longer or shorter runs, more evaluations, more views, fewer
   epochs, and with decay branches (or without them); each with its GPU-hours, its worst
   D'/D and the precision of one metric's laws.

Writes ``plan.json``, ``plan.md`` and figures (``plan_exponents.png/pdf``: simulated exponent
distributions of the grid beside the alternatives; ``plan_evals.png/pdf``: planned evaluation
points on a compute axis per run) into ``--out`` (default ``<sweep output>/plan``).

This module holds the CLI, the compute step and the writing; the priors and noise are loaded by
`plan_priors`, the computed `Plan` is typed in `plan_result` and rendered to plan.md by
`plan_render`.

Never imports torch (FLOPs come from the torch-free `var_core.counting`). Exit status: 2 for
a bad sweep file or argument, 1 for a runtime failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

from analysis.calibration import CurveModel, PriorLaws, calibrate
from analysis.paper import METRICS
from analysis.powerlaw import is_loss
from analysis.results import ResultsError
from analysis.settings import FitSettings, InvalidSetting
from analysis.simulate import (
    FitPlan,
    JointPoints,
    LawSummary,
    Noise,
    cmin_from_effect,
    compute_per_param_unit,
    simulate_joint,
    simulate_study,
)
from contracts.atomic import atomic_write_text
from contracts.plan import FILE as PLAN_FILE
from contracts.plan import PlanFile
from contracts.plan import write_plan as write_plan_file
from scaling.core.cli import refuse_replaced_flags, run_cli, setup_logging
from scaling.core.config_io import Located, apply_sets, build, parse_sets
from scaling.study.laws.plan_cost import (
    RunCost,
    hours_unit,
    run_costs,
    store_bytes,
)
from scaling.study.laws.plan_designs import Design, alternatives
from scaling.study.laws.plan_priors import (
    PlanError,
    _read_fits,
    load_joint_prior,
    load_noise,
    load_prior,
)
from scaling.study.laws.plan_render import _tflops, render_plan
from scaling.study.laws.plan_repeat import (
    repetition_document,
    repetition_prior,
    run_repetition,
)
from scaling.study.laws.plan_result import JointPlan, Plan, plan_repetition_metric
from scaling.study.sweep.estimates import store_meta
from scaling.study.sweep.sweep import Sweep, load_sweep
from var_core.counting import tokens_per_image

# ----------------------------------------------------------------------------- arguments


def _parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m scaling.plan",
        description="Cost, expected precision and alternatives of a sweep, before submitting it.",
    )
    p.add_argument("sweep", help="sweep file (YAML)")
    p.add_argument(
        "--prior", default="paper", help="'paper' (default) or a fits.json written by scaling.fit"
    )
    p.add_argument(
        "--law",
        action="append",
        default=[],
        metavar="METRIC:AGAINST=alpha,beta[,E]",
        help="a prior law given on the command line (repeatable; overrides --prior for that law)",
    )
    p.add_argument(
        "--joint-law",
        action="append",
        default=[],
        metavar="METRIC=E,A,alpha,B,beta",
        help="a prior joint law L = E + A/N^alpha + B/D^beta (N params, D in the sweep's "
        "fit.data_unit; repeatable; overrides --prior for that metric)",
    )
    p.add_argument(
        "--noise-from",
        help="a runs directory or results table with seed replicates: measure the noise",
    )
    p.add_argument(
        "--noise-sd",
        type=float,
        help="seed noise: sd of log(final - E) between seeds, for every metric",
    )
    p.add_argument(
        "--eval-noise",
        type=float,
        default=0.0,
        help="independent noise per evaluation, sd of log(metric - E) (default 0)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="sets",
        metavar="KEY=VALUE",
        help="a fit setting over the sweep's fit: section, as for scaling.fit (repeatable): "
        "--set metrics=[ce_last] --set method=robust",
    )
    p.add_argument("--compare", help="metric of the alternatives table (default: the first metric)")
    p.add_argument(
        "--replicates",
        type=int,
        default=50,
        help="simulated studies of the planned grid (default 50)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=100,
        help="bootstrap samples per simulated fit (default 100; 0: no intervals, no coverage)",
    )
    p.add_argument(
        "--alt-replicates",
        type=int,
        default=40,
        help="simulated studies per alternative (no bootstrap; default 40; 0: no alternatives)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    p.add_argument("--out", help="output folder (default <sweep output>/plan)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    refuse_replaced_flags(
        argv if argv is not None else sys.argv[1:],
        {"--metrics": "--set metrics=[...] (e.g. --set metrics=[ce_last,ce_avg])"},
    )
    return p.parse_args(argv)


def _settings(sweep, args) -> tuple[FitSettings, list[str], str]:
    """The sweep's fit settings, the planned metrics and the compared one (bad ones: PlanError)."""
    for name in ("replicates", "bootstrap", "alt_replicates"):
        if getattr(args, name) < 0:
            raise PlanError(f"--{name.replace('_', '-')} must be >= 0; got {getattr(args, name)}")
    if args.replicates < 2:
        raise PlanError(f"--replicates must be at least 2; got {args.replicates}")
    if not args.eval_noise >= 0:
        raise PlanError(f"--eval-noise must be >= 0; got {args.eval_noise}")
    settings: FitSettings = build(FitSettings, dict(sweep.spec.fit), Located(sweep.source, {}))
    settings = apply_sets(settings, parse_sets(args.sets, example="metrics=[ce_last]"))
    metrics = list(settings.metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad:  # the planner simulates training losses and error rates, not sample metrics
        raise PlanError(f"metrics: {', '.join(bad)}: the planner plans {', '.join(METRICS)}")
    compare = args.compare or metrics[0]
    if compare not in metrics:
        raise PlanError(f"--compare {compare}: not among the planned metrics {', '.join(metrics)}")
    return settings, metrics, compare


def resolve_irreducible(settings: FitSettings, sweep) -> tuple[str | float, str]:
    """The sweep's fit.irreducible with "auto" decided as scaling.fit would decide it: E is
    fitted for a sweep that trains its own VQVAE; a given token store is taken as made with the
    official tokenizer (the paper's E; scaling.fit checks the store's meta.json)."""
    if settings.irreducible != "auto":
        return settings.irreducible, ""
    if sweep.spec.prepare.vqvae is not None:
        return "fit", " (auto: the sweep trains its own VQVAE, so scaling.fit fits E)"
    return (
        "paper",
        " (auto: the token store is taken as the official tokenizer's, as scaling.fit decides "
        "from its meta.json)",
    )


# ----------------------------------------------------------------------------- compute


def cmin_from_choices(
    costs: list[RunCost], setting: str | float
) -> dict[str, float | dict[str, float]]:
    """The `cmin_from` choices the plan compares, each as the fraction of a run's compute its
    frontier points start from: every evaluation (0, the default), 1%, 10%, after each run's
    learning-rate warm-up (`warmup_end`: its warm-up steps over its steps) and the sweep's
    own setting when it is another fraction."""
    warm = {}
    for c in costs:
        if c.parent is None and c.steps > 0:
            optim = c.config.optim
            steps = optim.warmup_steps if optim.warmup_steps is not None else None
            warm[c.run_id] = steps / c.steps if steps is not None else float(optim.warmup_frac)
    choices: dict[str, float | dict[str, float]] = {
        "0 (every evaluation)": 0.0,
        "0.01": 0.01,
        "0.1": 0.1,
        "warmup_end": warm,
    }
    if setting != "warmup_end" and float(setting) not in (0.0, 0.01, 0.1):
        choices[f"{float(setting):g}"] = float(setting)
    return choices


def compute_plan(args: argparse.Namespace) -> Plan:
    """Cost, priors, noise and every simulation of the sweep `args.sweep` (PlanError for bad
    input); nothing is printed or written."""
    started, cpu_started = time.perf_counter(), time.process_time()
    path = Path(args.sweep)
    sweep = load_sweep(path)
    settings, metrics, compare = _settings(sweep, args)
    meta, real = store_meta(sweep)
    costs = run_costs(sweep, meta)
    L = tokens_per_image(meta["patch_nums"])

    priors, prior_source = load_prior(args.prior, metrics, args.law)
    noise = load_noise(args, metrics, priors)
    plan_design = Design("as planned", costs)
    planned = plan_design.planned()
    irreducible, irreducible_why = resolve_irreducible(settings, sweep)
    # with E not fitted a metric's laws vs N and Cmin share nothing: each may get its own curves
    models = {
        m: calibrate(priors[m], planned, independent_laws=irreducible != "fit" or not is_loss(m))
        for m in metrics
    }
    # a prior the curve family cannot represent is not simulated: its numbers would be the
    # curve family's, not the prior's (analysis.calibration.CurveModel.not_representable)
    refused = {m: why for m, c in models.items() if (why := c.not_representable())}
    simulated = {m: c for m, c in models.items() if m not in refused}
    fit = FitPlan(
        irreducible=irreducible,
        method=settings.method,
        smooth=settings.smooth,
        ci=settings.ci,
        bootstrap=args.bootstrap,
        E_from=settings.E_from,
    )
    against = list(settings.against)
    summaries = (
        simulate_study(planned, simulated, priors, noise, fit, against, args.replicates, args.seed)
        if simulated
        else []
    )
    cmin_effect = (
        cmin_from_effect(
            planned,
            simulated,
            cmin_from_choices(costs, settings.cmin_from),
            settings.method,
            settings.smooth,
        )
        if simulated and "Cmin" in against
        else {}
    )
    joint = plan_joint(args, plan_design, costs, models, settings.data_unit, L, noise, fit)
    alt_rows: list[tuple[Design, list[LawSummary], JointPoints]] = []
    skipped: list[str] = []
    if args.alt_replicates > 0 and compare in simulated:
        alt_rows, skipped = plan_alternatives(
            args, sweep, meta, costs, compare, models, priors, noise, fit, against, joint
        )
    rep_prior = repetition_prior(
        None if args.prior == "paper" else _read_fits(args.prior), args.prior
    )
    rep_metric = plan_repetition_metric(compare, joint)
    repetition = run_repetition(
        costs, rep_prior, joint.priors.get(rep_metric or ""), joint.d_unit, L
    )
    return Plan(
        path=path,
        sweep=sweep,
        settings=settings,
        metrics=metrics,
        compare=compare,
        meta=meta,
        real=real,
        costs=costs,
        L=L,
        priors=priors,
        prior_source=prior_source,
        noise=noise,
        models=models,
        refused=refused,
        irreducible=irreducible,
        irreducible_why=irreducible_why,
        fit=fit,
        against=against,
        summaries=summaries,
        cmin_effect=cmin_effect,
        joint=joint,
        alt_rows=alt_rows,
        skipped=skipped,
        replicates=args.replicates,
        bootstrap=args.bootstrap,
        alt_replicates=args.alt_replicates,
        seed=args.seed,
        elapsed=time.perf_counter() - started,
        cpu=time.process_time() - cpu_started,
        repetition_prior=rep_prior,
        repetition=repetition,
    )


def plan_joint(
    args: argparse.Namespace,
    plan_design: Design,
    costs: list[RunCost],
    models: dict[str, CurveModel],
    d_unit: str,
    L: int,
    noise: Noise,
    fit: FitPlan,
) -> JointPlan:
    """The joint law for the losses (as scaling.fit --law nd), on every run's final point."""
    points = plan_design.joint_points(d_unit)
    kappa = compute_per_param_unit(points.N, points.D, [c.compute for c in costs])
    losses = {m: c for m, c in models.items() if m.startswith("ce")}
    priors, source = load_joint_prior(args.prior, args.joint_law, losses, kappa, d_unit, L)
    gap = (
        points.why_not()
        if priors
        else "no loss metric (ce_avg, ce_last) is planned"
        if not losses
        else "no loss has a joint prior its curves can represent (see the table above)"
    )
    summaries = (
        [] if gap else simulate_joint(points, priors, noise, fit, args.replicates, args.seed)
    )
    return JointPlan(d_unit, points, kappa, priors, source, gap, summaries)


def plan_alternatives(
    args: argparse.Namespace,
    sweep: Sweep,
    meta: dict,
    costs: list[RunCost],
    compare: str,
    models: dict[str, CurveModel],
    priors: dict[str, PriorLaws],
    noise: Noise,
    fit: FitPlan,
    against: list[str],
    joint: JointPlan,
) -> tuple[list[tuple[Design, list[LawSummary], JointPoints]], list[str]]:
    """Each alternative design (`plan_designs.alternatives`) simulated for the compared
    metric (point fits; its joint law where the design makes it plannable); and the designs
    not laid out, with why."""
    designs, skipped = alternatives(Path(args.sweep), sweep, meta, costs)
    alt_fit = dataclasses.replace(fit, bootstrap=0)
    rows = []
    for i, d in enumerate(designs):
        seed = args.seed + 1 + i
        res = simulate_study(
            d.planned(),
            {compare: models[compare]},
            priors,
            noise,
            alt_fit,
            against,
            args.alt_replicates,
            seed,
        )
        d_points = d.joint_points(joint.d_unit)
        if compare in joint.priors and d_points.why_not() is None:
            res += simulate_joint(
                d_points,
                {compare: joint.priors[compare]},
                noise,
                alt_fit,
                args.alt_replicates,
                seed,
            )
        rows.append((d, res, d_points))
    return rows, skipped


def plan_document(plan: Plan) -> dict:
    """plan.json: every number of the plan (docs/planning.md)."""
    joint = plan.joint
    return {
        "tool": "python -m scaling.plan",
        "sweep": str(plan.path),
        "elapsed_s": round(plan.elapsed, 2),
        "cpu_s": round(plan.cpu, 2),
        "cost": _cost_document(plan),
        "prior": {
            "source": plan.prior_source,
            "laws": {
                m: {"N": dataclasses.asdict(p.n_law), "Cmin": dataclasses.asdict(p.cmin_law)}
                for m, p in plan.priors.items()
            },
        },
        "noise": {"sd": plan.noise.sd, "eval_sd": plan.noise.eval_sd, "source": plan.noise.source},
        "curves": {m: dataclasses.asdict(c) for m, c in plan.models.items()},
        "settings": {
            "replicates": plan.replicates,
            "bootstrap": plan.bootstrap,
            "alt_replicates": plan.alt_replicates,
            "seed": plan.seed,
            "fit": dataclasses.asdict(plan.fit),
        },
        "precision": [s.to_dict() for s in plan.summaries],
        "cmin_from_effect": {
            "setting": plan.settings.cmin_from,
            "note": "noise-free Cmin exponent at the curves' own E, per choice and metric",
            "alpha": {
                n: {m: (v if math.isfinite(v) else None) for m, v in by.items()}
                for n, by in plan.cmin_effect.items()
            },
        },
        "not_simulated": {m: f"not representable: {why}" for m, why in plan.refused.items()},
        "joint": {
            "planned": not joint.gap,
            "why_not": joint.gap,
            "d_unit": joint.d_unit,
            "prior": {m: law.as_dict() for m, law in joint.priors.items()},
            "prior_source": joint.source,
            "kappa": {"value": joint.kappa[0], "max_over_min": joint.kappa[1]},
            "points": [
                {"run": r, "N": float(n), "D": float(d), "family": int(f)}
                for r, n, d, f in zip(
                    joint.points.runs, joint.points.N, joint.points.D, joint.points.family
                )
            ],
            "precision": [s.to_dict() for s in joint.summaries],
        },
        "alternatives": [
            {
                "design": d.name,
                "runs": d.runs,
                "gpu_hours": d.gpu_hours,
                "hours": d.hours,
                "joint_why_not": p.why_not(),
                "laws": [s.to_dict() for s in res],
            }
            for d, res, p in plan.alt_rows
        ],
        "not_laid_out": plan.skipped if plan.alt_rows else [],
        "repetition": (
            {
                **repetition_document(plan.repetition, plan.repetition_prior),
                "loss_metric": plan_repetition_metric(plan.compare, plan.joint),
                "alternatives": dict(
                    zip((d.name for d, _, _ in plan.alt_rows), plan.design_repetition())
                ),
            }
            if plan.repetition_prior is not None
            else None
        ),
    }


def _cost_document(plan: Plan) -> dict:
    costs = plan.costs
    return {
        "runs": [
            {
                "run": c.run_id,
                "parent": c.parent,
                "params": c.params,
                "steps": c.steps,
                "start_step": c.start_step,
                "tokens": c.tokens,
                "D_tokens": c.data("tokens"),
                "train_flops": c.train_flops,
                "eval_flops": c.eval_flops,
                "full_evals": int(len(c.full_steps())),
                "gpu_hours": c.gpu_hours,
                "cpu_hours": c.cpu_hours,
                "eval_compute": [float(v) for v in c.eval_compute()],
            }
            for c in costs
        ],
        "total_train_flops": sum(c.train_flops for c in costs),
        "total_eval_flops": sum(c.eval_flops for c in costs),
        "total_gpu_hours": sum(c.gpu_hours for c in costs),
        "total_cpu_hours": sum(c.cpu_hours for c in costs),
        "hours_unit": hours_unit(costs),  # which of the two the tables show
        "assumed_tflops_per_gpu": _tflops(plan),
        "assumed_gflops_per_cpu": costs[0].gflops_per_cpu if costs else None,
        "token_store_bytes": store_bytes(plan.meta),
        "store_meta_real": plan.real,
    }


# ----------------------------------------------------------------------------- write


def write_plan(plan: Plan, text: str, doc: dict, out: Path, plots: bool) -> None:
    """plan.md, plan.json and (with `plots`) the figures into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "plan.md", text)
    write_plan_file(out / PLAN_FILE, PlanFile.from_dict(doc, out / PLAN_FILE))
    if not plots:
        return
    from analysis.plots import save_figure  # matplotlib only when drawing
    from analysis.simulate_plots import plot_eval_points, plot_exponents

    if plan.alt_rows:
        save_figure(
            plot_exponents([(d.name, res) for d, res, _ in plan.alt_rows], plan.compare),
            out / "plan_exponents",
        )
    save_figure(
        plot_eval_points([(c.run_id, c.eval_compute(), c.params) for c in plan.costs]),
        out / "plan_evals",
    )


def run(argv=None) -> dict:
    """The CLI's work: compute, render, write; returns the plan document. Raises PlanError /
    ConfigError (InputError) or ResultsError for bad input."""
    args = _parse_args(argv)
    plan = compute_plan(args)
    text, doc = render_plan(plan), plan_document(plan)
    out = Path(args.out) if args.out else plan.sweep.output / "plan"
    write_plan(plan, text, doc, out, plots=not args.no_plots)
    print(text, end="")
    print(f"wrote {out}/plan.md, plan.json" + ("" if args.no_plots else ", figures (png, pdf)"))
    return doc


def main(argv=None) -> int:
    """Entry point: errors are one line on stderr; exit 2 for bad input, 1 for runtime failures."""
    import matplotlib

    matplotlib.use("Agg")  # this CLI writes files only, never a window
    setup_logging()

    def body() -> None:
        run(argv)

    return run_cli(body, input_errors=(ResultsError, InvalidSetting))


if __name__ == "__main__":
    sys.exit(main())
