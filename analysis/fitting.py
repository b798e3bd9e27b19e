"""One study's power-law fits: the loop `python -m scaling.fit`, the README script and the
notebook all run.

`fit_study(raw, settings)` takes the tidy table as read (`analysis.results`) and a
`FitSettings` and fits ``metric - E = (beta * x)^alpha`` for every x of `settings.against`
(N: each finished run's final or best evaluation; Cmin: the Pareto frontier of all training
curves), every metric, and every value of the grid axes other than size and seed (one law
each, `analysis.axes`; or each size's best run over one axis, or one pooled law). On the way
it decides what the settings leave open: the hold-out k ("auto"), which runs are unfinished
(left out of the N laws by default) or data-limited (flagged, `analysis.overfit`), and the
irreducible E ("auto": the paper's E for the official tokenizer, else one E per loss fitted
by `analysis.irreducible` on the laws vs N's final points (`E_from`, `e_sources`) and shared
by its laws vs N and vs Cmin).

Problems the caller should see are `warnings.warn`ed (the CLI records them into fits.json);
input that cannot be fitted raises `ResultsError`. Torch-free.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .axes import axis_columns, axis_name, best_over, group_label, groups, resolve_axis, split_axes
from .crossover import crossover_interval, crossovers
from .ebootstrap import PointSet, shared_bootstrap
from .frontier import frontier_rows, run_curves, smooth_curves
from .irreducible import SharedE, fit_shared_E
from .overfit import MEANING as OVERFIT_MEANING
from .overfit import RULE as OVERFIT_RULE
from .overfit import data_limited_runs
from .paper import PAPER_IRREDUCIBLE, X_SCALE, X_UNIT, paper_law
from .powerlaw import (
    FitResult,
    Irreducible,
    Method,
    _summarise,
    fit_vs_cmin,
    fit_vs_n,
    irreducible_value,
    is_loss,
    points_vs_cmin,
    points_vs_n,
)
from .results import ResultsError, prepare
from .seeds import has_replicates
from .sensitivity import interval_support, law_marks, sensitivity, t_interval
from .settings import FitSettings

# whether the runs' token store was made with the official tokenizer, and why (in words)
Tokenizer = tuple[bool, str]
UNKNOWN_TOKENIZER: Tokenizer = (False, "the runs' tokenizer is not known here")


@dataclasses.dataclass
class StudyFit:
    """Every law of one study and what was decided on the way.

    raw: the table as read (every row; results.csv); table: the prepared one that was fitted.
    results / records / labels / notes: one entry per law, in order (against, metric, group):
        the `FitResult`, its fits.json record, its group label (None without law axes) and
        the picked axis value per size for `best_over` (for the figures' point notes).
    shared: (metric, group label) -> the jointly fitted E of that loss (irreducible "fit").
    E_values: metric -> the fixed E used (metrics whose E was not fitted).
    axes: the table's axes by role and what the settings made of them (`study_axes`).
    crossovers: with `best_over`, per metric, x and law group: one law per value of the axis
        and where the lowest of them changes, with bootstrap intervals (`axis_crossovers`).
    """

    settings: FitSettings
    raw: pd.DataFrame
    table: pd.DataFrame
    sizes: list[int]
    holdout: int
    unfinished: list[str]
    flagged: dict[str, dict[str, Any]]
    E_mode: str | float
    E_reason: str
    E_values: dict[str, float]
    shared: dict[tuple[str, str | None], SharedE]
    axes: dict[str, Any]
    results: list[FitResult]
    records: list[dict[str, Any]]
    labels: list[str | None]
    notes: list[dict[int, str] | None]
    crossovers: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def against(self, x: str) -> list[int]:
        """Indices of the laws against `x` ("N" or "Cmin")."""
        return [i for i, r in enumerate(self.results) if r.against == x]


def choose_irreducible(
    spec: str | float, tokenizer: Tokenizer, table: pd.DataFrame, metrics
) -> tuple[str | float, str]:
    """Resolve the irreducible setting to "paper" | "none" | "fit" | a number, with the reason.

    A paper E that is not below every value of its loss is refused (those cannot be the
    paper's metrics); "auto" then falls back to "fit" with a warning.
    """
    below = {
        m: float(table[m].min())
        for m in metrics
        if m in PAPER_IRREDUCIBLE and float(table[m].min()) <= PAPER_IRREDUCIBLE[m]
    }
    if spec == "paper" and below:
        m, v = next(iter(below.items()))
        raise ResultsError(
            f"--set irreducible=paper: the paper's E for {m} is {PAPER_IRREDUCIBLE[m]:g} (the "
            "floor of "
            f"the official tokenizer's tokens), but this table's {m} goes down to {v:.4g}: these "
            "cannot be the paper's metrics (another tokenizer or data set). Use --set "
            "irreducible=fit "
            f"(or auto), or a number below {v:.4g}"
        )
    if spec != "auto":
        return spec, "as asked"
    official, why = tokenizer
    if official and not below:
        return "paper", why + ": the paper's E (ce_avg 5, ce_last 4.5) is that tokenizer's floor"
    if official:
        warnings.warn(
            f"{why}, but the losses go below the paper's E ({below}); E is fitted instead",
            stacklevel=2,
        )
    return "fit", (
        why + "; E fitted: one per loss, shared by its laws vs N and vs Cmin "
        "(maximum likelihood, analysis.irreducible)"
    )


def study_axes(
    table: pd.DataFrame, settings: FitSettings, labels: dict[str, str]
) -> dict[str, Any]:
    """The table's axes by role and what the settings make of them (see `analysis.axes`).

    `labels`: axis -> its run-id label (``optim.base_lr`` -> ``lr``), so that `best_over`
    may name an axis by its label.
    """
    by_label = {v: k for k, v in labels.items()}
    roles = split_axes(table)
    law_columns = [] if settings.pool else list(roles.other)
    best_column = None
    if settings.best_over is not None:
        best_column = resolve_axis(table, settings.best_over, by_label)
        if best_column in roles.size or best_column in roles.seed:
            raise ResultsError(
                f"best_over={settings.best_over}: {axis_name(best_column)} is a "
                f"{'size' if best_column in roles.size else 'seed'} axis; pick another axis"
            )
        if best_column in law_columns:
            law_columns.remove(best_column)
        else:
            warnings.warn(
                f"best_over={settings.best_over}: the axis has one value here; nothing to pick",
                stacklevel=2,
            )
    if not axis_columns(table):
        per_size = table.groupby("params")["run"].nunique()
        if (per_size > 1).any():
            warnings.warn(
                f"{int((per_size > 1).sum())} sizes have more than one run and the table names no "
                "grid axis (grid.<axis> columns): their runs are fitted together as one law",
                stacklevel=2,
            )
    return {
        "size_axes": [axis_name(c) for c in roles.size],
        "seed_axes": [axis_name(c) for c in roles.seed],
        "law_axes": [axis_name(c) for c in law_columns],
        "best_over": axis_name(best_column) if best_column else None,
        "labels": labels,
        "seed_columns": list(roles.seed),
        # which runs are one size for best_over: the size axes (an axis such as the
        # tokenizer changes N at one depth), else N itself
        "size_columns": list(roles.size),
        "law_columns": law_columns,
        "best_column": best_column,
        "best_label": labels.get(axis_name(best_column), axis_name(best_column).split(".")[-1])
        if best_column
        else None,
    }


def _value_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclasses.dataclass(frozen=True)
class LawInputs:
    """What every law of one study is fitted on: the settings and the runs the laws vs N leave
    out (unfinished ones, unless `include_unfinished`). The table carries `cmin_excluded`
    (`mark_cmin_excluded`)."""

    settings: FitSettings
    left_out: frozenset[str] = frozenset()

    def for_n(self, sub: pd.DataFrame) -> pd.DataFrame:
        """The rows a law vs N may use."""
        return sub[~sub["run"].astype(str).isin(self.left_out)] if self.left_out else sub

    def for_c(self, sub: pd.DataFrame) -> pd.DataFrame:
        """The rows the Cmin frontier may use (`cmin_from`)."""
        return sub[~sub["cmin_excluded"].to_numpy(bool)]

    def points(self, against: str, sub: pd.DataFrame, metric: str) -> pd.DataFrame:
        """The points of `metric`'s law vs `against` (`points_vs_n` / `points_vs_cmin`)."""
        s = self.settings
        if against == "N":
            return points_vs_n(self.for_n(sub), metric, s.final)
        return points_vs_cmin(self.for_c(sub), metric, s.smooth)

    def point_set(self, against: str, sub: pd.DataFrame, metric: str) -> PointSet:
        """The law's data in the form a bootstrap draw rebuilds (`analysis.ebootstrap`)."""
        s = self.settings
        if against == "N":
            return PointSet("N", final=points_vs_n(self.for_n(sub), metric, s.final))
        curves = run_curves(smooth_curves(self.for_c(sub), metric, s.smooth), metric)
        return PointSet("Cmin", curves=tuple((r, c, y) for r, c, y, _ in curves))

    def fit(
        self,
        against: str,
        sub: pd.DataFrame,
        metric: str,
        E: Irreducible,
        method: Method,
        **kw: Any,
    ) -> FitResult:
        """`fit_vs_n` / `fit_vs_cmin` of one law with these settings (kw: bootstrap, level...)."""
        s = self.settings
        if against == "N":
            return fit_vs_n(
                self.for_n(sub), metric, irreducible=E, final=s.final, method=method, **kw
            )
        return fit_vs_cmin(
            self.for_c(sub), metric, irreducible=E, smooth=s.smooth, method=method, **kw
        )

    def refit(
        self, against: str, metric: str, sub: pd.DataFrame, E: float, method: Method
    ) -> float:
        """The exponent of one law refitted without a bootstrap (a sensitivity variant)."""
        return self.fit(against, sub, metric, E, method, bootstrap=0).law.alpha


def find_unfinished(table: pd.DataFrame, settings: FitSettings) -> list[str]:
    """The runs still training (or stopped): no final evaluation, so not in the N laws by
    default. Warns with each run's state."""
    if "finished" not in table.columns:
        return []
    unfinished = sorted(set(table.loc[~table["finished"].astype(bool), "run"].astype(str)))
    if unfinished:
        kept = settings.include_unfinished
        # why each is unfinished: its status.json's state (and a failed run's error line)
        why = (
            dict(zip(table["run"].astype(str), table["run_state"].astype(str), strict=True))
            if "run_state" in table.columns
            else {}
        )
        named = [f"{r} ({why[r]})" if r in why else r for r in unfinished]
        warnings.warn(
            f"{len(unfinished)} unfinished run(s): {', '.join(named)}; "
            + (
                "INCLUDED in the laws vs N (--set include_unfinished=true; marked in the figure), "
                "their "
                "last evaluation is not a final one"
                if kept
                else "left out of the laws vs N (their last evaluation is not a final one; "
                "--set include_unfinished=true includes them)"
            )
            + "; the Cmin frontier uses every evaluation, theirs included",
            stacklevel=3,
        )
    return unfinished


def flag_data_limited(table: pd.DataFrame, settings: FitSettings) -> dict[str, dict[str, Any]]:
    """The data-limited runs (`analysis.overfit`), warned with what it means."""
    flagged = data_limited_runs(table)
    if flagged:
        warnings.warn(
            f"data-limited run(s) ({OVERFIT_RULE}): "
            + "; ".join(f"{r}: {v['reason']}" for r, v in flagged.items())
            + f". Meaning: {OVERFIT_MEANING}. N laws use each run's {settings.final} "
            f"evaluation (--final {'best' if settings.final == 'last' else 'last'} for the other)",
            stacklevel=3,
        )
    return flagged


def mark_cmin_excluded(table: pd.DataFrame, settings: FitSettings, source: str) -> None:
    """Add the column `cmin_excluded` (the evaluations `cmin_from` keeps off the frontier; the
    figure marks them) to `table` in place, and warn how many there are."""
    try:
        table["cmin_excluded"] = ~frontier_rows(table, settings.cmin_from)
    except ValueError as e:
        raise ResultsError(f"{source}: {e}") from None
    if table["cmin_excluded"].any():
        n_out = int(table["cmin_excluded"].sum())
        warnings.warn(
            f"cmin_from {settings.cmin_from}: {n_out} of {len(table)} evaluations (each run's "
            f"earliest) left out of the Cmin frontier; the laws vs N are unchanged",
            stacklevel=3,
        )


def e_sources(settings: FitSettings) -> tuple[str, ...]:
    """The laws (x of `settings.against`) whose points locate a fitted E: the law vs N's
    final points under `E_from` "N" (the default; the frontier then takes their E), else
    every law's. The Cmin frontier is a power law only over the compute where the grid holds
    the compute-optimal size: below it the smallest run is too large, above it the largest
    run trains past its optimum and flattens towards its own floor, and a joint E follows that
    bend (docs/fitting.md, "Intervals that carry E")."""
    if settings.E_from == "N" and "N" in settings.against:
        return ("N",)
    return tuple(settings.against)


def e_points(inputs: LawInputs, sub: pd.DataFrame, metric: str) -> list[tuple[Any, Any]]:
    """The (x, y) point sets that locate E for `metric` (`e_sources`)."""
    sets = []
    for against in e_sources(inputs.settings):
        pts = inputs.points(against, sub, metric)
        sets.append((pts["x"].to_numpy(float), pts["y"].to_numpy(float)))
    return sets


def compute_shared_E(
    inputs: LawInputs, sub: pd.DataFrame, metric: str, label: str | None
) -> SharedE:
    """The E of one loss (and law group), located by the points of `e_sources` and shared by
    its laws vs every x (`analysis.irreducible`); its problems (E at a bound, a wide
    interval) are warned."""
    s = inputs.settings
    for against in s.against:  # every law must have its points (located errors)
        inputs.points(against, sub, metric)
    shared = fit_shared_E(e_points(inputs, sub, metric), level=s.ci)
    for problem in shared.problems(metric + (f" ({label})" if label else "")):
        warnings.warn(problem, stacklevel=2)
    return shared


# per x ("N", "Cmin") the draws [B_valid, 3] of (alpha, beta, E); and B_valid
Draws = tuple[dict[str, np.ndarray], int]


def bootstrap_draws(inputs: LawInputs, sub: pd.DataFrame, metric: str) -> Draws | None:
    """E's uncertainty in the intervals: one bootstrap of a loss (and group) that refits E in
    every draw, shared by its N and Cmin laws (`analysis.ebootstrap`). None without a
    bootstrap, or with seed replicates (their bootstrap draws sizes and seeds, E held)."""
    s = inputs.settings
    if s.bootstrap <= 0 or has_replicates(sub):
        return None
    sets = [inputs.point_set(against, sub, metric) for against in s.against]
    locate = [i for i, p in enumerate(sets) if p.against in e_sources(s)]
    samples, valid = shared_bootstrap(
        sets, s.bootstrap, seed=s.seed, method=s.method, locate=locate
    )
    return {p.against: v for p, v in zip(sets, samples, strict=True)}, valid


def fit_one_law(
    inputs: LawInputs,
    against: str,
    metric: str,
    sub: pd.DataFrame,
    E_mode: str | float,
    shared: SharedE | None,
    draws: Draws | None,
    common: dict[str, Any],
) -> FitResult:
    """One law with its interval: fitted at the shared E (`shared`, a loss under "fit") or the
    fixed E of `E_mode`; its interval from `draws` (E refitted per draw) when given, else from
    the fit's own bootstrap."""
    s = inputs.settings
    # None from irreducible_value means "fit E with the law"
    fixed = shared.E if shared is not None else irreducible_value(metric, E_mode)
    E: Irreducible = "fit" if fixed is None else fixed
    kw = dict(common, bootstrap=0) if draws is not None else dict(common)
    method = kw.pop("method")
    res = inputs.fit(against, sub, metric, E, method, **kw)
    if draws is not None:
        samples, valid = draws[0][against], draws[1]
        units = len(res.points) if against == "N" else res.n_runs
        res.bootstrap, res.bootstrap_valid, res.samples = s.bootstrap, valid, samples
        res.alpha_ci, res.beta_ci, _ = _summarise(samples, units, s.ci, res.ci_method)
        res.E_in_bootstrap = "refitted"
    elif shared is not None:
        res.E_in_bootstrap = "fixed at its fitted value"
    if shared is not None:
        res.E_mode, res.E_ci = "fit", shared.ci
    return res


def check_interval(res: FitResult, sub: pd.DataFrame, settings: FitSettings) -> None:
    """Drop the interval of a law with too few sizes or valid draws ("n/a" with the reason)
    and set its row marks (sign, weak r); in place."""
    n_sizes = int(res.points["x"].nunique()) if res.against == "N" else int(sub["params"].nunique())
    ok, why = interval_support(
        n_sizes, res.E_mode == "fit", settings.bootstrap, res.bootstrap_valid
    )
    if not ok:
        res.alpha_ci = res.beta_ci = None
        res.samples = None
        res.ci_note = why
    res.marks = law_marks(res.law.alpha, res.r)


def sensitivity_variants(
    inputs: LawInputs, res: FitResult, sub: pd.DataFrame, metric: str
) -> dict[str, Callable[[], float | None]]:
    """The sensitivity report's choices for one law, each a refit of its exponent: E fitted /
    pinned / none (losses only), the other regression method, without the smallest size and
    without the largest."""
    s = inputs.settings
    against, E = res.against, res.law.E
    other: Method = "robust" if s.method == "ols" else "ols"
    sizes = sorted(sub["params"].unique())

    def without(size) -> pd.DataFrame:
        return sub[sub["params"] != size]

    variants: dict[str, Callable[[], float | None]] = {}
    if is_loss(metric):

        def e_fitted() -> float | None:
            if res.E_mode == "fit":
                return res.law.alpha
            E_fit = fit_shared_E(e_points(inputs, sub, metric)).E
            return inputs.refit(against, metric, sub, E_fit, s.method)

        pinned = PAPER_IRREDUCIBLE.get(metric) if res.E_mode == "fit" else E
        variants["E fitted"] = e_fitted
        variants[f"E pinned ({pinned:g})" if pinned is not None else "E pinned"] = lambda: (
            None if pinned is None else inputs.refit(against, metric, sub, pinned, s.method)
        )
        variants["no E"] = lambda: inputs.refit(against, metric, sub, 0.0, s.method)
    variants["Huber" if other == "robust" else "OLS"] = lambda: inputs.refit(
        against, metric, sub, E, other
    )
    variants["without smallest size"] = lambda: inputs.refit(
        against, metric, without(sizes[0]), E, s.method
    )
    variants["without largest size"] = lambda: inputs.refit(
        against, metric, without(sizes[-1]), E, s.method
    )
    return variants


def attach_sensitivity(inputs: LawInputs, res: FitResult, sub: pd.DataFrame, metric: str) -> None:
    """The sensitivity report of one law (`analysis.sensitivity`), and its row mark when the
    spread across the choices exceeds the interval; in place."""
    s = inputs.settings
    variants = sensitivity_variants(inputs, res, sub, metric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res.sensitivity = sensitivity(
            res.law.alpha,
            res.alpha_ci,
            variants,
            t_interval(res.points["x"], res.points["y"], res.law.E, s.ci),
            reference=("no E",),
        )
    if res.sensitivity["exceeds_interval"] and res.alpha_ci is not None:
        res.marks.append(
            f"sensitive: the exponent moves by {res.sensitivity['spread']:.3g} across the "
            f"choices of the sensitivity report, more than its interval's width "
            f"({res.alpha_ci[1] - res.alpha_ci[0]:.3g})"
        )


def law_record(
    res: FitResult,
    sub: pd.DataFrame,
    settings: FitSettings,
    group: Any,
    label: str | None,
    picks: list[dict[str, Any]] | None,
    unfinished: list[str],
    flagged: dict[str, dict[str, Any]],
    seed_averaged: bool,
) -> dict[str, Any]:
    """The fits.json record of one law: the fit itself, the paper's law, what the settings
    did to its points (cmin_from, final, unfinished and data-limited runs), its group."""
    against, metric = res.against, res.metric
    fitted_runs = set(res.points["run"].astype(str))
    rec = res.to_dict()
    try:
        law = paper_law(metric, against)
        rec["paper"] = {"alpha": law.alpha, "beta": law.beta, "E": law.E, "r": law.r}
    except KeyError:  # sample metrics: the paper published no law
        rec["paper"] = None
    if against == "Cmin":
        rec["cmin_from"] = {
            "setting": settings.cmin_from,
            "excluded_evaluations": int(sub["cmin_excluded"].sum()),
        }
    if against == "N":
        rec["final"] = settings.final
        rec["unfinished_runs_included"] = [r for r in unfinished if r in fitted_runs]
    rec["data_limited_runs"] = [r for r in flagged if r in fitted_runs]
    if rec["data_limited_runs"]:
        how = f"their {settings.final} evaluation kept" if against == "N" else "on the frontier"
        rec["marks"].append(f"data-limited runs: {', '.join(rec['data_limited_runs'])} ({how})")
    rec["group"] = group or None
    rec["group_label"] = label
    if picks is not None:
        rec["best_over"] = {
            "axis": picks[0]["axis"],
            "by": picks[0]["by"],
            "seed_averaged": seed_averaged,
            "picked": picks,
        }
    return rec


def axis_crossovers(
    inputs: LawInputs,
    table: pd.DataFrame,
    axes: dict[str, Any],
    E_mode: str | float,
    common: dict[str, Any],
) -> list[dict[str, Any]]:
    """With `best_over`: for the picking metric (best_by, else each fitted metric), every x
    and law group, one law per value of the axis fitted on all that value's runs (as without
    best_over), and the x where the lowest law changes (`analysis.crossover`), with a
    bootstrap interval when every law of the pair has one (`check_interval`'s rule: enough
    sizes and valid draws). Records for fits.json; the x in law units and raw (params,
    FLOPs)."""
    s = inputs.settings
    column = axes["best_column"]
    metrics = [s.best_by] if s.best_by else list(s.metrics)
    if s.best_by and s.best_by not in s.metrics:
        warnings.warn(
            f"best_by={s.best_by}: no crossover (its laws are fitted only when it is among "
            f"the metrics: --set metrics=[...,{s.best_by}])",
            stacklevel=2,
        )
        return []
    out: list[dict[str, Any]] = []
    for metric in metrics:
        for group, sub in groups(table, axes["law_columns"]):
            label = group_label(group, axes["labels"]) or None
            fits: dict[str, dict[Any, FitResult]] = {a: {} for a in s.against}
            for value_group, vsub in groups(sub, [column]):
                value = next(iter(value_group.values()))
                vlabel = ", ".join(
                    filter(None, [label, f"{axes['best_label']}={_value_text(value)}"])
                )
                with warnings.catch_warnings():  # the per-value laws' own warnings: said there
                    warnings.simplefilter("ignore")
                    try:
                        se = boot = None
                        if E_mode == "fit" and is_loss(metric):
                            se = compute_shared_E(inputs, vsub, metric, vlabel)
                            boot = bootstrap_draws(inputs, vsub, metric)
                        for against in s.against:
                            res = fit_one_law(
                                inputs, against, metric, vsub, E_mode, se, boot, common
                            )
                            check_interval(res, vsub, s)
                            fits[against][value] = res
                    except ResultsError:
                        continue
            for against, by_value in fits.items():
                if len(by_value) < 2:
                    continue
                xs = np.concatenate([r.points["x"].to_numpy(float) for r in by_value.values()])
                x_range = (float(xs.min()), float(xs.max()))
                samples = {v: r.samples for v, r in by_value.items() if r.samples is not None}
                n_units = min(
                    int(r.points["x"].nunique()) if against == "N" else r.n_runs
                    for r in by_value.values()
                )
                found = []
                for c in crossovers({v: r.law for v, r in by_value.items()}, x_range):
                    c = crossover_interval(
                        c, samples, x_range, n_units=n_units, level=s.ci, seed=s.seed
                    )
                    rec = c.to_dict()
                    rec["x_raw"] = c.x * X_SCALE[against]
                    rec["ci_raw"] = [v * X_SCALE[against] for v in c.ci] if c.ci else None
                    if c.ci is None:
                        notes = [
                            f"{_value_text(v)}: {by_value[v].ci_note or 'no bootstrap draws'}"
                            for v in (c.below, c.above)
                            if v not in samples
                        ]
                        rec["ci_note"] = "; ".join(notes) or "too few crossing draws"
                    found.append(rec)
                out.append(
                    {
                        "metric": metric,
                        "against": against,
                        "axis": axis_name(column),
                        "group_label": label,
                        "x_unit": X_UNIT[against],
                        "x_range": list(x_range),
                        "level": s.ci,
                        "laws": [
                            {
                                "value": v,
                                "alpha": r.law.alpha,
                                "beta": r.law.beta,
                                "E": r.law.E,
                                "alpha_ci": list(r.alpha_ci) if r.alpha_ci else None,
                                "ci_note": r.ci_note,
                            }
                            for v, r in by_value.items()
                        ],
                        "crossovers": found,
                    }
                )
    return out


def fit_study(
    raw: pd.DataFrame,
    settings: FitSettings,
    *,
    source: str = "table",
    labels: dict[str, str] | None = None,
    tokenizer: Tokenizer | None = None,
) -> StudyFit:
    """Fit every law `settings` asks for on the tidy table `raw` (see the module docstring).

    source: names the table in messages. labels: axis -> run-id label (`study_axes`).
    tokenizer: (official, why) for irreducible "auto" (None: not known, E is fitted).
    Raises `ResultsError` when nothing can be fitted.
    """
    table = prepare(raw, settings.metrics, settings.compute, source=source)
    sizes = sorted(set(int(p) for p in table["params"]))
    holdout = settings.holdout if settings.holdout >= 0 else (2 if len(sizes) >= 6 else 0)
    unfinished = find_unfinished(table, settings)
    flagged = flag_data_limited(table, settings)
    E_mode, E_reason = choose_irreducible(
        settings.irreducible, tokenizer or UNKNOWN_TOKENIZER, table, settings.metrics
    )
    if E_mode == "fit":
        where = " and ".join(f"vs {a}" for a in e_sources(settings))
        E_reason += f"; located by the points of the laws {where} (E_from {settings.E_from})"
    inputs = LawInputs(
        settings, frozenset(unfinished) if not settings.include_unfinished else frozenset()
    )
    mark_cmin_excluded(table, settings, source)
    axes = study_axes(table, settings, labels or {})
    # one E per loss and law group, and its bootstrap draws, shared by the laws vs N and Cmin
    shared: dict[tuple[str, str | None], SharedE] = {}
    draws: dict[tuple[str, str | None], Draws | None] = {}
    records, results, law_labels, notes = [], [], [], []
    common: dict[str, Any] = dict(
        method=settings.method,
        bootstrap=settings.bootstrap,
        level=settings.ci,
        holdout=holdout,
        seed=settings.seed,
    )
    for against in settings.against:
        for metric in settings.metrics:
            for group, sub in groups(table, axes["law_columns"]):
                label = group_label(group, axes["labels"]) or None
                picks = None
                if axes["best_column"] is not None:
                    sub, picks = best_over(
                        sub,
                        axes["best_column"],
                        settings.best_by or metric,
                        sizes=axes["size_columns"] or ("params",),
                    )
                key = (metric, label)
                try:
                    se = None
                    if E_mode == "fit" and is_loss(metric):
                        if key not in shared:
                            shared[key] = compute_shared_E(inputs, sub, metric, label)
                        se = shared[key]
                        if key not in draws:
                            draws[key] = None  # a failed bootstrap is not retried
                            draws[key] = bootstrap_draws(inputs, sub, metric)
                    boot = draws[key] if se is not None else None
                    res = fit_one_law(inputs, against, metric, sub, E_mode, se, boot, common)
                except ResultsError as e:
                    if not axes["law_columns"]:
                        raise
                    warnings.warn(f"{metric} vs {against}, {label}: no law ({e})", stacklevel=1)
                    continue
                check_interval(res, sub, settings)
                attach_sensitivity(inputs, res, sub, metric)
                records.append(
                    law_record(
                        res,
                        sub,
                        settings,
                        group,
                        label,
                        picks,
                        unfinished,
                        flagged,
                        bool(axes["seed_columns"]),
                    )
                )
                results.append(res)
                law_labels.append(label)
                notes.append(
                    {p["params"]: f"{axes['best_label']}={_value_text(p['value'])}" for p in picks}
                    if picks
                    else None
                )
    if not records:
        raise ResultsError(f"{source}: no law could be fitted (see the warnings)")
    crossings = (
        axis_crossovers(inputs, table, axes, E_mode, common)
        if axes["best_column"] is not None
        else []
    )
    E_values: dict[str, float] = {}
    for m in settings.metrics:
        value = irreducible_value(m, E_mode)
        if value is not None:  # None: a loss under "fit", whose E is in `shared`
            E_values[m] = value
    return StudyFit(
        settings=settings,
        raw=raw,
        table=table,
        sizes=sizes,
        holdout=holdout,
        unfinished=unfinished,
        flagged=flagged,
        E_mode=E_mode,
        E_reason=E_reason,
        E_values=E_values,
        shared=shared,
        axes=axes,
        results=results,
        records=records,
        labels=law_labels,
        notes=notes,
        crossovers=crossings,
    )
