"""Study simulator: replay a prior law through a planned grid and measure how sharp its fits are.

`simulate_study` draws the whole study's results table many times from a prior, through the
planner's calibrated training curves (`analysis.calibration`: `PlannedRun`, `PriorLaws`,
`CurveModel`, `calibrate`), with a noise model, fits every replicate with the steps
``python -m scaling.fit`` runs (`analysis.fitting`: with E fitted, one E per loss located by
the laws vs N and refitted in every bootstrap draw; `fit_draw`), and summarises, per law, the
fitted exponents against the prior. A metric whose laws have curves of their own
(`CurveModel.cmin_curves`) is drawn once per law, with the same noise.

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

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .calibration import CurveModel, PlannedRun, PriorLaws
from .fitting import LawInputs, bootstrap_draws, compute_shared_E, fit_one_law, mark_cmin_excluded
from .jointlaw import JointLaw, bootstrap_laws, check_points, fit_joint, interval
from .paper import X_SCALE, paper_law
from .powerlaw import FitResult, Method, fit_vs_cmin, is_loss
from .results import ResultsError, prepare
from .settings import FitSettings
from .synthetic import paper_sizes


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


@dataclasses.dataclass(frozen=True)
class Noise:
    """Log-normal noise on the reducible metric: per run (seed) `sd`, per evaluation `eval_sd`."""

    sd: dict[str, float]
    eval_sd: float = 0.0
    source: str = ""


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
