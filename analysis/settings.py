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
from .tokenizer import BITS_COLUMN

# what may be fitted (and pick best_over's value): the test metrics, the sample-quality ones
# (lower is better) and bits per image (the tidy table's loss comparable across tokenizers)
FITTABLE = (*METRICS, *SAMPLE_METRICS, BITS_COLUMN)

IRREDUCIBLE_MODES = ("auto", "paper", "none", "fit")
E_SOURCES = ("N", "all")  # which laws' points locate a fitted E

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
    """Choices for one fitting job (fit.yaml keys; `--set KEY=VALUE` overrides one).

    Each field's comment (or its entry here) is its meaning in docs/configuration.md and in
    docs/fitting.md's settings table, both written by scripts/figures/config_reference.py.

    irreducible: E subtracted from the losses: "auto" ("paper" when every run's token store
        was made with the official tokenizer vae_ch160v4096z32.pth, else "fit"), "paper"
        (E_avg = 5, E_last = 4.5, the authors' values; refused when a loss goes below
        them), "none" (0), a number, or "fit" (one E per loss, fitted once and shared by
        its laws vs N and vs Cmin; docs/fitting.md, "The irreducible loss E"). Error rates
        are always fitted directly (E = 0).
    final: the point of each run in the laws vs N: its "last" evaluation (the paper) or its
        "best" (lowest value of the metric).
    include_unfinished: also fit unfinished runs against N (listed and marked); by default
        they are left out.
    compute: which FLOP count: "exact" = column flops (counted from the model's shapes: all
        matmuls including block-causal attention and the head; training = 3 x forward),
        "6nd" = column flops_6nd (6 N tokens).
    holdout: k largest model sizes left out of a second fit and predicted; -1 = auto (2 when
        there are at least 6 sizes, else 0).
    backtest: also write backtest.json, backtest.md (appended to fits.md) and backtest.png:
        leave-future-out over sizes and over compute, and whole-curve forecasts from the
        first `forecast_frac` of each run with the curve law `curve_law`
        (scaling.study.laws.forecasts; docs/forecasts.md).
    """

    irreducible: str | float = "auto"
    # with E fitted: the points that locate it: N (each run's final point, the laws vs N; the
    # Cmin law takes that E) or all (those and the Cmin frontier's, the default before; the
    # frontier is a power law only where the grid holds each compute's optimal size);
    # docs/fitting.md, "Intervals that carry E"
    E_from: Literal["N", "all"] = "N"
    compute: Literal["exact", "6nd"] = "exact"
    # the metrics fitted: the four losses and error rates by default; also fid, sample_fd,
    # sample_err and bits_per_image, the loss comparable across tokenizers (a list:
    # --set metrics=[ce_last,ce_avg])
    metrics: tuple[str, ...] = METRICS
    holdout: int = -1
    bootstrap: int = 1000  # bootstrap samples over runs (0: no intervals)
    include_subset: bool = False  # also fit subset evaluations
    # ols: least squares in log-log (closed form); robust: Huber loss on the log residuals,
    # from several starting points
    method: Literal["ols", "robust"] = "ols"
    # Cmin only: smooth each run's curve in log-log over +-k evaluations before taking the
    # frontier (docs/fitting.md, "Reading the Cmin fit")
    smooth: int = 0
    against: tuple[str, ...] = AGAINST  # the laws: vs N, vs Cmin
    paper: bool = False  # draw the paper's published laws (dotted black lines)
    ci: float = 0.95  # interval level
    seed: int = 0  # bootstrap seed
    final: Literal["last", "best"] = "last"
    include_unfinished: bool = False
    # power: the laws vs N and Cmin; nd: the joint law L(N, D) instead (analysis.jointlaw;
    # docs/fitting.md, "The joint law L(N, D)"); nd-repeat: the joint law with repeated data
    # counted as effective data D' (analysis.repeatlaw; "Repeated data: the law nd-repeat")
    law: Literal["power", "nd", "nd-repeat"] = "power"
    # the laws of each scale's test loss (ce_by_scale) vs N and Cmin instead, with the
    # entropy of the scale's codes (scaling.study.laws.fit_scales; docs/fitting.md, "Per-scale
    # laws")
    per_scale: bool = False
    data_unit: Literal["tokens", "images"] = "tokens"  # D of the joint law: tokens or images
    # a grid axis: fit each size's best run over it instead of one law per value (its
    # run-id label or config key: lr, optim.base_lr; docs/fitting.md, "Studies with more axes")
    best_over: str | None = None
    # the metric whose final value picks it (None: the law's own); any fittable metric
    best_by: str | None = None
    # one law through the runs of every axis value (only when the other axes do not matter)
    pool: bool = False
    # Cmin only: the evaluations the frontier may use: 0 (all, the paper's raw frontier), a
    # fraction f in (0, 1) (each run's evaluations at >= f of its compute) or "warmup_end"
    # (after the learning-rate warm-up: optim.warmup_steps, else optim.warmup_frac x the
    # run's length); the figure marks the others with grey crosses
    cmin_from: str | float = 0.0
    backtest: bool = False
    # the whole-curve backtest forecasts each run's end from this first fraction of its steps
    forecast_frac: float = 0.25
    # the whole-curve law of forecasts: lra (lr annealing, Tissue et al. 2024), mpl
    # (multi-power, Luo et al. 2025), const (schedule-blind); docs/fitting.md, "Which
    # whole-curve law"
    curve_law: Literal["lra", "mpl", "const"] = "lra"

    def as_record(self) -> dict:
        """The settings as fits.json's `settings` field records them (tuples as lists)."""
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
        }

    def __post_init__(self):
        if isinstance(self.irreducible, str) and self.irreducible not in IRREDUCIBLE_MODES:
            try:
                object.__setattr__(self, "irreducible", float(self.irreducible))
            except ValueError:
                raise InvalidSetting(
                    "irreducible",
                    f"must be 'auto', 'paper', 'none', 'fit' or a number; got {self.irreducible!r}",
                ) from None
        if self.E_from not in E_SOURCES:
            raise InvalidSetting("E_from", f"must be 'N' or 'all'; got {self.E_from!r}")
        if self.final not in ("last", "best"):
            raise InvalidSetting("final", f"must be 'last' or 'best'; got {self.final!r}")
        if isinstance(self.irreducible, float) and not self.irreducible >= 0:
            raise InvalidSetting("irreducible", f"must be >= 0; got {self.irreducible}")
        bad = [m for m in self.metrics if m not in FITTABLE]
        if bad or not self.metrics:
            raise InvalidSetting(
                "metrics",
                f"must be a non-empty list of {', '.join(FITTABLE)}; got {list(self.metrics)}",
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
        if self.best_by is not None and self.best_by not in FITTABLE:
            raise InvalidSetting(
                "best_by", f"must be one of {', '.join(FITTABLE)}; got {self.best_by!r}"
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
        if self.per_scale and self.law != "power":
            raise InvalidSetting("per_scale", f"fits power laws per scale; not with law={self.law}")
        if self.pool and self.best_over is not None:
            raise InvalidSetting(
                "pool",
                "pool (one law through every axis value) and best_over "
                "(each size's best value) exclude each other",
            )
