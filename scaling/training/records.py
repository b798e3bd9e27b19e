"""What a run records: one line of metrics.jsonl after each evaluation.

Its compute columns (step, images, tokens, flops, flops_6nd) and epochs come from the run's
`RunBudget` (`scaling.training.budget`), the same object that prices the run before it starts,
so an estimate and the record of the run it estimates cannot drift apart. Torch-free.
"""

from __future__ import annotations

from typing import Any

from contracts.metrics import MetricsRecord
from contracts.status import SUMMARY_KEYS
from scaling.training.budget import RunBudget
from scaling.training.config import RunConfig


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
) -> MetricsRecord:
    """One line of metrics.jsonl (`contracts.metrics`): the run, its compute at `step`, the
    training loss and learning rate, and the test `metrics` of one evaluation of `kind`
    ("full"/"subset")."""
    optim = config.optim
    done = budget.at(step)
    return MetricsRecord(
        run=config.run_id,
        depth=config.model.depth,
        params=budget.params,
        width=width,
        batch=optim.batch_size,
        peak_lr=optim.peak_lr,
        epochs=budget.epochs,
        train_images=budget.train_images,
        unique_tokens=budget.unique_tokens,
        views=budget.rows_per_image,
        seed=config.seed,
        step=done.step,
        images=done.images,
        tokens=done.tokens,
        flops=done.flops,
        flops_6nd=done.flops_6nd,
        wall_s=round(wall_s, 3),
        train_loss=train_loss,
        lr=lr,
        ce_avg=metrics["ce_avg"],
        ce_last=metrics["ce_last"],
        err_avg=metrics["err_avg"],
        err_last=metrics["err_last"],
        ce_by_scale=tuple(metrics["ce_by_scale"]),
        err_by_scale=tuple(metrics["err_by_scale"]),
        # standard errors over the test images (written when the evaluator measured them)
        ce_avg_se=metrics.get("ce_avg_se"),
        ce_last_se=metrics.get("ce_last_se"),
        err_avg_se=metrics.get("err_avg_se"),
        err_last_se=metrics.get("err_last_se"),
        eval=kind,
        eval_images=metrics["images"],
        eval_flops=eval_flops,
        eval_s=round(eval_s, 3),
    )


def summary(record: MetricsRecord | None) -> dict[str, Any]:
    """status.json's `final` of a finished run: the headline columns of its last record."""
    columns = record.columns() if record is not None else {}
    return {k: columns[k] for k in SUMMARY_KEYS if k in columns}
