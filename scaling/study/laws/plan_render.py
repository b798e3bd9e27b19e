"""plan.md of ``python -m scaling.plan``: the rendering of a computed `Plan` into markdown
(the cost, the expected precision, the Cmin frontier's early evaluations, the joint law, the
repetition and the alternatives sections, with their tables and notes). Reads only the `Plan`;
computes and writes nothing.
"""

from __future__ import annotations

import math

from scaling.core.tables import human
from scaling.study.laws.plan_cost import cost_table, hours_text, hours_unit, store_bytes
from scaling.study.laws.plan_repeat import repetition_table
from scaling.study.laws.plan_result import Plan, plan_repetition_metric


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
        m = models[s.metric].for_law(s.against)
        check = m.law_error(s.against)
        flag = " (!)" if check > 0.01 or not m.consistent else ""
        flag += f" {m.calibrated_to}" if m.calibrated_to != "envelope" else ""
        flag += " (own curves)" if models[s.metric].cmin_curves is not None else ""
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
    " grid fit: the curves (with a floor delta below E and an un-annealed excess k) were "
    "calibrated so that the laws fitted at E to this grid's own final points and Cmin frontier "
    "are the prior's; the check is those fitted laws against the prior's, and the noise-free "
    "fit differs from the prior by the fitter's own E (and its frontier) only. checked on the "
    "grid: a study's own fits as prior are laws of its grid, so even the first curves must "
    "give the prior's exponents (within 2%) when this grid is fitted without noise. own "
    "curves: no one curve set gives both laws; with E not fitted they are fitted independently, "
    "so each is drawn from curves of its own (same noise)."
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
            if any(plan.models[m].calibrated_to != "envelope" for m in plan.models)
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
