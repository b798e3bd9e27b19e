"""What a run counts and records: the one formula for the compute columns of metrics.jsonl.

The trainer writes `metrics_record(...)` after each evaluation; `config.estimate` gives the
same columns before a run from `progress(...)`, so an estimate and the record of the run it
estimates cannot drift apart. Pure functions and plain data (torch-free); the per-image counts
come from `var_core.counting`, the one home of the FLOP conventions:

    flops      exact training FLOPs (counting.train_flops_per_image) x images trained on
    flops_6nd  6 N D (counting.flops_6nd), D = tokens trained on
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from contracts.metrics import MetricsRecord
from contracts.status import SUMMARY_KEYS
from var_core import counting

if TYPE_CHECKING:  # annotations only: config.estimate imports this module
    from scaling.training.config import RunConfig


@dataclasses.dataclass(frozen=True)
class ImageCounts:
    """Per-image counts of one VAR (its constructor kwargs): N, L and FLOPs."""

    params: int  # N, parameters (buffers excluded)
    tokens: int  # L, tokens per image over all scales
    forward_flops: int  # teacher-forced forward (evaluation) FLOPs per image
    train_flops: int  # training FLOPs per image (forward + backward)

    @classmethod
    def of(cls, var_kwargs: dict[str, Any]) -> ImageCounts:
        """The counts of `var_core.VAR(**var_kwargs)`, from its shapes alone."""
        return cls(
            params=counting.params(**var_kwargs),
            tokens=counting.tokens_per_image(var_kwargs["patch_nums"]),
            forward_flops=counting.forward_flops(**var_kwargs),
            train_flops=counting.train_flops_per_image(**var_kwargs),
        )


def progress(step: int, batch_size: int, counts: ImageCounts) -> dict[str, int]:
    """The compute after `step` optimizer steps of `batch_size` images: step, images,
    tokens, flops (exact) and flops_6nd."""
    images = step * batch_size
    tokens = images * counts.tokens
    return dict(
        step=step,
        images=images,
        tokens=tokens,
        flops=counts.train_flops * images,
        flops_6nd=counting.flops_6nd(counts.params, tokens),
    )


def epochs(total_steps: int, batch_size: int, train_images: int) -> float:
    """Passes over the train split's images (never its stored views) in a whole run."""
    return total_steps * batch_size / train_images


def metrics_record(
    config: RunConfig,
    counts: ImageCounts,
    *,
    width: int,
    total_steps: int,
    train_images: int,
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
    done = progress(step, optim.batch_size, counts)
    return MetricsRecord(
        run=config.run_id,
        depth=config.model.depth,
        params=counts.params,
        width=width,
        batch=optim.batch_size,
        peak_lr=optim.peak_lr,
        epochs=epochs(total_steps, optim.batch_size, train_images),
        seed=config.seed,
        step=done["step"],
        images=done["images"],
        tokens=done["tokens"],
        flops=done["flops"],
        flops_6nd=done["flops_6nd"],
        wall_s=round(wall_s, 3),
        train_loss=train_loss,
        lr=lr,
        ce_avg=metrics["ce_avg"],
        ce_last=metrics["ce_last"],
        err_avg=metrics["err_avg"],
        err_last=metrics["err_last"],
        ce_by_scale=tuple(metrics["ce_by_scale"]),
        err_by_scale=tuple(metrics["err_by_scale"]),
        eval=kind,
        eval_images=metrics["images"],
        eval_flops=eval_flops,
        eval_s=round(eval_s, 3),
    )


def summary(record: MetricsRecord | None) -> dict[str, Any]:
    """status.json's `final` of a finished run: the headline columns of its last record."""
    columns = record.columns() if record is not None else {}
    return {k: columns[k] for k in SUMMARY_KEYS if k in columns}
