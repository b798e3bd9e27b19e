"""The choices of one fitting job: `FitSettings` (a sweep's `fit:` section, ``fit.yaml``).

A frozen dataclass checked on construction; `scaling.core.config_io` builds it from YAML
with located errors (it turns an `InvalidSetting` into ``file:line: fit.key: message``), the
fit CLI overrides fields from its flags and `analysis.fitting.fit_study` reads it.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from contracts.metrics import METRICS, SAMPLE_METRICS

from .paper import AGAINST

IRREDUCIBLE_MODES = ("auto", "paper", "none", "fit")

# best_over's old spellings -> the one it accepts (one spelling per setting): the learning
# rate's names of the official trainer and of older configs. An axis is otherwise named by its
# run-id label (lr) or its config key (optim.base_lr); add an axis's old names here.
RENAMED_AXES: dict[str, str] = {
    old: "lr"
    for bare in ("lr", "tblr", "blr", "peak_lr", "learning_rate")
    for old in (bare, f"optim.{bare}")
    if old != "lr"  # the lr's run-id label is the accepted spelling itself
}


class InvalidSetting(ValueError):
    """`field` holds a value that is not allowed (the shape of `scaling.core.config_io`'s
    `InvalidValue`, which this torch-free package cannot import)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """Choices for one fitting job (fit.yaml keys; CLI flags of the same names override them).

    irreducible: E subtracted from the losses: "auto" (the paper's E when the runs' token
        store was made with the official tokenizer, else "fit"), "paper" (E_avg=5,
        E_last=4.5), "none" (0), "fit" (one E per loss, fitted jointly and shared by its laws
        vs N and vs Cmin), or a number. Error rates are always fitted directly.
    final: the N laws' point per run: "last" evaluation (the paper) or "best" (lowest).
    include_unfinished: also fit unfinished runs vs N (marked); default: left out.
    compute: "exact" (column flops) or "6nd" (column flops_6nd).
    holdout: k largest model sizes left out of a second fit and predicted; -1 = auto
        (2 when there are at least 6 sizes, else 0).
    backtest: also write the backtests (scaling.study.laws.forecasts): leave-future-out
        over sizes and compute, and whole-curve forecasts from the first `forecast_frac` of
        each run with the curve law `curve_law` (lra, mpl or const; analysis.curvelaw).
    """

    irreducible: str | float = "auto"
    compute: Literal["exact", "6nd"] = "exact"
    metrics: tuple[str, ...] = METRICS  # the metrics fitted
    holdout: int = -1
    bootstrap: int = 1000  # bootstrap samples over runs (0: no intervals)
    include_subset: bool = False  # also fit subset evaluations
    method: Literal["ols", "robust"] = "ols"  # ols: least squares in log-log; robust: Huber
    smooth: int = 0  # Cmin: smooth each curve over +-k evaluations first
    against: tuple[str, ...] = AGAINST  # the laws: vs N, vs Cmin
    paper: bool = False  # draw the paper's published laws
    ci: float = 0.95  # interval level
    seed: int = 0  # bootstrap seed
    final: Literal["last", "best"] = "last"
    include_unfinished: bool = False
    law: Literal["power", "nd"] = "power"  # nd: the joint L(N, D) (analysis.jointlaw)
    data_unit: Literal["tokens", "images"] = "tokens"  # D of the joint law
    best_over: str | None = None  # an axis: fit each size's best run over it
    best_by: str | None = None  # the metric that picks it (None: each law's own metric)
    pool: bool = False  # one law through the runs of every axis value (no per-value laws)
    # evaluations the Cmin frontier may use: 0 (all, the paper's raw frontier), a fraction
    # f in (0, 1) (those at >= f of the run's compute) or "warmup_end" (after the warm-up)
    cmin_from: str | float = 0.0
    backtest: bool = False  # leave-future-out backtests and whole-curve forecasts (backtest.md)
    forecast_frac: float = 0.25  # whole-curve backtest: forecast from this first fraction
    curve_law: Literal["lra", "mpl", "const"] = "lra"  # the whole-curve law (analysis.curvelaw)

    def __post_init__(self):
        if isinstance(self.irreducible, str) and self.irreducible not in IRREDUCIBLE_MODES:
            try:
                object.__setattr__(self, "irreducible", float(self.irreducible))
            except ValueError:
                raise InvalidSetting(
                    "irreducible",
                    f"must be 'auto', 'paper', 'none', 'fit' or a number; got {self.irreducible!r}",
                ) from None
        if self.final not in ("last", "best"):
            raise InvalidSetting("final", f"must be 'last' or 'best'; got {self.final!r}")
        if isinstance(self.irreducible, float) and not self.irreducible >= 0:
            raise InvalidSetting("irreducible", f"must be >= 0; got {self.irreducible}")
        bad = [m for m in self.metrics if m not in METRICS + SAMPLE_METRICS]
        if bad or not self.metrics:
            raise InvalidSetting(
                "metrics",
                f"must be a non-empty list of "
                f"{', '.join(METRICS + SAMPLE_METRICS)}; got {list(self.metrics)}",
            )
        bad = [a for a in self.against if a not in AGAINST]
        if bad or not self.against:
            raise InvalidSetting(
                "against", f"must be a non-empty list of N, Cmin; got {list(self.against)}"
            )
        if self.holdout < -1:
            raise InvalidSetting("holdout", f"must be >= 0 (or -1 for auto); got {self.holdout}")
        if self.bootstrap < 0:
            raise InvalidSetting("bootstrap", f"must be >= 0; got {self.bootstrap}")
        if self.smooth < 0:
            raise InvalidSetting("smooth", f"must be >= 0; got {self.smooth}")
        if not 0 < self.ci < 1:
            raise InvalidSetting("ci", f"must be between 0 and 1; got {self.ci}")
        if not 0 < self.forecast_frac < 1:
            raise InvalidSetting(
                "forecast_frac", f"must be between 0 and 1; got {self.forecast_frac}"
            )
        if self.curve_law not in ("lra", "mpl", "const"):
            raise InvalidSetting(
                "curve_law", f"must be one of lra, mpl, const; got {self.curve_law!r}"
            )
        if self.best_by is not None and self.best_by not in METRICS:
            raise InvalidSetting(
                "best_by", f"must be one of {', '.join(METRICS)}; got {self.best_by!r}"
            )
        if self.best_over is not None:
            old = self.best_over.removeprefix("grid.")
            if old in RENAMED_AXES:
                raise InvalidSetting(
                    "best_over",
                    f"{self.best_over!r} is an old name of an axis; the axis is spelled "
                    f"best_over={RENAMED_AXES[old]}",
                )
        if self.best_by is not None and self.best_over is None:
            raise InvalidSetting("best_by", "needs best_over (the axis to pick the best value of)")
        if self.cmin_from != "warmup_end":
            try:
                value = float(self.cmin_from)
            except (TypeError, ValueError):
                value = -1.0
            if not 0 <= value < 1:
                raise InvalidSetting(
                    "cmin_from",
                    f"must be 'warmup_end', 0 or a fraction in (0, 1); got {self.cmin_from!r}",
                )
            object.__setattr__(self, "cmin_from", value)
        if self.pool and self.best_over is not None:
            raise InvalidSetting(
                "pool",
                "pool (one law through every axis value) and best_over "
                "(each size's best value) exclude each other",
            )
