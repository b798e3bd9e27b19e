"""Data-limited runs: test loss risen clearly above its own minimum while training loss fell.

A run is flagged when, at its last evaluation,

    test  >= (1 + RISE) * min(test over its evaluations)     (RISE = 2%, relative)
    train <  train at the evaluation where the test minimum was reached

i.e. it memorises its training data: its final test loss measures the data set's size, not
the model's, and bends the top of a law vs N (bigger models overfit sooner). The 2% threshold
is ours: about four times the evaluation noise of a full test set (a demo-scale test split
of 500 images moves ce by ~0.5%), so a flagged run has really turned. When the table has no
`train_loss`, the test criterion alone is used and the reason says so. Torch-free.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

RISE = 0.02  # relative rise of test loss above its own minimum that flags a run
METRIC = "ce_avg"  # the test loss watched (all scales; the paper's main loss)


def check_curve(steps, test, train=None, rise: float = RISE) -> dict[str, Any] | None:
    """One run's curve (evaluations in step order: steps [n], test [n], train [n] or None)
    -> the flag record, or None when the run is not data-limited."""
    test = [float(v) for v in test]
    if len(test) < 2:
        return None
    i_min = min(range(len(test)), key=lambda i: test[i])
    last = len(test) - 1
    if i_min == last or not test[last] >= (1 + rise) * test[i_min]:
        return None
    record: dict[str, Any] = {
        "best_step": int(steps[i_min]),
        "best": test[i_min],
        "last_step": int(steps[last]),
        "last": test[last],
        "rise": test[last] / test[i_min] - 1,
    }
    if train is not None:
        tr = [float(v) for v in train]
        if not (math.isfinite(tr[last]) and math.isfinite(tr[i_min])) or not tr[last] < tr[i_min]:
            return None
        record.update(
            train_at_best=tr[i_min],
            train_last=tr[last],
            reason=f"test loss rose {100 * record['rise']:.1f}% above its minimum "
            f"(step {record['best_step']}) while training loss fell "
            f"{tr[i_min]:.3f} -> {tr[last]:.3f}",
        )
    else:
        record["reason"] = (
            f"test loss rose {100 * record['rise']:.1f}% above its minimum (step "
            f"{record['best_step']}); no training loss to compare"
        )
    return record


def data_limited_runs(
    table: pd.DataFrame, metric: str = METRIC, rise: float = RISE
) -> dict[str, dict]:
    """run -> flag record (see `check_curve`) for every flagged run of a tidy table."""
    if metric not in table.columns:
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
        rec = check_curve(df[order].to_numpy(), df[metric].to_numpy(float), train, rise)
        if rec is not None:
            out[str(run)] = {"metric": metric, **rec}
    return out


MEANING = (
    "their final test loss measures the training set's size more than the model's "
    "(repeated data), so they bend the top of the laws vs N; remedies: more views per "
    "image (scaling.tokenize --views K), fewer epochs or more images; `fit --set final=best` "
    "uses each run's best evaluation instead (docs/data.md)"
)
