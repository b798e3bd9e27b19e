"""What the planner computed for one sweep file: the `Plan` record (with its `JointPlan`) that
`scaling.study.laws.plan` fills and that `plan_render` and the plan.json writer read, and
which loss prices repetition (`plan_repetition_metric`). Its own module so that the renderer
needs no import of the CLI.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from analysis.calibration import CurveModel, PriorLaws
from analysis.jointlaw import JointLaw
from analysis.settings import FitSettings
from analysis.simulate import FitPlan, JointPoints, LawSummary, Noise
from scaling.study.laws.plan_cost import RunCost
from scaling.study.laws.plan_designs import Design
from scaling.study.laws.plan_repeat import (
    RepetitionPrior,
    RunRepetition,
    ratio_text,
    run_repetition,
)
from scaling.study.sweep.sweep import Sweep


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


def plan_repetition_metric(compare: str, joint: JointPlan) -> str | None:
    """The loss whose joint prior prices repetition: the compared metric's, else the first
    joint prior's (None: no joint prior)."""
    if compare in joint.priors:
        return compare
    return next(iter(joint.priors), None)
