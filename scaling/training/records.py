"""What a run records: one line of metrics.jsonl after each evaluation.

Its compute columns (step, images, tokens, flops, flops_6nd) and epochs come from the run's
`RunBudget` (`scaling.training.budget`), the same object that prices the run before it starts,
so an estimate and the record of the run it estimates cannot drift apart. Torch-free.
"""

from __future__ import annotations

from typing import Any

from scaling.training.budget import RunBudget
from scaling.training.config import RunConfig

# the test metrics of one evaluation (scaling.training.evaluate), copied into the record
EVAL_KEYS = ("ce_avg", "ce_last", "err_avg", "err_last", "ce_by_scale", "err_by_scale")
# their standard errors over the test images (written when the evaluator measured them)
SE_KEYS = ("ce_avg_se", "ce_last_se", "err_avg_se", "err_last_se")
# what status.json keeps of a finished run's last record (`final`)
SUMMARY_KEYS = ("step", "tokens", "flops", "ce_avg", "ce_last", "err_avg", "err_last")


def metrics_record(
    config: RunConfig,
    budget: RunBudget,
    *,
    width: int,
    step: int,
    wall_s: float,
    train_loss: float,
    lr: float,
    metrics: dict[str, Any],
    kind: str,
    eval_flops: int,
    eval_s: float,
) -> dict[str, Any]:
    """One line of metrics.jsonl: the run, its compute at `step`, the training loss and
    learning rate, and the test `metrics` of one evaluation of `kind` ("full"/"subset")."""
    optim = config.optim
    return dict(
        run=config.run_id,
        depth=config.model.depth,
        params=budget.params,
        width=width,
        batch=optim.batch_size,
        peak_lr=optim.peak_lr,
        epochs=budget.epochs,
        seed=config.seed,
        **budget.at(step).columns(),
        wall_s=round(wall_s, 3),
        train_loss=train_loss,
        lr=lr,
        **{k: metrics[k] for k in EVAL_KEYS},
        **{k: metrics[k] for k in SE_KEYS if k in metrics},
        eval=kind,
        eval_images=metrics["images"],
        eval_flops=eval_flops,
        eval_s=round(eval_s, 3),
    )


def summary(record: dict[str, Any] | None) -> dict[str, Any]:
    """status.json's `final` of a finished run: the headline columns of its last record."""
    return {k: record[k] for k in SUMMARY_KEYS if record and k in record}
