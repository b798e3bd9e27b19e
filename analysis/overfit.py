"""Data-limited runs: a test metric risen clearly above its own minimum while training loss fell.

For each watched metric (`METRICS`: ce_avg, ce_last, err_avg, err_last), a run is flagged
when at two consecutive evaluations i, i+1 (or more)

    test_i - min(test_0..i)  >  K * sqrt(se_i^2 + se_min^2)        (K = 4)
    train_i < train at the evaluation of that minimum

i.e. it memorises its training data: its final test metric measures the data set's size, not
the model's, and bends the top of a law vs N (bigger models overfit sooner). se is the
standard error of the test metric at that evaluation (`<metric>_se`, recorded by the
evaluator from the per-image values: the test set's sampling error), so the threshold scales
with the test set: a few hundredths of a percent of ImageNet's 50,000 images, a few tenths of
a percent on a demo split. K is chosen by simulation (docs/fitting.md, "Data-limited runs";
tests/analysis/test_overfit.py): over 500 noise-only curves (24 evaluations, noise of
the recorded se) fewer than 1% are flagged, while a 1.5% end-of-run rise is.

Tables without `<metric>_se` (runs recorded before the evaluator measured it, tables from
elsewhere) fall back to the relative rule of before, on ce_avg only: the last evaluation >=
(1 + RISE) x the minimum (RISE = 2%; the error rates' evaluation noise is of that order, so
they are watched only with standard errors); the reason says which rule fired. When the
table has no `train_loss`, the test criterion alone is used and the reason says so.
Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from contracts.metrics import METRICS

K = 4.0  # standard errors above the running minimum that count as a rise
CONSECUTIVE = 2  # evaluations in a row that must be above it
RISE = 0.02  # the fallback without standard errors: relative rise of the last evaluation
METRIC = "ce_avg"  # the headline metric (messages); every one of METRICS is watched


def se_column(metric: str) -> str:
    """The column that holds `metric`'s standard error."""
    return f"{metric}_se"


def check_curve(
    steps,
    test,
    train=None,
    se=None,
    k: float = K,
    consecutive: int = CONSECUTIVE,
    rise: float = RISE,
) -> dict[str, Any] | None:
    """One run's curve of one metric (evaluations in step order: steps [n], test [n], train [n]
    or None, se [n] or None) -> the flag record, or None when the run is not data-limited.

    With `se`: flagged at the first run of `consecutive` evaluations each more than k
    combined standard errors above the running minimum (and, with `train`, each with a lower
    training loss than at that minimum). Without: the relative rule (last >= (1 + rise) x min).
    """
    test = np.asarray(test, float)
    n = len(test)
    if n < 2:
        return None
    tr = None if train is None else np.asarray(train, float)
    if se is not None and np.isfinite(np.asarray(se, float)).all():
        s = np.asarray(se, float)
        best = np.zeros(n, dtype=int)  # index of the running minimum up to each evaluation
        for i in range(1, n):
            best[i] = i if test[i] < test[best[i - 1]] else best[i - 1]
        above = test - test[best] > k * np.sqrt(s**2 + s[best] ** 2)
        if tr is not None:
            above &= np.isfinite(tr) & (tr < tr[best])
        run = 0
        for i in range(n):
            run = run + 1 if above[i] else 0
            if run >= consecutive:
                j = best[i]
                z = (test[i] - test[j]) / math.sqrt(s[i] ** 2 + s[j] ** 2)
                rec = _record(steps, test, j, n - 1, tr)  # rise: at the run's last evaluation
                rec["detected_step"] = int(steps[i])
                rec["rule"] = f"> {k:g} standard errors above the minimum, {consecutive} in a row"
                rec["z"] = z
                rec["reason"] = (
                    f"test rose {100 * (test[i] / test[j] - 1):.2f}% ({z:.0f} standard errors) "
                    f"above its minimum (step {rec['best_step']}) at steps {int(steps[i - 1])}, "
                    f"{int(steps[i])}; {100 * rec['rise']:+.2f}% at the last evaluation"
                    + _train_text(tr, j, i)
                )
                return rec
        return None
    last = n - 1
    j = int(np.argmin(test))
    if j == last or not test[last] >= (1 + rise) * test[j]:
        return None
    if tr is not None and not (
        math.isfinite(tr[last]) and math.isfinite(tr[j]) and tr[last] < tr[j]
    ):
        return None
    rec = _record(steps, test, j, last, tr)
    rec["rule"] = f"last >= (1 + {rise:g}) x minimum (no standard errors recorded)"
    rec["reason"] = (
        f"test rose {100 * rec['rise']:.1f}% above its minimum (step {rec['best_step']}; "
        f"no standard errors recorded, {100 * rise:.0f}% rule)" + _train_text(tr, j, last)
    )
    return rec


def _record(steps, test, j: int, i: int, tr) -> dict[str, Any]:
    out: dict[str, Any] = {
        "best_step": int(steps[j]),
        "best": float(test[j]),
        "last_step": int(steps[i]),
        "last": float(test[i]),
        "rise": float(test[i] / test[j] - 1),
    }
    if tr is not None:
        out.update(train_at_best=float(tr[j]), train_last=float(tr[i]))
    return out


def _train_text(tr, j: int, i: int) -> str:
    if tr is None:
        return "; no training loss to compare"
    return f" while training loss fell {tr[j]:.3f} -> {tr[i]:.3f}"


def check_run(
    steps,
    metrics: Mapping[str, Sequence[float]],
    train=None,
    se: Mapping | None = None,
    k: float = K,
) -> dict[str, Any] | None:
    """One run: metric -> its curve (and se: metric -> its standard errors, when recorded).

    Returns None, or {metric (the first flagged, in METRICS order), metrics (every flagged one
    -> its record), reason (all of them in words), and the first one's fields}."""
    flagged = {}
    for m in METRICS:
        s = None if se is None else se.get(m)
        if m not in metrics or (s is None and m != METRIC):
            continue  # without standard errors only ce_avg is watched (the relative rule)
        rec = check_curve(steps, metrics[m], train, s, k=k)
        if rec is not None:
            flagged[m] = rec
    if not flagged:
        return None
    first = next(iter(flagged))
    return {
        "metric": first,
        **flagged[first],
        "metrics": flagged,
        "reason": "; ".join(f"{m}: {r['reason']}" for m, r in flagged.items()),
    }


def data_limited_runs(table: pd.DataFrame, k: float = K) -> dict[str, dict]:
    """run -> flag record (see `check_run`) for every flagged run of a tidy table."""
    watched = [m for m in METRICS if m in table.columns]
    if not watched:
        return {}
    order = "step" if "step" in table.columns else "compute"
    out = {}
    for run, df in table.groupby("run", sort=True):
        df = df.sort_values(order, kind="stable")
        train = (
            df["train_loss"].to_numpy(float)
            if "train_loss" in df.columns and df["train_loss"].notna().all()
            else None
        )
        se = {
            m: df[se_column(m)].to_numpy(float)
            for m in watched
            if se_column(m) in df.columns and df[se_column(m)].notna().all()
        }
        rec = check_run(
            df[order].to_numpy(),
            {m: df[m].to_numpy(float) for m in watched},
            train,
            se or None,
            k=k,
        )
        if rec is not None:
            out[str(run)] = rec
    return out


RULE = (
    f"a test metric ({', '.join(METRICS)}) more than {K:g} standard errors above its running "
    f"minimum at {CONSECUTIVE} consecutive evaluations while the training loss is below its "
    f"value at that minimum (without recorded standard errors: ce_avg's last evaluation >= "
    f"{1 + RISE:g} x its minimum); analysis.overfit"
)

MEANING = (
    "their final test loss measures the training set's size more than the model's "
    "(repeated data), so they bend the top of the laws vs N; remedies: more views per "
    "image (scaling.tokenize --views K), fewer epochs or more images; `fit --set final=best` "
    "uses each run's best evaluation instead (docs/data.md)"
)
