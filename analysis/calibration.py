"""The planner's training curves: one curve per planned size between a prior's two laws.

A planned study is a list of `PlannedRun` (size N, seed, and the training compute at each of
its full evaluations); its prior (`PriorLaws`) gives two laws per metric, y - E =
(beta x)^alpha against N (final evaluation of each run) and against Cmin (compute frontier).
The simulator (`analysis.simulate`) needs a training curve per size between them; it is taken
in the Chinchilla form (`CurveModel`)

    y(N, c) = E + A N^-a + B (c / N)^-b        (c = training FLOPs so far; c/N ~ tokens seen)

whose compute-optimal envelope is exactly a power law in c with exponent -a b / (a + b).
`calibrate` chooses (A, a, B, b) by least squares in log space so that (i) the final
evaluations of the planned runs lie on the prior's N law and (ii) the envelope over sizes is
the prior's Cmin law over the planned compute range; the residuals of both are reported
(`CurveModel.n_law_error`, `cmin_law_error`): laws that no such curve family reproduces (the
paper's error-rate laws, for example) show up there. A prior this misses (a study's own fits
on a grid whose runs all see the same data, whose fitted E absorbs the data term) is tried with
`calibrate_to_grid`: a floor delta below E, a term k (1 - c / c_final) for evaluations taken
before the learning rate has decayed, and the laws fitted at E to the grid's own finals and
frontier as targets. Intermediate evaluations follow the same form as a run trained to that
point (no learning-rate-schedule effect).

What a prior's Cmin law means decides the target (`PriorLaws.target`). A published law
(the paper's) is read as the compute-optimal envelope ("envelope", as above). A study's own
fits were measured on its grid ("grid"): the curves must return them when the planned grid is
fitted without noise, so the check is on that fit, exponents included (`MAX_ALPHA_ERROR`:
a small exponent, such as an error rate's -0.05, misses by 6% while its level misses by only
1%). When the first curves miss and the metric's laws are fitted independently (E not
fitted: the error rates), each law gets curves of its own (`CurveModel.cmin_curves`); with E
fitted one grid fit must give both laws.

Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy import optimize

from .frontier import frontier_mask
from .paper import X_SCALE, paper_law
from .powerlaw import Law
from .results import ResultsError
from .synthetic import PAPER_DEPTHS, paper_sizes


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a planned study.

    eval_flops: [k] cumulative training FLOPs at each full evaluation, ascending; the last is
    the run's total training compute.
    """

    run_id: str
    params: float
    eval_flops: np.ndarray
    seed: int = 0

    @property
    def final_flops(self) -> float:
        return float(self.eval_flops[-1])


@dataclasses.dataclass(frozen=True)
class PriorLaws:
    """The prior for one metric: its law vs N and vs Cmin (x in billions of params / PFLOPs)."""

    metric: str
    n_law: Law
    cmin_law: Law
    # what the Cmin law is: "envelope", the compute-optimal envelope (a published law), or
    # "grid", what a study's fit of its own grid's frontier gave (its fits.json; `calibrate`)
    target: Literal["envelope", "grid"] = "envelope"

    @property
    def E(self) -> float:
        """The irreducible term of the curves (the Cmin law's; the N law is refitted to it)."""
        return self.cmin_law.E


def paper_prior(metrics: Sequence[str]) -> dict[str, PriorLaws]:
    """The paper's published laws (`analysis.paper`) as priors for `metrics`."""
    out = {}
    for m in metrics:
        n, c = paper_law(m, "N"), paper_law(m, "Cmin")
        out[m] = PriorLaws(m, Law(n.alpha, n.beta, n.E), Law(c.alpha, c.beta, c.E))
    return out


TOKENS_PER_IMAGE, IMAGENET_IMAGES = 680, 1281167  # VAR's tokens per 256px image; ImageNet-1k


def paper_grid_runs(points: int = 24) -> list[PlannedRun]:
    """The paper grid as planned runs (sweeps/depth_grid.yaml): its 12 sizes, 200 / 250 /
    350 epochs of ImageNet by depth (<= 16, <= 20, above), training compute 6 N D, and
    `points` evaluations log-spaced from 0.1% of each run's compute to its end."""
    runs = []
    for d, n in zip(PAPER_DEPTHS, paper_sizes(), strict=True):
        epochs = 200 if d <= 16 else 250 if d <= 20 else 350
        final = 6 * n * TOKENS_PER_IMAGE * IMAGENET_IMAGES * epochs
        runs.append(PlannedRun(f"d{d}", float(n), final * np.geomspace(1e-3, 1, points)))
    return runs


W_POINTS = 0.01  # `calibrate_to_grid`: weight of the pointwise misses beside the fitted lines'
MAX_CURVE_ERROR = 0.02  # the curves may miss the prior's laws by this much (relative)
# target "grid": the noise-free grid's fitted exponents may miss the prior's by this much
MAX_ALPHA_ERROR = 0.02
# the search box of `calibrate`: ln A, a, ln B, b
CALIBRATION_BOUNDS = ([-50.0, 1e-4, -200.0, 1e-4], [50.0, 5.0, 200.0, 5.0])


@dataclasses.dataclass(frozen=True)
class CurveModel:
    """y(N, c) = E + A N^-a + B (c/N)^-b with N in billions and c in PFLOPs (see the module doc)."""

    metric: str
    E: float
    A: float
    a: float
    B: float
    b: float
    n_law_error: float = float("nan")  # max |rel. error| of the reducible finals vs the prior N law
    cmin_law_error: float = float("nan")  # max |rel. error| of the envelope vs the prior Cmin law
    consistent: bool = (
        True  # False: |Cmin exponent| >= |N exponent|, which no curve of this form gives
    )
    at_bound: tuple[str, ...] = ()  # calibrated parameters that ended at their search bound
    # the curves' own floor lies this far below E (`calibrate_to_grid`; 0 for `calibrate`): a
    # grid whose runs all see the same data keeps a data term B (c/N)^-b in every final point,
    # which a fitted E absorbs
    delta: float = 0.0
    # `calibrate_to_grid`: the excess of an evaluation taken before the run's learning rate has
    # decayed, k (1 - c / c_final), from k at the start to 0 at the run's end (0 for `calibrate`)
    k: float = 0.0
    # what the errors above measure: "envelope" (`calibrate`: the finals and the continuous
    # compute-optimal envelope against the prior's laws) or "grid fit" (`calibrate_to_grid`:
    # the laws fitted to the grid's own finals and frontier at E, against the prior's)
    calibrated_to: str = "envelope"
    grid_fit_why: str = ""  # why `calibrate_to_grid` did not represent the prior either (if tried)
    # target "grid": relative misses of the exponents the noise-free grid's fit at E returns
    n_alpha_error: float = float("nan")
    cmin_alpha_error: float = float("nan")
    # the laws this curve set stands for; ("N",) when `cmin_curves` stands for the Cmin law
    laws: tuple[str, ...] = ("N", "Cmin")
    # the Cmin law's own curves, when no one curve set represents both laws and they are
    # fitted independently (E not fitted): `for_law` picks the curves a law is drawn from
    cmin_curves: CurveModel | None = None

    def for_law(self, against: str) -> CurveModel:
        """The curves the law vs `against` ("N" or "Cmin") is simulated from."""
        return self.cmin_curves if against == "Cmin" and self.cmin_curves else self

    def law_error(self, against: str) -> float:
        """The curve check of the law vs `against`: its largest relative miss of the prior."""
        m = self.for_law(against)
        return m.n_law_error if against == "N" else m.cmin_law_error

    def not_representable(self, tolerance: float = MAX_CURVE_ERROR) -> str | None:
        """Why these curves cannot stand for the prior (None when they can): a calibrated
        parameter at its bound, exponents no curve of this form gives, or laws they miss by
        more than `tolerance` (relative; exponents by more than `MAX_ALPHA_ERROR` where the
        target is the grid's fit)."""
        if self.cmin_curves is not None:
            why_n, why_c = self._why(tolerance), self.cmin_curves._why(tolerance)
            return (
                None
                if why_n is None and why_c is None
                else "; ".join(f"{a} law: {w}" for a, w in (("N", why_n), ("Cmin", why_c)) if w)
            )
        return self._why(tolerance)

    def _why(self, tolerance: float) -> str | None:
        if self.at_bound:
            values = {
                "A": self.A,
                "a": self.a,
                "B": self.B,
                "b": self.b,
                "delta": self.delta,
                "k": self.k,
            }
            return (
                "calibrated "
                + ", ".join(f"{k} = {values[k]:.3g}" for k in self.at_bound)
                + " at its bound"
            )
        if not self.consistent and self.laws == ("N", "Cmin"):
            return (
                "the Cmin exponent is not smaller in size than the N exponent "
                "(no curve of the form gives it)"
            )
        level = {"N": self.n_law_error, "Cmin": self.cmin_law_error}
        alpha = {"N": self.n_alpha_error, "Cmin": self.cmin_alpha_error}
        worst = max(level[a] for a in self.laws)
        if worst > tolerance:
            return (
                f"the curves miss the prior's laws by {100 * worst:.1f}% ("
                + ", ".join(f"{a} {100 * level[a]:.1f}%" for a in self.laws)
                + ")"
                + (f"; fitted to the grid: {self.grid_fit_why}" if self.grid_fit_why else "")
            )
        missed = [a for a in self.laws if alpha[a] > MAX_ALPHA_ERROR]  # nan: not measured
        if missed:
            return (
                "the noise-free grid's fit misses the prior's exponents by "
                + ", ".join(f"{100 * alpha[a]:.1f}% ({a})" for a in missed)
                + (f"; fitted to the grid: {self.grid_fit_why}" if self.grid_fit_why else "")
            )
        return None

    def excess(self, n, c, frac=1.0) -> np.ndarray:
        """The metric above E: A N^-a + B (c/N)^-b - delta + k (1 - frac) (shape of the
        broadcast n, c, frac; frac: the share of its run's compute an evaluation is at)."""
        return self.reducible(n, c) - self.delta + self.k * (1 - np.asarray(frac, float))

    def reducible(self, n, c) -> np.ndarray:
        """A N^-a + B (c/N)^-b; n (billions), c (PFLOPs) broadcastable arrays."""
        n = np.asarray(n, float)
        return self.A * n**-self.a + self.B * (np.asarray(c, float) / n) ** -self.b

    def envelope(self, c) -> np.ndarray:
        """The compute-optimal reducible metric min over N at compute c (PFLOPs); shape of c."""
        a, b, A, B = self.a, self.b, self.A, self.B
        n_opt = (a * A / (b * B)) ** (1 / (a + b)) * np.asarray(c, float) ** (b / (a + b))
        return self.reducible(n_opt, c)

    @property
    def cmin_alpha(self) -> float:
        """The envelope's exponent, -a b / (a + b)."""
        return -self.a * self.b / (self.a + self.b)


def calibrate(
    prior: PriorLaws,
    runs: Sequence[PlannedRun],
    points: int = 40,
    *,
    independent_laws: bool = False,
) -> CurveModel:
    """Curve parameters that reproduce `prior` on the planned runs (see the module docstring).

    runs: the planned study (their sizes and final compute anchor the N law; the envelope is
    matched to the Cmin law over [smallest first evaluation, largest final compute]).
    `prior.target` "envelope" (a published law): when these curves miss the prior's laws by
    more than `MAX_CURVE_ERROR` (and no parameter is at its bound, and the exponents are
    consistent), `calibrate_to_grid` is tried, and taken when it represents the prior. "grid" (a
    study's own fits): the curves are checked by the noise-free grid's fit at E, exponents
    included; the first curves are kept when they pass. Else, with `independent_laws` (E not
    fitted: the laws vs N and Cmin share nothing in the fit) each law gets curves of its own
    (`CurveModel.cmin_curves`: the first curves for N where they give it, else a grid fit to
    the finals; a grid fit to the frontier for Cmin); without, one grid fit must give both.
    """
    if prior.target not in ("envelope", "grid"):
        raise ValueError(f"{prior.metric}: prior target {prior.target!r}: 'envelope' or 'grid'")
    first = _calibrate_envelope(prior, runs, points)
    if prior.target == "grid":
        return _calibrate_grid_target(prior, runs, first, independent_laws)
    why = first.not_representable()
    if why is None or first.at_bound or not first.consistent:
        return first
    second = calibrate_to_grid(prior, runs, first)
    also = second.not_representable()
    if also is None:
        return second
    return dataclasses.replace(first, grid_fit_why=also)


def _calibrate_grid_target(
    prior: PriorLaws, runs: Sequence[PlannedRun], first: CurveModel, independent_laws: bool
) -> CurveModel:
    n, cs, target_n = _grid_inputs(prior, runs)
    first = _checked_on_grid(
        first,
        _grid_errors(first, prior, n, cs, target_n),
        calibrated_to="envelope, checked on the grid",
    )
    if first.not_representable() is None:
        return first
    if not independent_laws:  # the laws share a fitted E: one curve set must give both
        return calibrate_to_grid(prior, runs, first)
    # E not fitted: the two laws share nothing in the fit, so each gets the curves that give it
    n_curves = dataclasses.replace(first, laws=("N",))
    if n_curves.not_representable() is not None:
        n_curves = calibrate_to_grid(prior, runs, first, laws=("N",))
    c_curves = calibrate_to_grid(prior, runs, first, laws=("Cmin",))
    return dataclasses.replace(
        n_curves,
        laws=("N",),
        cmin_curves=dataclasses.replace(c_curves, calibrated_to="grid fit, per law"),
        calibrated_to=f"{n_curves.calibrated_to}, per law",
    )


def _calibrate_envelope(prior: PriorLaws, runs: Sequence[PlannedRun], points: int) -> CurveModel:
    E = prior.E
    n_fin = np.array([r.params for r in runs]) / X_SCALE["N"]
    c_fin = np.array([r.final_flops for r in runs]) / X_SCALE["Cmin"]
    target_n = prior.n_law.predict(n_fin) - E
    if (target_n <= 0).any():
        raise ResultsError(
            f"{prior.metric}: the prior N law is below its E = {E:g} for some planned size"
        )
    c_lo = min(float(r.eval_flops[0]) for r in runs) / X_SCALE["Cmin"]
    c_grid = np.geomspace(c_lo, c_fin.max(), points)
    target_c = prior.cmin_law.predict(c_grid) - E
    aN, aC = abs(prior.n_law.alpha), abs(prior.cmin_law.alpha)
    a0 = max(aN, 1.2 * aC)
    b0 = a0 * aC / (a0 - aC) if a0 > aC * 1.05 else 4 * aC
    A0 = float(np.exp(np.mean(np.log(target_n) + a0 * np.log(n_fin)))) * 0.8
    # B so that the envelope meets the Cmin law in the middle of the range
    probe = CurveModel(prior.metric, E, A0, a0, 1.0, b0)
    mid = float(np.sqrt(c_grid[0] * c_grid[-1]))
    B0 = (prior.cmin_law.predict(mid) - E) / probe.envelope(mid)
    B0 = max(float(B0), 1e-12) ** ((a0 + b0) / a0)

    def residual(p):
        m = CurveModel(prior.metric, E, math.exp(p[0]), p[1], math.exp(p[2]), p[3])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r1 = np.log(m.reducible(n_fin, c_fin)) - np.log(target_n)
            r2 = np.log(m.envelope(c_grid)) - np.log(target_c)
        out = np.concatenate([r1 / math.sqrt(len(r1)), r2 / math.sqrt(len(r2))])
        return np.where(np.isfinite(out), out, 1e3)

    p0 = np.array([math.log(A0), a0, math.log(B0), b0])
    lo, hi = (np.array(b) for b in CALIBRATION_BOUNDS)
    res = optimize.least_squares(residual, np.clip(p0, lo, hi), bounds=(lo, hi), method="trf")
    near = 1e-3 * (hi - lo)
    at_bound = tuple(
        name
        for name, v, low, high, eps in zip(("A", "a", "B", "b"), res.x, lo, hi, near, strict=True)
        if v - low < eps or high - v < eps
    )
    m = CurveModel(
        prior.metric, E, math.exp(res.x[0]), float(res.x[1]), math.exp(res.x[2]), float(res.x[3])
    )
    n_err = float(np.max(np.abs(m.reducible(n_fin, c_fin) / target_n - 1)))
    c_err = float(np.max(np.abs(m.envelope(c_grid) / target_c - 1)))
    return dataclasses.replace(
        m, n_law_error=n_err, cmin_law_error=c_err, consistent=aC < aN, at_bound=at_bound
    )


def _grid_points(
    model: CurveModel, n: np.ndarray, cs: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The noise-free grid's points above E: finals (n, y - E) and the Cmin frontier (c, y - E)
    as the fitter takes it (`analysis.frontier.frontier_mask`); n [runs] in billions, cs per
    run its evaluation computes in PFLOPs."""
    curves = [(c, model.E + model.excess(N, c, c / c[-1])) for N, c in zip(n, cs, strict=True)]
    _, _, _, masks = frontier_mask(curves)
    fin = np.array([y[-1] for _, y in curves]) - model.E
    fc = np.concatenate([c[mk] for (c, _), mk in zip(curves, masks, strict=True)])
    fy = np.concatenate([y[mk] for (_, y), mk in zip(curves, masks, strict=True)]) - model.E
    return n, fin, fc, fy


def _line(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float]:
    """OLS slope and mean of ly (the line at mean lx)."""
    slope = float(np.polyfit(lx, ly, 1)[0]) if np.ptp(lx) > 0 else float("nan")
    return slope, float(np.mean(ly))


def _law_error(slope: float, level: float, lx: np.ndarray, law: Law) -> float:
    """Max relative error, over the log-x points lx, of the line (slope, level at mean lx) in
    log(y - E) against `law`'s reducible part."""
    fitted = level + slope * (lx - lx.mean())
    prior = law.alpha * (lx + math.log(law.beta))
    return float(np.max(np.abs(np.exp(fitted - prior) - 1)))


def _grid_inputs(
    prior: PriorLaws, runs: Sequence[PlannedRun]
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Sizes [runs] in billions, each run's evaluation computes in PFLOPs, and the prior N
    law's reducible value at each size."""
    n = np.array([r.params for r in runs]) / X_SCALE["N"]
    cs = [np.asarray(r.eval_flops, float) / X_SCALE["Cmin"] for r in runs]
    return n, cs, prior.n_law.predict(n) - prior.E


def calibrate_to_grid(
    prior: PriorLaws,
    runs: Sequence[PlannedRun],
    start: CurveModel,
    laws: tuple[str, ...] = ("N", "Cmin"),
) -> CurveModel:
    """Curves whose grid, fitted at E as the fitter fits it, returns the prior's laws.

    The curves are ``y = E - delta + A N^-a + B (c/N)^-b + k (1 - c/c_final)`` (delta >= 0:
    the curves' own floor below E; k >= 0: an evaluation taken before its run's learning rate
    has decayed lies above the finished run of that length, by k at the start and 0 at the
    end, as under a linear decay). A grid of runs that all see the same data (the demo: 6
    epochs for every size) keeps the data term B (c/N)^-b in every final point; the N law's
    fitted E absorbs it, so the finals are a power law above E only with such a floor. The
    targets are each run's final evaluation on the prior's N law (so that a fitted E finds the
    prior's), and the law an OLS fit at E gives on the noise-free grid's Cmin frontier (of the
    planned evaluations, `analysis.frontier`) rather than the continuous envelope, which no
    grid of fixed-length runs traces: its slope and level must be the prior's (a small weight
    on the pointwise misses picks one curve among those that do). The errors it reports: the
    finals' largest relative miss of the N law, and the fitted frontier line's against the
    Cmin law over the frontier's computes. `laws`: the laws targeted (one of them: curves
    for that law alone, `CurveModel.cmin_curves`).
    """
    E = prior.E
    n, cs, target_n = _grid_inputs(prior, runs)
    lo = np.array([-50.0, 1e-4, -200.0, 1e-4, 0.0, 0.0])
    hi = np.array(
        [50.0, 5.0, 200.0, 5.0, max(E, 0.0) + float(target_n.min()), 10 * float(target_n.max())]
    )

    def model(p) -> CurveModel:
        return dataclasses.replace(
            start,
            A=math.exp(p[0]),
            a=float(p[1]),
            B=math.exp(p[2]),
            b=float(p[3]),
            delta=float(p[4]),
            k=float(p[5]),
        )

    def residual(p):
        with np.errstate(all="ignore"):
            _, fin, fc, fy = _grid_points(model(p), n, cs)
            if (fin <= 0).any() or (fy <= 0).any() or len(fc) < 3:
                return np.full(6 + len(n), 1e3)
            ln_, lc = np.log(n), np.log(fc)
            sc, vc = _line(lc, np.log(fy))
            pn = prior.n_law.alpha * (ln_ + math.log(prior.n_law.beta))
            pc = prior.cmin_law.alpha * (lc + math.log(prior.cmin_law.beta))
            parts = []
            if "N" in laws:  # each final point on the N law: a fitted E finds the prior's E
                parts.append(10 * (np.log(fin) - pn) / math.sqrt(len(n)))
            if "Cmin" in laws:  # the exponent relative to its size: small ones count too
                alpha = prior.cmin_law.alpha
                parts += [
                    10 * np.array([(sc - alpha) / abs(alpha), vc - pc.mean()]),
                    W_POINTS * np.array([np.sqrt(np.mean((np.log(fy) - pc) ** 2))]),
                    W_POINTS * np.array([np.max(np.abs(np.log(fy) - pc))]),
                ]
            out = np.concatenate(parts)
        return np.where(np.isfinite(out), out, 1e3)

    best = None
    starts = [
        (a0, b0, share, k0)
        for k0 in (0.0, 0.5)
        for share in (0.0, 0.6)
        for a0 in (start.a, 0.05, 0.3)
        for b0 in (start.b, 0.05, 0.3, 1.0)
    ]
    ratio = np.array([c[-1] for c in cs]) / n
    for a0, b0, share, k0 in starts:
        d0 = share * float(target_n.min())
        A0 = float(np.exp(np.mean(np.log(target_n + d0) + a0 * np.log(n)))) * 0.5
        B0 = float(np.mean((target_n + d0) * 0.5 * ratio**b0))
        p0 = np.clip(
            [math.log(A0), a0, math.log(max(B0, 1e-80)), b0, d0, k0 * float(target_n.min())],
            lo,
            hi,
        )
        res = optimize.least_squares(residual, p0, bounds=(lo, hi), method="trf")
        if best is None or res.cost < best.cost:
            best = res
            errors = _grid_errors(model(best.x), prior, n, cs, target_n)
            level = [errors[0] if a == "N" else errors[1] for a in laws]
            alpha = [errors[2] if a == "N" else errors[3] for a in laws]
            if max(level) < MAX_CURVE_ERROR / 4 and max(alpha) < MAX_ALPHA_ERROR / 4:
                break  # represented with room to spare: no need for the other starts
    assert best is not None
    m = model(best.x)
    near = 1e-3 * (hi - lo)
    # delta = 0 and k = 0 are the plain family, not a bound the curves ran into; curves for
    # the N law alone are free in B, b and k (only the finals are fitted)
    low_free = ("delta", "k") if "Cmin" in laws else ("B", "b", "delta", "k")
    high_free = () if "Cmin" in laws else ("B", "b", "k")
    at_bound = tuple(
        name
        for name, v, low, high, eps in zip(
            ("A", "a", "B", "b", "delta", "k"), best.x, lo, hi, near, strict=True
        )
        if (v - low < eps and name not in low_free) or (high - v < eps and name not in high_free)
    )
    return _checked_on_grid(
        m,
        _grid_errors(m, prior, n, cs, target_n),
        at_bound=at_bound,
        laws=laws,
        calibrated_to="grid fit",
    )


def _checked_on_grid(
    m: CurveModel, errors: tuple[float, float, float, float], **fields: Any
) -> CurveModel:
    """`m` with the grid's errors (`_grid_errors`) and `fields`; the envelope form's
    consistency is no condition on a grid, whose frontier is no envelope."""
    n_err, c_err, n_alpha, c_alpha = errors
    return dataclasses.replace(
        m,
        n_law_error=n_err,
        cmin_law_error=c_err,
        n_alpha_error=n_alpha,
        cmin_alpha_error=c_alpha,
        consistent=True,
        **fields,
    )


def _grid_errors(
    m: CurveModel, prior: PriorLaws, n: np.ndarray, cs: Sequence[np.ndarray], target_n: np.ndarray
) -> tuple[float, float, float, float]:
    """`calibrate_to_grid`'s errors: the finals' largest relative miss of the N law, the
    frontier's OLS line (at E) against the Cmin law over the frontier's computes, and the
    relative misses of the exponents of the OLS lines (at E) through the finals and the
    frontier: what the noise-free grid's fit returns with E at the prior's."""
    with np.errstate(all="ignore"):
        _, fin, fc, fy = _grid_points(m, n, cs)
    if (fin <= 0).any() or (fy <= 0).any() or len(fc) < 3:
        return math.inf, math.inf, math.inf, math.inf
    sc, vc = _line(np.log(fc), np.log(fy))
    sn, _ = _line(np.log(n), np.log(fin))
    return (
        float(np.max(np.abs(fin / target_n - 1))),
        _law_error(sc, vc, np.log(fc), prior.cmin_law),
        abs(sn / prior.n_law.alpha - 1),
        abs(sc / prior.cmin_law.alpha - 1),
    )
