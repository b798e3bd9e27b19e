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

import numpy as np

from analysis.jointlaw import JointLaw
from analysis.paper import AGAINST, METRICS, PAPER_IRREDUCIBLE
from analysis.powerlaw import Law
from analysis.results import ResultsError, load_results, prepare
from analysis.seeds import pooled_log_sd
from analysis.settings import FitSettings, InvalidSetting
from analysis.simulate import (
    CurveModel,
    FitPlan,
    JointPoints,
    LawSummary,
    Noise,
    PriorLaws,
    calibrate,
    cmin_from_effect,
    compute_per_param_unit,
    joint_prior,
    paper_noise_sd,
    paper_prior,
    simulate_joint,
    simulate_study,
)
from contracts import ContractError
from contracts.atomic import atomic_write_text
from contracts.fits import FitsFile, read_fits
from contracts.plan import FILE as PLAN_FILE
from contracts.plan import PlanFile
from contracts.plan import write_plan as write_plan_file
from scaling.core.cli import InputError, refuse_replaced_flags, run_cli, setup_logging
from scaling.core.config_io import Located, apply_sets, build, parse_sets
from scaling.core.tables import human
from scaling.study.laws.plan_cost import (
    RunCost,
    cost_table,
    hours_text,
    hours_unit,
    run_costs,
    store_bytes,
)
from scaling.study.laws.plan_designs import Design, alternatives
from scaling.study.laws.plan_repeat import (
    RepetitionPrior,
    RunRepetition,
    ratio_text,
    repetition_document,
    repetition_prior,
    repetition_table,
    run_repetition,
)
from scaling.study.sweep.estimates import store_meta
from scaling.study.sweep.sweep import Sweep, load_sweep
from var_core.counting import tokens_per_image


class PlanError(InputError):
    """A bad argument or input of the planner (exit status 2); the message names it."""


# ----------------------------------------------------------------------------- priors and noise


def _law_arg(text: str):
    """'ce_last:N=-0.23,2.0[,4.5]' -> (metric, against, Law)."""
    try:
        head, values = text.split("=", 1)
        metric, against = head.split(":")
        nums = [float(v) for v in values.split(",")]
    except ValueError:
        raise PlanError(
            f"--law {text!r}: expected METRIC:AGAINST=alpha,beta[,E] (e.g. ce_last:N=-0.23,2.0,4.5)"
        ) from None
    if metric not in METRICS or against not in AGAINST or len(nums) not in (2, 3):
        raise PlanError(
            f"--law {text!r}: metric must be one of {', '.join(METRICS)}, against N or Cmin, "
            f"then alpha,beta[,E]"
        )
    if not nums[0] < 0 or not nums[1] > 0:
        raise PlanError(
            f"--law {text!r}: alpha must be negative (the metric falls with scale) and beta "
            "positive"
        )
    E = nums[2] if len(nums) == 3 else PAPER_IRREDUCIBLE[metric]
    return metric, against, Law(nums[0], nums[1], E)


def _read_fits(spec: str) -> FitsFile:
    """A fits.json written by scaling.fit (`contracts.fits`: power laws under "fits", the joint
    law under "joint")."""
    if not Path(spec).exists():
        raise PlanError(
            f"--prior {spec}: no such file (use 'paper' or a fits.json from scaling.fit)"
        )
    try:
        return read_fits(spec)
    except ContractError as e:
        raise PlanError(f"--prior {e}") from None


def load_prior(spec: str, metrics: list[str], laws: list[str]) -> tuple[dict, str]:
    """The prior per metric ('paper' or a fits.json path), with --law overrides; and its
    description.

    A fits.json of a joint-law study (``scaling.fit --law nd``) holds no laws vs N and Cmin:
    for its metrics the paper's are taken, and the description says so.
    """
    if spec == "paper":
        priors, source = (
            paper_prior(metrics),
            "the paper's published laws (Tian et al. 2024, eq. 11-16)",
        )
    else:
        doc = _read_fits(spec)
        found, joint = doc.laws(), doc.joint_laws()
        priors = {}
        for m in metrics:
            if (m, "N") in found and (m, "Cmin") in found:
                n, c = found[(m, "N")], found[(m, "Cmin")]
                priors[m] = PriorLaws(m, Law(n.alpha, n.beta, n.E), Law(c.alpha, c.beta, c.E))
        source = f"the fits in {spec}"
        borrowed = [m for m in metrics if m not in priors and m in joint]
        if borrowed:
            priors.update(paper_prior(borrowed))
            source += (
                f" ({', '.join(borrowed)} vs N and Cmin: the paper's laws; the file holds only "
                "their "
                f"joint law)"
            )
    for text in laws:
        metric, against, law = _law_arg(text)
        base = priors.get(metric) or paper_prior([metric])[metric]
        priors[metric] = dataclasses.replace(
            base, **({"n_law": law} if against == "N" else {"cmin_law": law})
        )
        source += f"; {metric} vs {against} from --law"
    missing = [m for m in metrics if m not in priors]
    if missing:
        raise PlanError(
            f"--prior {spec}: no law vs both N and Cmin for {', '.join(missing)} "
            f"(give them with --law METRIC:AGAINST=alpha,beta[,E], or limit --metrics)"
        )
    return {m: priors[m] for m in metrics}, source


def _joint_arg(text: str) -> tuple[str, JointLaw]:
    """'ce_avg=E,A,alpha,B,beta' -> (metric, JointLaw)."""
    try:
        metric, values = text.split("=", 1)
        E, A, alpha, B, beta = (float(v) for v in values.split(","))
    except ValueError:
        raise PlanError(
            f"--joint-law {text!r}: expected METRIC=E,A,alpha,B,beta "
            f"(e.g. ce_avg=5.0,2e3,0.35,4e4,0.3)"
        ) from None
    if metric not in METRICS or not metric.startswith("ce"):
        raise PlanError(
            f"--joint-law {text!r}: the joint law is fitted to losses: ce_avg or ce_last"
        )
    if not (A > 0 and B > 0 and alpha > 0 and beta > 0 and E >= 0):
        raise PlanError(f"--joint-law {text!r}: A, B, alpha and beta must be positive and E >= 0")
    return metric, JointLaw(E, A, alpha, B, beta)


def load_joint_prior(
    spec: str,
    texts: list[str],
    curves: dict,
    kappa: tuple[float, float],
    d_unit: str,
    tokens_per_image: int,
) -> tuple[dict[str, JointLaw], str]:
    """The prior joint law per loss metric of `curves`, and where each came from.

    In order: --joint-law on the command line; a fits.json's joint law (``scaling.fit --law
    nd``; D converted between images and tokens with this sweep's tokens per image); else the
    default, an ASSUMPTION (the paper publishes no joint law): the planner's training curves
    of that metric (Chinchilla's form E + A N^-a + B (C/N)^-b, Hoffmann et al. 2022, calibrated
    to the prior's laws vs N and Cmin on this grid) read as L(N, D) with C = kappa N D
    (`analysis.simulate.joint_prior`).
    """
    given = dict(_joint_arg(t) for t in texts)
    records = {} if spec == "paper" else _read_fits(spec).joint_laws()
    priors, sources = {}, []
    for m in curves:
        if m in given:
            priors[m], how = given[m], "--joint-law"
        elif m in records:
            r = records[m]
            unit = r.d_unit
            B = r.B
            if unit != d_unit:  # B / D_img^beta = B L^beta / D_tok^beta
                B *= tokens_per_image ** (r.beta if d_unit == "tokens" else -r.beta)
            priors[m] = JointLaw(r.E, r.A, r.alpha, B, r.beta)
            how = f"the joint fit in {spec}" + (
                f" (D converted from {unit} at {tokens_per_image} tokens per image)"
                if unit != d_unit
                else ""
            )
        elif (why := curves[m].not_representable()) is not None:
            sources.append(f"{m}: not representable: not simulated ({why})")
            continue
        else:
            priors[m] = joint_prior(curves[m], kappa[0])
            how = (
                "ASSUMED (the paper gives no joint law): the planner's training curves E + A N^-a "
                "+ "
                "B (C/N)^-b (Chinchilla's form), calibrated to the laws vs N and Cmin above, "
                "read as "
                f"L(N, D) with C = kappa N D, kappa = {kappa[0]:.3g} FLOPs per parameter per "
                f"{d_unit[:-1]} (this grid's exact counts; it varies by "
                f"{100 * (kappa[1] - 1):.2g}% over "
                f"the runs)"
            )
        sources.append(f"{m}: {how}")
    return priors, "; ".join(sources)


def load_noise(args, metrics: list[str], priors: dict) -> Noise:
    """The noise model: measured from a table with seeds (--noise-from), a number, or the
    default."""
    if args.noise_from:
        try:
            table = prepare(load_results(args.noise_from), metrics, source=str(args.noise_from))
            sd, dof = {}, {}
            for m in metrics:
                sd[m], dof[m] = pooled_log_sd(table, m, priors[m].E)
        except ResultsError as e:
            raise PlanError(f"--noise-from {args.noise_from}: {e}") from None
        return Noise(
            sd,
            args.eval_noise,
            f"measured from the seed replicates in {args.noise_from} (pooled sd of "
            f"log(final - E) within sizes; {min(dof.values())} degrees of freedom)",
        )
    if args.noise_sd is not None:
        if not args.noise_sd >= 0:
            raise PlanError(f"--noise-sd must be >= 0; got {args.noise_sd}")
        return Noise(
            {m: args.noise_sd for m in metrics}, args.eval_noise, "--noise-sd on the command line"
        )
    if args.prior != "paper":
        own = fits_noise_sd(_read_fits(args.prior), metrics)
        sd = {m: own.get(m, paper_noise_sd(m)) for m in metrics}
        borrowed = [m for m in metrics if m not in own]
        return Noise(
            sd,
            args.eval_noise,
            f"default for a fits.json prior: the scatter about its own N laws (residual sd of "
            f"log(final - E), |alpha| sd(ln N) sqrt(1 - r^2) / |r| over its sizes; "
            f"{args.prior}); an upper bound on seed noise, since it also holds misfit"
            + (f"; {', '.join(borrowed)}: the paper's (not in the file)" if borrowed else ""),
        )
    return Noise(
        {m: paper_noise_sd(m) for m in metrics},
        args.eval_noise,
        "default: the scatter about the paper's N laws implied by their reported r = -0.998 over "
        "its 12 "
        "sizes (|alpha| sd(ln N) sqrt(1 - r^2)); an upper bound on seed noise, since it also "
        "holds misfit",
    )


def fits_noise_sd(doc: FitsFile, metrics: list[str]) -> dict[str, float]:
    """Per metric, the scatter of a fitted study about its own law vs N: the residual sd of
    log(final - E) of the log-log line, |alpha| sd(ln N) sqrt(1 - r^2) / |r| (population sd
    over the study's sizes; exact for an OLS line). Metrics without a law vs N, its r or the
    study's sizes are left out."""
    laws = doc.laws()
    sizes = np.asarray(doc.details.get("sizes") or [], float)
    out = {}
    for m in metrics:
        law = laws.get((m, "N"))
        r = law.record.get("r") if law is not None else None
        if law is None or not isinstance(r, (int, float)) or not 0 < abs(r) <= 1:
            continue
        if len(sizes) < 3 or not (sizes > 0).all():
            continue
        sd_lx = float(np.std(np.log(sizes)))
        out[m] = abs(law.alpha) * sd_lx * math.sqrt(max(0.0, 1 - r * r)) / abs(r)
    return out


# ----------------------------------------------------------------------------- report


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


def _fmt(v: float, digits: int = 3) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


def _pct(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{100 * v:.0f}%"


def precision_table(
    summaries, models, level: float, refused: dict | None = None, against=("N", "Cmin")
) -> str:
    """Markdown table: one row per simulated law vs N or Cmin, and per law of a metric whose
    prior the curves cannot represent (`refused`: metric -> why) the refusal instead."""
    lines = [
        "| metric | vs | prior alpha | noise-free fit | median alpha | bias | 95% range of alpha | "
        f"median {level:.0%} CI width | coverage | curve check |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        m = models[s.metric]
        check = m.n_law_error if s.against == "N" else m.cmin_law_error
        flag = " (!)" if check > 0.01 or not m.consistent else ""
        flag += " grid fit" if m.calibrated_to == "grid fit" else ""
        lines.append(
            f"| {s.metric} | {s.against} | {s.prior_alpha:.4g} | {_fmt(s.noise_free_alpha, 4)} "
            f"| {_fmt(s.median, 4)} | {_fmt(s.bias, 2)} | {_fmt(s.spread(), 2)} | "
            f"{_fmt(s.ci_width, 2)} "
            f"| {_pct(s.coverage)} | {100 * check:.2g}%{flag} |"
        )
    for metric, why in (refused or {}).items():
        for a in against:
            lines.append(
                f"| {metric} | {a} | - | not representable: not simulated ({why}) "
                "| - | - | - | - | - | - |"
            )
    return "\n".join(lines)


def joint_table(summaries, level: float) -> str:
    """Markdown table: one row per exponent of the joint law."""
    lines = [
        "| metric | exponent | prior | noise-free fit | median | bias | 95% range | "
        f"median {level:.0%} CI width | coverage | failed fits |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.metric} | {s.param} ({'N' if s.param == 'alpha' else 'D'}) | "
            f"{s.prior_alpha:.4g} "
            f"| {_fmt(s.noise_free_alpha, 4)} | {_fmt(s.median, 4)} | {_fmt(s.bias, 2)} "
            f"| {_fmt(s.spread(), 2)} | {_fmt(s.ci_width, 2)} | {_pct(s.coverage)} | {s.failed} |"
        )
    return "\n".join(lines)


def alternatives_table(
    rows,
    against: list[str],
    total_gh: float,
    repetition: list[str] | None = None,
    unit: str = "GPU-h",
) -> str:
    """Markdown table of the alternatives: their hours (`unit`: GPU-h, or CPU-h for a study
    without GPUs; `total_gh` the plan's), and bias and 95% range of each exponent (the joint
    law's where the design makes it plannable); `repetition`: each design's worst D'/D
    (`plan_repeat.ratio_text`), a column when given."""
    joint = any(r.against == "ND" for _, res, _ in rows for r in res)
    head = ["design", "runs", unit, "x planned"] + [
        f"{a}: {k}" for a in against for k in ("bias", "95% range")
    ]
    if repetition is not None:
        head.insert(4, "worst D'/D")
    if joint:
        head += ["N,D alpha: 95% range", "N,D beta: 95% range"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, (d, res, _) in enumerate(rows):
        by = {r.key: r for r in res}
        cells = [d.name, str(d.runs), hours_text(d.hours), f"{d.hours / total_gh:.2f}"]
        if repetition is not None:
            cells.append(repetition[i])
        for a in against:
            cells += [_fmt(by[(a, "alpha")].bias, 2), _fmt(by[(a, "alpha")].spread(), 2)]
        if joint:
            cells += [
                _fmt(by[k].spread(), 2) if k in by else "-"
                for k in (("ND", "alpha"), ("ND", "beta"))
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the planner computed for one sweep file: its cost, the priors and noise, the
    simulated precision of its laws (and of the joint law), and the alternatives."""

    path: Path  # the sweep file
    sweep: Sweep
    settings: FitSettings  # the sweep's fit: section
    metrics: list[str]
    compare: str  # the metric of the alternatives table
    meta: dict  # the token store's meta.json (or data.expect's stand-in)
    real: bool  # whether `meta` is the store's own
    costs: list[RunCost]
    L: int  # tokens per image
    priors: dict[str, PriorLaws]
    prior_source: str
    noise: Noise
    models: dict[str, CurveModel]  # the calibrated training curves
    refused: dict[str, str]  # metric -> why its prior's curves cannot be simulated
    irreducible: str | float
    irreducible_why: str
    fit: FitPlan
    against: list[str]
    summaries: list[LawSummary]  # simulated laws vs N and Cmin
    # choice of the frontier's early evaluations (cmin_from) -> metric -> noise-free exponent
    cmin_effect: dict[str, dict[str, float]]
    joint: JointPlan
    alt_rows: list[tuple[Design, list[LawSummary], JointPoints]]  # each alternative
    skipped: list[str]  # alternatives not laid out, and why
    replicates: int
    bootstrap: int
    alt_replicates: int
    seed: int
    elapsed: float  # seconds
    cpu: float  # seconds of CPU time
    # what repetition costs each run under a prior R* (scaling.study.laws.plan_repeat)
    repetition_prior: RepetitionPrior | None = None
    repetition: list[RunRepetition] = dataclasses.field(default_factory=list)

    def design_repetition(self) -> list[str]:
        """Each alternative's worst D'/D under the repetition prior."""
        prior = self.repetition_prior
        if prior is None:
            return ["-" for _ in self.alt_rows]
        return [
            ratio_text(run_repetition(d.costs, prior, None, "tokens", self.L))
            for d, _, _ in self.alt_rows
        ]


@dataclasses.dataclass(frozen=True)
class JointPlan:
    """The joint law L(N, D) planned on every run's final point (losses only)."""

    d_unit: str
    points: JointPoints  # every run's final point
    kappa: tuple[float, float]  # FLOPs per parameter per unit of D, and its max/min spread
    priors: dict[str, JointLaw]
    source: str
    gap: str | None  # why it is not plannable on this grid (None: planned)
    summaries: list[LawSummary]  # simulated exponents


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
    models = {m: calibrate(priors[m], planned) for m in metrics}
    # a prior the curve family cannot represent is not simulated: its numbers would be the
    # curve family's, not the prior's (analysis.simulate.CurveModel.not_representable)
    refused = {m: why for m, c in models.items() if (why := c.not_representable())}
    simulated = {m: c for m, c in models.items() if m not in refused}
    irreducible, irreducible_why = resolve_irreducible(settings, sweep)
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


def plan_repetition_metric(compare: str, joint: JointPlan) -> str | None:
    """The loss whose joint prior prices repetition: the compared metric's, else the first
    joint prior's (None: no joint prior)."""
    if compare in joint.priors:
        return compare
    return next(iter(joint.priors), None)


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


# ----------------------------------------------------------------------------- render


def render_plan(plan: Plan) -> str:
    """plan.md: the cost, the expected precision, the joint law, the alternatives."""
    lines = [
        *_cost_section(plan),
        *_precision_section(plan),
        *_cmin_from_section(plan),
        *_joint_section(plan),
        *_repetition_section(plan),
        *_alternatives_section(plan),
        "",
        f"Planned in {plan.elapsed:.1f} s ({plan.cpu:.1f} s of CPU time).",
    ]
    return "\n".join(lines) + "\n"


def _tflops(plan: Plan) -> float:
    return plan.costs[0].tflops_per_gpu if plan.costs else float("nan")


def _n_branches(plan: Plan) -> int:
    return sum(c.parent is not None for c in plan.costs)


def _cost_section(plan: Plan) -> list[str]:
    costs, meta, n_branches = plan.costs, plan.meta, _n_branches(plan)
    splits = ", ".join(f"{k} {int(v.get('count', 0)):,}" for k, v in meta.get("splits", {}).items())
    return [
        f"# Plan: {plan.sweep.spec.name} ({plan.path})",
        "",
        f"## Cost ({len(costs)} runs"
        + (
            f", {n_branches} of them decay branches (steps: the parent's + its own; it pays for "
            "its own)"
            if n_branches
            else ""
        )
        + (
            f"; CPU-hours (core-hours: no GPUs) at {costs[0].gflops_per_cpu:g} GFLOP/s per "
            "CPU core, assumed: cluster.assumed_gflops_per_cpu)"
            if hours_unit(costs) == "CPU-h"
            else f"; GPU-hours at {_tflops(plan):g} TFLOP/s per GPU, assumed: "
            "cluster.assumed_tflops_per_gpu)"
        ),
        "",
        cost_table(costs),
        "",
        f"Token store: {human(store_bytes(meta))}B on disk ({splits} stored sequences (augmented "
        "views and flips included)"
        f" x {plan.L} tokens, uint16, + an int32 label each)"
        + ("" if plan.real else "; from data.expect (the store is not readable yet)")
        + ".",
    ]


PRECISION_NOTE = (
    "bias = median fitted alpha - prior alpha; 95% range = width of the central 95% of the "
    "fitted exponents over the simulated studies; CI width and coverage = the fit's bootstrap "
    "interval and how often it holds the prior alpha. Noise-free fit: the same fit on the study "
    "drawn without noise (its distance from the prior is the bias of the grid and estimator, "
    "not of the noise). Curve check: how far the simulated curves (E + A N^-a + B (C/N)^-b, "
    "calibrated to the prior) are from the prior law (max relative error of the reducible "
    "metric); (!): above 1%, or a prior whose |Cmin exponent| is not below its |N exponent|: no "
    "such curve reproduces both prior laws, and the bias there says more about the prior than "
    "about the grid."
)
GRID_FIT_NOTE = (
    " grid fit: no curve's envelope matched the prior, so the curves (with a floor delta below "
    "E) were calibrated so that the laws fitted at E to this grid's own final points and Cmin "
    "frontier are the prior's; the check is those fitted laws against the prior's, and the "
    "noise-free fit differs from the prior by the fitter's own E (and its frontier) only."
)


def _precision_section(plan: Plan) -> list[str]:
    noise, settings = plan.noise, plan.settings
    return [
        "",
        f"## Expected precision ({plan.replicates} simulated studies, {plan.bootstrap} "
        "bootstrap samples each)",
        "",
        f"Prior: {plan.prior_source}. Noise: {noise.source}; per-run sd of log(metric - E): "
        + ", ".join(f"{m} {noise.sd[m]:.3g}" for m in plan.metrics)
        + (f"; per evaluation {noise.eval_sd:g}" if noise.eval_sd else "")
        + ".",
        f"Fit settings (the sweep's fit: section): irreducible={plan.irreducible}"
        f"{plan.irreducible_why}"
        + (
            f" (one E per loss, located by the laws vs {settings.E_from} and refitted in every "
            "bootstrap draw, as scaling.fit)"
            if plan.irreducible == "fit"
            else ""
        )
        + f", method={settings.method}, "
        f"smooth={settings.smooth}, ci={settings.ci}; hold-out off."
        + (
            " Laws vs N and Cmin: the parent runs (a branch's final point lies on its parent's "
            "simulated curve)."
            if _n_branches(plan)
            else ""
        ),
        "",
        precision_table(plan.summaries, plan.models, settings.ci, plan.refused, plan.against),
        "",
        PRECISION_NOTE
        + (
            GRID_FIT_NOTE
            if any(plan.models[m].calibrated_to == "grid fit" for m in plan.models)
            else ""
        ),
    ]


def _cmin_from_section(plan: Plan) -> list[str]:
    effect = plan.cmin_effect
    if not effect:
        return []
    names = list(effect)
    metrics = list(next(iter(effect.values())))
    lines = [
        "",
        "### The Cmin frontier's early evaluations (fit: cmin_from)",
        "",
        f"This sweep: cmin_from = {plan.settings.cmin_from}. The Cmin exponent of the study "
        "drawn without noise, fitted at the curves' own E, when each run's evaluations below a "
        "fraction of its compute are left out of the frontier (warmup_end: each run's "
        "warm-up steps over its steps); the laws vs N do not change.",
        "",
        "| metric | prior alpha | " + " | ".join(f"cmin_from {n}" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for m in metrics:
        prior = plan.priors[m].cmin_law.alpha
        lines.append(
            f"| {m} | {prior:.4g} | " + " | ".join(_fmt(effect[n][m], 4) for n in names) + " |"
        )
    return lines


def _joint_section(plan: Plan) -> list[str]:
    joint = plan.joint
    lines = ["", "### Joint law L(N, D) = E + A/N^alpha + B/D^beta (scaling.fit --law nd)", ""]
    if joint.gap:
        return lines + [
            f"Not planned for this grid: {joint.gap}."
            + (" The alternatives with decay branches below plan it." if joint.priors else "")
        ]
    return lines + [
        f"Points: the annealed final point of every run, {joint.points.describe()}; D in "
        f"training {joint.d_unit}.",
        f"Prior: {joint.source}.",
        "Noise: as above, on log(L - E); a parent and its decay branches share one seed "
        "factor (a branch continues its parent's trajectory). Fit: analysis.jointlaw as "
        "scaling.fit --law nd (Huber loss on log residuals, L-BFGS-B, bootstrap over "
        "families: a parent with its branches); "
        "each simulated study starts from the noise-free fit instead of the grid of starts.",
        "",
        joint_table(joint.summaries, plan.settings.ci),
    ]


def _repetition_section(plan: Plan) -> list[str]:
    if plan.repetition_prior is None:
        return []
    metric = plan_repetition_metric(plan.compare, plan.joint)
    return [
        "",
        *repetition_table(plan.repetition, plan.repetition_prior, metric, plan.joint.source),
    ]


def _alternatives_section(plan: Plan) -> list[str]:
    if not plan.alt_rows:
        return []
    total_gh = sum(c.hours for c in plan.costs)
    lines = [
        "",
        f"## Alternatives ({plan.compare}; {plan.alt_replicates} simulated studies each, point "
        "fits)",
        "",
        alternatives_table(
            plan.alt_rows,
            plan.against,
            total_gh,
            plan.design_repetition(),
            hours_unit(plan.costs),
        ),
    ]
    if plan.skipped:
        lines += ["", "Not laid out: " + "; ".join(plan.skipped) + "."]
    prior = plan.joint.priors.get(plan.compare)
    if prior is not None:
        lines += [
            "",
            "N,D columns: the joint law's exponents where the design gives several data "
            "amounts per size (decay branches), '-' elsewhere; prior alpha "
            f"{prior.alpha:.3g}, beta {prior.beta:.3g}. A WSD "
            "parent costs what the planned run costs; a branch pays for its cool-down.",
        ]
    return lines


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
