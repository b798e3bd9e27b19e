"""What repetition costs each planned run: its effective data D'/D and the loss it gives up.

Each run trains on U unique tokens (the images of its training split, or of its data.subset,
x tokens per image; `RunBudget.unique_tokens`) for D tokens. Under a prior R* (and V*, the
worth of K stored views per image) the repetition-aware law (`analysis.repeatlaw`) counts
its data as D' <= D; the loss repetition costs is what the prior joint law
L = E + A / N^alpha + B / D^beta predicts between D' and D: B (D'^-beta - D^-beta).

The prior: a fits.json of ``scaling.fit --set law=nd-repeat`` (``--prior``) with a fitted
R* (and V* when its runs varied the views), else the language value R* = 15.4 (Muennighoff
et al. 2023), flagged as an ASSUMPTION: nobody has measured R* for next-scale image tokens.
Without a fitted V* the worth of the stored views is unknown, so both ends are given: views
worth nothing (U = images x L: the law's own reading without V*) and views as good as fresh
images (U = images x views x L).

Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from analysis.jointlaw import JointLaw
from analysis.repeatlaw import LANGUAGE_R_STAR, effective_ratio
from contracts.fits import FitsFile
from scaling.study.laws.plan_cost import RunCost


@dataclasses.dataclass(frozen=True)
class RepetitionPrior:
    """R* (and V*, None: not known) with where they come from."""

    R_star: float
    V_star: float | None
    source: str
    assumed: bool  # True: the language value, not measured on image tokens
    R_star_ci: tuple[float, float | None] | None = None


def repetition_prior(doc: FitsFile | None, spec: str) -> RepetitionPrior:
    """The R* of a nd-repeat fits.json `doc` (read from `spec`) when it has a number, else the
    language value, flagged as an assumption (with why the file gave none)."""
    why = "no fits.json given (--prior)" if doc is None else f"{spec} holds no nd-repeat law"
    for law in (doc.joint or ()) if doc is not None else ():
        rec = law.record
        if rec.get("law") != "nd-repeat":
            continue
        if isinstance(rec.get("R_star"), (int, float)):
            ci = rec.get("R_star_ci")
            V = rec.get("V_star")
            return RepetitionPrior(
                float(rec["R_star"]),
                float(V) if isinstance(V, (int, float)) else None,
                f"fitted: R* of {law.metric} in {spec}",
                False,
                tuple(ci) if ci else None,
            )
        why = f"{spec}: R* of {law.metric} not identified ({rec.get('R_star_note')})"
    return RepetitionPrior(
        LANGUAGE_R_STAR,
        None,
        f"ASSUMED: the language value R* = {LANGUAGE_R_STAR} (Muennighoff et al. 2023; not "
        f"measured on image tokens; {why})",
        True,
    )


@dataclasses.dataclass(frozen=True)
class RunRepetition:
    """One run's repetition: its data and D'/D under the prior (views worth nothing, and as
    good as fresh images, or as the fitted V* says), with the loss that costs."""

    run: str
    epochs: float  # passes over the run's images
    views: int  # stored sequences read per image (views x flips)
    passes: float  # passes over each stored sequence
    unique_tokens: float
    tokens: float
    ratio_low: float  # D'/D with views worth nothing (or with the fitted V*)
    ratio_high: float  # D'/D with views as good as fresh images (or with the fitted V*)
    cost_low: float | None  # loss given up, at ratio_low (None: no joint prior)
    cost_high: float | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _cost(law: JointLaw | None, tokens: float, ratio: float, per_unit: float) -> float | None:
    """B ((ratio D)^-beta - D^-beta) with D in the law's unit (tokens / `per_unit`)."""
    if law is None:
        return None
    D = tokens / per_unit
    return float(law.B * ((ratio * D) ** -law.beta - D**-law.beta))


def run_repetition(
    costs: list[RunCost], prior: RepetitionPrior, law: JointLaw | None, d_unit: str, L: int
) -> list[RunRepetition]:
    """Every planned run's repetition (`costs`), with the loss it costs under the joint prior
    `law` (D in `d_unit`: tokens, or images of `L` tokens; None: no loss column)."""
    per_unit = 1.0 if d_unit == "tokens" else float(L)
    out = []
    for c in costs:
        b = c.budget
        tokens, unique = float(b.tokens), float(b.unique_tokens)
        K = int(b.rows_per_image)
        low = effective_ratio(tokens, unique, K, prior.R_star, prior.V_star, fresh=False)
        high = effective_ratio(tokens, unique, K, prior.R_star, prior.V_star, fresh=True)
        out.append(
            RunRepetition(
                run=c.run_id,
                epochs=float(b.epochs),
                views=int(b.rows_per_image),
                passes=float(b.passes),
                unique_tokens=unique,
                tokens=tokens,
                ratio_low=low,
                ratio_high=high,
                cost_low=_cost(law, tokens, low, per_unit),
                cost_high=_cost(law, tokens, high, per_unit),
            )
        )
    return out


def _range(a: float, b: float, fmt: str = ".3g") -> str:
    return f"{a:{fmt}}" if math.isclose(a, b, rel_tol=1e-3) else f"{a:{fmt}} - {b:{fmt}}"


def ratio_text(rows: list[RunRepetition]) -> str:
    """The worst run's D'/D (as a range when the views' worth is unknown): a design's cell."""
    if not rows:
        return "-"
    worst = min(rows, key=lambda r: r.ratio_low)
    return _range(worst.ratio_low, worst.ratio_high, ".2f")


def repetition_table(
    rows: list[RunRepetition],
    prior: RepetitionPrior,
    metric: str | None,
    joint_source: str = "",
) -> list[str]:
    """plan.md's section: one row per run (Markdown lines); `metric`: the loss whose joint
    prior (from `joint_source`) prices the repetition (None: no loss column)."""
    known = prior.V_star is not None
    views = (
        f"views counted with the fitted V* = {prior.V_star:.3g}"
        if known
        else "left: views worth nothing (U = images x L); right: views as good as fresh "
        "images (U = images x views x L); the worth of a stored view is not known (fit a study "
        "that varies them: law nd-repeat)"
    )
    cost_head = f"{metric} given up" if metric else "loss given up"
    lines = [
        f"## Repetition (R* = {prior.R_star:.3g}; {prior.source})",
        "",
        "D'/D: effective data over data seen, D' = U + U R* (1 - exp(-R / R*)), R = D / U - 1 "
        f'(docs/fitting.md, "Repeated data"); {views}. Loss given up: B (D\'^-beta - '
        "D^-beta) of the joint prior"
        + (f" ({_source_of(joint_source, metric)})" if metric else " (none here: no joint prior)")
        + ".",
        "",
        f"| run | epochs | views x flips | passes per sequence | D'/D | {cost_head} |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cost = (
            "-"
            if r.cost_low is None or r.cost_high is None
            else _range(r.cost_low, r.cost_high, ".3g")
        )
        lines.append(
            f"| {r.run} | {r.epochs:.3g} | {r.views} | {r.passes:.3g} "
            f"| {_range(r.ratio_low, r.ratio_high, '.3f')} | {cost} |"
        )
    if prior.assumed:
        lines += [
            "",
            f"ASSUMPTION: R* = {prior.R_star:g} is the language value; a study with "
            "`data.subset` and epochs as axes measures it for these tokens (`scaling.fit "
            "--set law=nd-repeat`; pass its fits.json as --prior).",
        ]
    return lines


def _source_of(source: str, metric: str) -> str:
    """The part of the joint priors' description ("ce_last: ...; ce_avg: ...") about `metric`."""
    start = source.find(f"{metric}: ")
    if start < 0:
        return source
    ends = [
        source.find(f"; {m}: ", start)
        for m in ("ce_avg", "ce_last", "err_avg", "err_last")
        if m != metric
    ]
    ends = [e for e in ends if e >= 0]
    return source[start : min(ends)] if ends else source[start:]


def repetition_document(rows: list[RunRepetition], prior: RepetitionPrior) -> dict[str, Any]:
    """plan.json's `repetition` section."""
    return {
        "R_star": prior.R_star,
        "R_star_ci": list(prior.R_star_ci) if prior.R_star_ci else None,
        "V_star": prior.V_star,
        "source": prior.source,
        "assumed": prior.assumed,
        "ratio": "D'/D; low: views worth nothing, high: views as good as fresh images (equal "
        "when V* is known)",
        "runs": [r.as_dict() for r in rows],
    }
