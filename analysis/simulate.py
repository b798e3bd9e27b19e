"""Study simulator: replay a prior law through a planned grid and measure how sharp its fits are.

A planned study is a list of `PlannedRun` (size N, seed, and the training compute at each of
its full evaluations). `simulate_study` draws the whole study's results table many times
from a prior with a noise model, fits every replicate with the steps ``python -m scaling.fit``
runs (`analysis.fitting`: with E fitted, one E per loss located by the laws vs N and refitted in
every bootstrap draw; `fit_draw`), and summarises, per law, the fitted exponents against the prior.

The curve model (`CurveModel`). The prior gives two laws per metric, y - E = (beta x)^alpha
against N (final evaluation of each run) and against Cmin (compute frontier). One training
curve per size is needed between them; it is taken in the Chinchilla form

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
1%). When no one curve set does (the demo's error rates) and the metric's laws are fitted
independently (E not fitted), each law gets its own curves (`CurveModel.cmin_curves`).

Noise model (`Noise`): every run (one seed) multiplies its reducible metric by exp(s z),
z ~ N(0, 1), the same factor at all its evaluations (seed-to-seed variation of a whole
curve); each evaluation adds an independent factor exp(s_eval z') (test-set sampling).

The joint law (`simulate_joint`). A study whose runs give several data amounts per size
(WSD decay branches, a data axis) is also planned for ``L(N, D) = E + A/N^alpha + B/D^beta``
(`analysis.jointlaw`, the fit of ``scaling.fit --set law=nd``). Its points are the annealed final
evaluations (`JointPoints`); a prior `JointLaw` is drawn there with the same noise model: a
decay branch continues its parent's trajectory, so a parent and its branches (a "family")
share one seed factor exp(s z); `joint_prior` reads a calibrated `CurveModel` as such a law.

Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize
from threadpoolctl import threadpool_limits

from .fitting import LawInputs, bootstrap_draws, compute_shared_E, fit_one_law, mark_cmin_excluded
from .frontier import frontier_mask
from .jointlaw import JointLaw, bootstrap_laws, check_points, fit_joint, interval
from .paper import X_SCALE, paper_law
from .powerlaw import FitResult, Law, Method, fit_vs_cmin, is_loss
from .results import ResultsError, prepare
from .settings import FitSettings
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


def paper_noise_sd(metric: str) -> float:
    """Default seed noise: the scatter about the paper's N law implied by its reported r.

    For an OLS line in log-log, 1 - r^2 = residual variance / variance of log(y - E), so the
    residual sd is |alpha| * sd(ln N) * sqrt(1 - r^2) over the paper's 12 sizes. The paper
    reports r "near -0.998" (eq. 11-16), a rounded value; the residual also holds misfit,
    so this is an upper bound on the seed-to-seed noise, not a measurement of it.
    """
    law = paper_law(metric, "N")
    sd_lx = float(np.std(np.log(paper_sizes())))
    return abs(law.alpha) * sd_lx * math.sqrt(max(0.0, 1 - law.r**2))


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


@dataclasses.dataclass(frozen=True)
class Noise:
    """Log-normal noise on the reducible metric: per run (seed) `sd`, per evaluation `eval_sd`."""

    sd: dict[str, float]
    eval_sd: float = 0.0
    source: str = ""


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
    included; the first curves are kept when they pass, else the grid fit; when that misses
    too and `independent_laws` (E not fitted: the laws vs N and Cmin share nothing), each law
    gets curves of its own (`CurveModel.cmin_curves`).
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
    n_err, c_err, n_alpha, c_alpha = _grid_errors(first, prior, n, cs, target_n)
    # the envelope form's consistency is no condition here: a grid's frontier is no envelope
    first = dataclasses.replace(
        first,
        n_law_error=n_err,
        cmin_law_error=c_err,
        n_alpha_error=n_alpha,
        cmin_alpha_error=c_alpha,
        consistent=True,
        calibrated_to="envelope, checked on the grid",
    )
    if first.not_representable() is None:
        return first
    both = calibrate_to_grid(prior, runs, first)
    if both.not_representable() is None or not independent_laws:
        return both
    n_only = [dataclasses.replace(m, laws=("N",)) for m in (first, both)]
    n_curves = next((m for m in n_only if m.not_representable() is None), None)
    if n_curves is None:
        n_curves = calibrate_to_grid(prior, runs, both, laws=("N",))
    c_curves = dataclasses.replace(
        calibrate_to_grid(prior, runs, both, laws=("Cmin",)), calibrated_to="grid fit, per law"
    )
    split = dataclasses.replace(
        n_curves, laws=("N",), cmin_curves=c_curves, calibrated_to="grid fit, per law"
    )
    return split if split.not_representable() is None else both


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
    n_err, c_err, n_alpha, c_alpha = _grid_errors(m, prior, n, cs, target_n)
    return dataclasses.replace(
        m,
        n_law_error=n_err,
        cmin_law_error=c_err,
        n_alpha_error=n_alpha,
        cmin_alpha_error=c_alpha,
        at_bound=at_bound,
        laws=laws,
        consistent=True,
        calibrated_to="grid fit",
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


def simulate_table(
    runs: Sequence[PlannedRun],
    models: dict[str, CurveModel],
    noise: Noise,
    rng: np.random.Generator,
    law: str = "N",
) -> pd.DataFrame:
    """One draw of the study's tidy results table (run, params, seed, step, flops, metrics).

    law: whose curves are drawn where a metric has curves per law (`CurveModel.for_law`); the
    same generator state gives the same noise for either."""
    k = np.array([len(r.eval_flops) for r in runs])
    c = np.concatenate([np.asarray(r.eval_flops, float) for r in runs])
    params = np.repeat([float(r.params) for r in runs], k)
    cols = {
        "run": np.repeat([r.run_id for r in runs], k),
        "params": params,
        "seed": np.repeat([r.seed for r in runs], k),
        "step": np.concatenate([np.arange(1, n + 1) for n in k]),
        "flops": c,
        "flops_6nd": c,
    }
    frac = c / np.repeat([r.final_flops for r in runs], k)
    for metric, model in models.items():
        m = model.for_law(law)
        red = m.excess(params / X_SCALE["N"], c / X_SCALE["Cmin"], frac)
        z = np.repeat(noise.sd.get(metric, 0.0) * rng.standard_normal(len(runs)), k)
        if noise.eval_sd:
            z = z + noise.eval_sd * rng.standard_normal(len(c))
        cols[metric] = m.E + red * np.exp(z)
    return pd.DataFrame(cols)


@dataclasses.dataclass(frozen=True)
class FitPlan:
    """The fit settings replayed (a subset of scaling.fit's FitSettings; "auto" E decided)."""

    irreducible: object = "none"
    method: str = "ols"
    smooth: int = 0
    ci: float = 0.95
    bootstrap: int = 100
    E_from: str = "N"  # with E fitted: the points that locate it (FitSettings.E_from)

    def settings(self, metrics: Sequence[str], against: Sequence[str], seed: int) -> FitSettings:
        """These settings as the fitter's own (hold-out off, every evaluation on the frontier)."""
        return FitSettings(
            irreducible=self.irreducible,  # type: ignore[arg-type]
            E_from=self.E_from,  # type: ignore[arg-type]
            metrics=tuple(metrics),
            against=tuple(against),
            method=self.method,  # type: ignore[arg-type]
            smooth=self.smooth,
            ci=self.ci,
            bootstrap=self.bootstrap,
            seed=seed,
            holdout=0,
        )


def fit_draw(
    table: pd.DataFrame,
    metrics: Sequence[str],
    against: Sequence[str],
    fit: FitPlan,
    seed: int,
) -> dict[tuple[str, str], FitResult | None]:
    """Fit one drawn (prepared) study as `scaling.fit` fits it: `analysis.fitting`'s own steps
    (`compute_shared_E`: with E fitted, one E per loss located by `fit.E_from`'s points and
    shared by its laws vs N and vs Cmin; `bootstrap_draws`: that E refitted in every bootstrap
    draw; `fit_one_law`). Returns (against, metric) -> its result, None where the fitter
    refuses it."""
    settings = fit.settings(metrics, against, seed)
    inputs = LawInputs(settings)
    table = table.copy()
    mark_cmin_excluded(table, settings, "simulated study")
    common = dict(
        method=settings.method,
        bootstrap=settings.bootstrap,
        level=settings.ci,
        holdout=0,
        seed=seed,
    )
    out: dict[tuple[str, str], FitResult | None] = {}
    for m in metrics:
        try:
            shared = draws = None
            if settings.irreducible == "fit" and is_loss(m):
                shared = compute_shared_E(inputs, table, m, None)
                draws = bootstrap_draws(inputs, table, m)
        except ResultsError:
            out.update({(a, m): None for a in against})
            continue
        for a in against:
            try:
                out[(a, m)] = fit_one_law(
                    inputs, a, m, table, settings.irreducible, shared, draws, common
                )
            except ResultsError:
                out[(a, m)] = None
    return out


@dataclasses.dataclass
class LawSummary:
    """Fitted exponents of one law over the replicates, against the prior's.

    against: "N", "Cmin", or "ND" (the joint law, whose two exponents `param` "alpha" (of N)
    and "beta" (of D) are summarised separately; both positive by its form).
    """

    metric: str
    against: str
    prior_alpha: float
    alphas: np.ndarray  # [R] fitted exponents `param` (replicates whose fit failed are left out)
    ci_low: np.ndarray  # [R] interval bounds (empty without bootstrap)
    ci_high: np.ndarray
    failed: int = 0
    noise_free_alpha: float = float("nan")  # the fit of the study drawn without noise
    param: str = "alpha"

    @property
    def key(self) -> tuple[str, str]:
        """(against, param): which exponent of which law."""
        return self.against, self.param

    @property
    def median(self) -> float:
        return float(np.median(self.alphas)) if len(self.alphas) else float("nan")

    @property
    def bias(self) -> float:
        """Median fitted exponent minus the prior's."""
        return self.median - self.prior_alpha

    def spread(self, level: float = 0.95) -> float:
        """Width of the central `level` range of the fitted exponents over replicates."""
        if len(self.alphas) < 2:
            return float("nan")
        lo, hi = np.quantile(self.alphas, [(1 - level) / 2, (1 + level) / 2])
        return float(hi - lo)

    @property
    def ci_width(self) -> float:
        """Median width of the fit's bootstrap interval (NaN without bootstrap)."""
        return float(np.median(self.ci_high - self.ci_low)) if len(self.ci_low) else float("nan")

    @property
    def coverage(self) -> float:
        """Share of replicates whose interval holds the prior exponent (NaN without bootstrap)."""
        if not len(self.ci_low):
            return float("nan")
        return float(
            np.mean((self.ci_low <= self.prior_alpha) & (self.prior_alpha <= self.ci_high))
        )

    def to_dict(self) -> dict:
        def num(v):
            return None if not math.isfinite(v) else float(v)

        return {
            "metric": self.metric,
            "against": self.against,
            "param": self.param,
            "prior_alpha": self.prior_alpha,
            "noise_free_alpha": num(self.noise_free_alpha),
            "replicates": int(len(self.alphas)),
            "failed": self.failed,
            "median_alpha": num(self.median),
            "bias": num(self.bias),
            "spread95": num(self.spread()),
            "median_ci_width": num(self.ci_width),
            "coverage": num(self.coverage),
        }


def simulate_study(
    runs: Sequence[PlannedRun],
    models: dict[str, CurveModel],
    priors: dict[str, PriorLaws],
    noise: Noise,
    fit: FitPlan,
    against: Sequence[str] = ("N", "Cmin"),
    replicates: int = 100,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[LawSummary]:
    """Draw the study `replicates` times and fit each draw as `scaling.fit` would.

    models: calibrated curves per metric (`calibrate`); priors: the laws whose exponents are
    the truth for bias and coverage. Each draw is fitted by `fit_draw` (the fitter's own
    steps) with `fit`'s settings (hold-out off: it does not change the interval). Returns one
    `LawSummary` per (against, metric), N first.
    """
    with threadpool_limits(1):  # the fits are tiny: BLAS threads only add synchronisation
        return _simulate_study(
            runs, models, priors, noise, fit, against, replicates, seed, progress
        )


def _simulate_study(
    runs, models, priors, noise, fit, against, replicates, seed, progress
) -> list[LawSummary]:
    rng = np.random.default_rng(seed)
    metrics = list(models)
    quiet = Noise({m: 0.0 for m in metrics})
    quiet_fit = _draw_and_fit(
        runs, models, quiet, dataclasses.replace(fit, bootstrap=0), against, rng, 0
    )
    noise_free = {k: res.law.alpha if res else float("nan") for k, res in quiet_fit.items()}
    store: dict[tuple[str, str], dict] = {
        (a, m): {"alpha": [], "lo": [], "hi": [], "failed": 0} for a in against for m in metrics
    }
    for i in range(replicates):
        fitted = _draw_and_fit(runs, models, noise, fit, against, rng, i)
        for (a, m), res in fitted.items():
            rec = store[(a, m)]
            if res is None:
                rec["failed"] += 1
                continue
            rec["alpha"].append(res.law.alpha)
            if res.alpha_ci is not None:
                rec["lo"].append(res.alpha_ci[0])
                rec["hi"].append(res.alpha_ci[1])
        if progress is not None:
            progress(i + 1)
    out = []
    for (a, m), rec in store.items():
        prior = priors[m].n_law if a == "N" else priors[m].cmin_law
        out.append(
            LawSummary(
                m,
                a,
                prior.alpha,
                np.array(rec["alpha"]),
                np.array(rec["lo"]),
                np.array(rec["hi"]),
                rec["failed"],
                noise_free[(a, m)],
            )
        )
    return out


def _draw_and_fit(
    runs: Sequence[PlannedRun],
    models: dict[str, CurveModel],
    noise: Noise,
    fit: FitPlan,
    against: Sequence[str],
    rng: np.random.Generator,
    seed: int,
) -> dict[tuple[str, str], FitResult | None]:
    """One drawn study fitted (`fit_draw`); a metric with curves per law has its Cmin law
    fitted on a second table drawn from its Cmin curves with the same noise."""
    metrics = list(models)
    per_law = [m for m in metrics if models[m].cmin_curves is not None and "Cmin" in against]
    state = rng.bit_generator.state
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = prepare(
            simulate_table(runs, models, noise, rng), metrics, "exact", source="simulated study"
        )
        fitted = fit_draw(table, metrics, against, fit, seed)
        if per_law:
            after, rng.bit_generator.state = rng.bit_generator.state, state
            raw = simulate_table(runs, models, noise, rng, law="Cmin")
            rng.bit_generator.state = after
            table = prepare(raw, metrics, "exact", source="simulated study")
            fitted.update(fit_draw(table, per_law, ["Cmin"], fit, seed))
    return fitted


def cmin_from_effect(
    runs: Sequence[PlannedRun],
    models: dict[str, CurveModel],
    choices: dict[str, float | dict[str, float]],
    method: Method = "ols",
    smooth: int = 0,
) -> dict[str, dict[str, float]]:
    """How leaving early evaluations out of the Cmin frontier (``fit: cmin_from``) moves the
    Cmin exponents of the planned study: choice -> metric -> the exponent fitted to the study
    drawn without noise, with each run's evaluations below the choice's fraction of its
    compute left out (one fraction for every run, or run id -> fraction, as `warmup_end`
    gives) and E at the curves' own (the prior's) value, so that only the frontier changes.
    NaN where too few frontier points are left."""
    quiet = Noise({m: 0.0 for m in models})
    raw = simulate_table(runs, models, quiet, np.random.default_rng(0), law="Cmin")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = prepare(raw, list(models), "exact", source="simulated study")
    share = (table["flops"] / table.groupby("run")["flops"].transform("max")).to_numpy(float)
    out: dict[str, dict[str, float]] = {}
    for name, frac in choices.items():
        f = (
            table["run"].astype(str).map(frac).fillna(0.0).to_numpy(float)
            if isinstance(frac, dict)
            else np.full(len(table), float(frac))
        )
        sub = table[share >= f * (1 - 1e-9)]
        out[name] = {}
        for m, curve in models.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fit_vs_cmin(
                        sub, m, irreducible=curve.E, method=method, bootstrap=0, smooth=smooth
                    )
                out[name][m] = res.law.alpha
            except ResultsError:
                out[name][m] = float("nan")
    return out


# ------------------------------------------------------------------------ the joint law L(N, D)


@dataclasses.dataclass(frozen=True)
class JointPoints:
    """The annealed final points of a planned study, one per run (decay branches are runs).

    N [n] params; D [n] training data in `d_unit` (a branch counts its parent's steps up to the
    branch point); family [n] integer ids: runs that share one seed's noise (a parent and its
    branches).
    """

    runs: tuple[str, ...]
    N: np.ndarray
    D: np.ndarray
    family: np.ndarray
    d_unit: str = "tokens"

    def why_not(self) -> str | None:
        """None when the joint law can be planned on these points, else the reason in words:
        the fitter's own refusal (`jointlaw.check_points`), or no size with two data amounts
        (then D is tied to N and the fit cannot tell them apart)."""
        try:
            check_points(self.N, self.D, np.ones_like(self.N), "the joint fit")
        except ResultsError as e:
            return str(e)
        amounts = pd.Series(self.D).groupby(self.N).nunique()
        if not (amounts >= 2).any():
            return (
                "every size is trained on one data amount (D is tied to N); decay branches or a "
                "data axis give several per size"
            )
        return None

    def describe(self) -> str:
        """'16 points: 4 sizes x 1-4 data amounts, 4 seed families'."""
        amounts = pd.Series(self.D).groupby(self.N).nunique()
        per = (
            f"{amounts.min()}"
            if amounts.min() == amounts.max()
            else f"{amounts.min()}-{amounts.max()}"
        )
        return (
            f"{len(self.N)} points: {len(amounts)} sizes x {per} data amounts, "
            f"{len(np.unique(self.family))} seed families"
        )


def compute_per_param_unit(N, D, C) -> tuple[float, float]:
    """kappa in C = kappa N D (FLOPs per parameter per unit of D): the geometric mean over the
    points, and the ratio of its largest to its smallest value (1 when exact)."""
    k = np.asarray(C, float) / (np.asarray(N, float) * np.asarray(D, float))
    return float(np.exp(np.mean(np.log(k)))), float(k.max() / k.min())


def joint_prior(curve: CurveModel, kappa: float) -> JointLaw:
    """The training-curve model read as a joint law in N (params) and D.

    The curve's data term B (c/n)^-b has c/n = (C / N) X_N / X_C = kappa D X_N / X_C (X_*: the
    law units of `analysis.paper`), so A_joint = A X_N^a and B_joint = B (kappa X_N / X_C)^-b; the
    exponents are the curve's. Exact where C = kappa N D holds exactly.
    """
    return JointLaw(
        E=curve.E - curve.delta,
        A=curve.A * X_SCALE["N"] ** curve.a,
        alpha=curve.a,
        B=curve.B * (kappa * X_SCALE["N"] / X_SCALE["Cmin"]) ** -curve.b,
        beta=curve.b,
    )


def draw_joint(
    points: JointPoints, law: JointLaw, sd: float, eval_sd: float, rng: np.random.Generator
) -> np.ndarray:
    """One draw of the final losses [n]: E + (A N^-alpha + B D^-beta) exp(sd z_family + eval_sd
    z')."""
    families, index = np.unique(points.family, return_inverse=True)
    z = sd * rng.standard_normal(len(families))[index]
    if eval_sd:
        z = z + eval_sd * rng.standard_normal(len(points.N))
    return law.E + (law.predict(points.N, points.D) - law.E) * np.exp(z)


def simulate_joint(
    points: JointPoints,
    priors: dict[str, JointLaw],
    noise: Noise,
    fit: FitPlan,
    replicates: int = 100,
    seed: int = 0,
) -> list[LawSummary]:
    """Draw the study's final points `replicates` times from each metric's prior and fit each
    draw with the joint-law fitter (`analysis.jointlaw`: Huber loss on log residuals, L-BFGS-B,
    bootstrap over families -- a parent with its decay branches, `JointPoints.family` --, the
    interval of ``scaling.fit --set law=nd``; hold-out off).

    The noise-free draw is fitted as the fitter fits a table (its grid of starts); every noisy
    draw starts L-BFGS-B from that solution alone, as the fitter's own bootstrap starts from
    its full fit (a planner shortcut, checked against the full fit in
    tests/study/laws/test_plan.py).
    Returns per metric two `LawSummary` (against "ND"): param "alpha", then "beta".
    """
    with threadpool_limits(
        1
    ):  # thousands of 5-parameter fits: BLAS threads only add synchronisation
        out = []
        for i, (metric, law) in enumerate(priors.items()):
            out += _simulate_joint(points, metric, law, noise, fit, replicates, seed + 7919 * i)
        return out


def _simulate_joint(points, metric, law, noise, fit, replicates, seed) -> list[LawSummary]:
    rng = np.random.default_rng(seed)
    n = len(points.N)
    try:
        start = fit_joint(points.N, points.D, law.predict(points.N, points.D))
        noise_free = {"alpha": start.alpha, "beta": start.beta}
    except ResultsError:
        start, noise_free = law, {"alpha": float("nan"), "beta": float("nan")}
    rec: dict[str, dict[str, list[float]]] = {
        p: {"values": [], "lo": [], "hi": []} for p in ("alpha", "beta")
    }
    failed = 0
    for i in range(replicates):
        L = draw_joint(points, law, noise.sd.get(metric, 0.0), noise.eval_sd, rng)
        try:
            fitted = fit_joint(points.N, points.D, L, start=start, top=1)
        except ResultsError:
            failed += 1
            continue
        samples = (
            bootstrap_laws(
                points.N, points.D, L, fitted, fit.bootstrap, seed=i, family=points.family
            )
            if fit.bootstrap
            else []
        )
        for p in rec:
            rec[p]["values"].append(getattr(fitted, p))
            ci = (
                interval(np.array([getattr(s, p) for s in samples]), n, fit.ci) if samples else None
            )
            if ci is not None:
                rec[p]["lo"].append(ci[0])
                rec[p]["hi"].append(ci[1])
    return [
        LawSummary(
            metric,
            "ND",
            getattr(law, p),
            np.array(r["values"]),
            np.array(r["lo"]),
            np.array(r["hi"]),
            failed,
            noise_free[p],
            param=p,
        )
        for p, r in rec.items()
    ]
