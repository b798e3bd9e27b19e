"""The VAR paper's published scaling laws (Tian et al. 2024, eq. 11-16) as data.

Every law has the form ``y - E = (beta * x)^alpha`` where ``y`` is a test metric
(cross-entropy or token error rate, last scale or averaged over all scales), ``E`` the
irreducible loss the authors subtracted (losses only; error rates are fitted directly) and
``x`` either N in billions of parameters or Cmin in PFLOPs (1e15 FLOPs).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from contracts.metrics import METRICS

AGAINST = ("N", "Cmin")

# what one unit of x is, in raw counts (params, FLOPs), and how it is written
X_SCALE = {"N": 1e9, "Cmin": 1e15}
X_UNIT = {
    "N": "billions of parameters (params / 1e9)",
    "Cmin": "PFLOPs of training compute (FLOPs / 1e15)",
}

# where the published laws were measured, in X units: N from the paper's smallest to largest
# model (18.5M to 2.0B parameters); Cmin: the paper says 6 decades and gives no FLOP formula,
# so the range is approximate: from 6 N D of the largest run (2.0B params x 305B tokens =
# 3.7e21 FLOPs = 3.7e6 PFLOPs) down six decades. Plots draw the laws only over these ranges.
MEASURED_RANGE = {"N": (0.0185, 2.0), "Cmin": (3.7, 3.7e6)}
MEASURED_RANGE_NOTE = {
    "N": "the paper's 12 models, 18.5M-2.0B params",
    "Cmin": "approx. 3.7-3.7e6 PFLOPs (6 decades ending at 6ND of the largest run)",
}

# the authors' irreducible terms (from the tokenizer's token distribution)
PAPER_IRREDUCIBLE = {"ce_avg": 5.0, "ce_last": 4.5, "err_avg": 0.0, "err_last": 0.0}


@dataclasses.dataclass(frozen=True)
class PaperLaw:
    """One published law: ``metric - E = (beta * x)^alpha``, x in `X_UNIT[against]`."""

    metric: str
    against: str
    alpha: float
    beta: float
    E: float
    r: float  # Pearson r of the log-log data as reported (approximate: "near")

    @property
    def x_unit(self) -> str:
        return X_UNIT[self.against]

    def reducible(self, x) -> np.ndarray:
        """(beta * x)^alpha for x in the law's units; shape of x."""
        return (self.beta * np.asarray(x, dtype=float)) ** self.alpha

    def predict(self, x) -> np.ndarray:
        """E + (beta * x)^alpha: the metric itself; shape of x."""
        return self.E + self.reducible(x)


PAPER_LAWS: tuple[PaperLaw, ...] = (
    # vs N (billions of parameters), r near -0.998
    PaperLaw("ce_last", "N", -0.23, 2.0, 4.5, -0.998),
    PaperLaw("ce_avg", "N", -0.20, 2.5, 5.0, -0.998),
    PaperLaw("err_last", "N", -0.016, 4.9e2, 0.0, -0.998),
    PaperLaw("err_avg", "N", -0.010, 6.5e2, 0.0, -0.998),
    # vs Cmin (PFLOPs on the Pareto frontier), r near -0.99
    PaperLaw("ce_last", "Cmin", -0.13, 2.2e-5, 4.5, -0.99),
    PaperLaw("ce_avg", "Cmin", -0.16, 1.5e-5, 5.0, -0.99),
    PaperLaw("err_last", "Cmin", -0.0067, 8.1e-2, 0.0, -0.99),
    PaperLaw("err_avg", "Cmin", -0.011, 4.4e-2, 0.0, -0.99),
)


def paper_law(metric: str, against: str) -> PaperLaw:
    """The published law for `metric` (ce_avg, ce_last, err_avg, err_last) against N or Cmin."""
    for law in PAPER_LAWS:
        if law.metric == metric and law.against == against:
            return law
    raise KeyError(
        f"no published law for metric {metric!r} against {against!r}; "
        f"metrics: {', '.join(METRICS)}; against: {', '.join(AGAINST)}"
    )
