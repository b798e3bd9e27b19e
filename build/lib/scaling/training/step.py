"""One optimizer step, and the training loss it leaves on the device.

The hot path reads nothing back to the host: the loss, its finiteness and the gradient norm
stay 0-d device tensors until a log point reads them (`LossTally.global_sum`), so a GPU
never waits for the host between log points (tests/training/test_hot_path.py).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from scaling.core.cli import RuntimeFailure
from scaling.training import schedule
from scaling.training.config import OptimConfig
from scaling.training.distributed import DistInfo
from scaling.training.model import WrappedVAR


class NonFiniteLoss(RuntimeFailure):
    """The training loss became NaN or inf."""


def set_hyperparameters(
    optimizer: torch.optim.Optimizer, step: int, plan: schedule.Plan, optim: OptimConfig
) -> None:
    """The learning rate and weight decay of optimizer step `step` (0-based), per group
    (a group's `wd_scale` is 1 for decayed weights, 0 for the no-decay set)."""
    lr = optim.peak_lr * schedule.lr_factor(step, plan, optim)
    wd = schedule.weight_decay(step, plan.total_steps, optim)
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["weight_decay"] = wd * group["wd_scale"]


def optimizer_step(
    var: WrappedVAR,
    optimizer: torch.optim.Optimizer,
    micro_batches: Iterable[tuple[bool, torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    local_batch: int,
    label_smoothing: float,
    grad_clip: float,
    autocast: Callable[[], contextlib.AbstractContextManager],
    measure_grad_norm: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward and backward over this process's micro-batches, then clip and step.

    `micro_batches` yields (last, labels [b], x_in [b, L-1, Cvae], tokens [b, L]) and fills
    this process's `local_batch` images. Returns the sum of the per-image losses (0-d float64
    device tensor) and the global gradient norm before clipping (0-d device tensor; measured
    when clipping, or when `measure_grad_norm`; else None).
    """
    loss_sum = torch.zeros((), dtype=torch.float64, device=var.device)
    for last, labels, x_in, tokens in micro_batches:
        n = tokens.shape[0]
        with var.grad_sync(last):
            with autocast():
                # every token weighted 1/L, every image 1/B: the mean over the global batch;
                # the loss comes from the trunk's output in chunks (no [B, L, V] logits)
                loss = var.train(labels, x_in, tokens, label_smoothing=label_smoothing)
            (loss * (n / local_batch)).backward()
        loss_sum += loss.detach().double() * n
    grad_norm = None
    if grad_clip > 0:
        # the global norm before clipping (a 0-d device tensor; read it only when needed)
        grad_norm = torch.nn.utils.clip_grad_norm_(var.grad_params, grad_clip)
    elif measure_grad_norm:  # no clipping: measured for the logs only
        grad_norm = _total_norm([p.grad for p in var.grad_params if p.grad is not None])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


class LossTally:
    """The training loss since the last evaluation: this process's sum of per-image losses
    and the first step whose loss was not finite, both kept on the device."""

    def __init__(self, dist: DistInfo, run_id: str, checkpoint: Path):
        self.device, self.dist = dist.device, dist
        self.run_id, self.checkpoint = run_id, checkpoint  # named by NonFiniteLoss
        self.sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.count = 0  # steps summed
        self.first_bad = torch.zeros((), dtype=torch.float64, device=self.device)  # 0 = none

    def add(self, loss_sum: torch.Tensor, step: int) -> None:
        """Add the per-image loss sum of step `step` (1-based); no host read."""
        # remember the first non-finite step without reading the loss (no host sync)
        self.first_bad = torch.where(
            (self.first_bad == 0) & ~torch.isfinite(loss_sum), float(step), self.first_bad
        )
        self.sum += loss_sum
        self.count += 1

    def global_sum(self, step: int) -> float:
        """Sum over ranks of the per-image losses since the last evaluation (every rank calls
        this; one host read); raises NonFiniteLoss if a step had a non-finite loss on any
        rank. `step`: the current step, for the message."""
        total = torch.stack((self.sum, self.first_bad))
        self.dist.all_reduce_sum(total)  # a bad step on any rank makes the second sum non-zero
        loss_sum, bad = total.tolist()
        if bad != 0 or not math.isfinite(loss_sum):
            mine = int(self.first_bad.item())
            first = f"at step {mine}" if mine else "on another rank"
            raise NonFiniteLoss(
                f"training loss became non-finite {first} of run {self.run_id} (checked at step "
                f"{step}); stopped without saving. The last good checkpoint ({self.checkpoint}) "
                f"is kept."
            )
        return loss_sum

    def local_mean(self, local_batch: int) -> float:
        """This rank's mean loss per image (one host read, no collective, no check)."""
        return self.sum.item() / (max(self.count, 1) * local_batch)

    def reset(self) -> None:
        """Start a new tally (after an evaluation)."""
        self.sum, self.count = torch.zeros_like(self.sum), 0

    def restore(self, global_sum: float, count: int) -> None:
        """From a checkpoint: rank 0 carries the global sum, the others start from 0."""
        self.sum = torch.tensor(
            global_sum if self.dist.is_main else 0.0, dtype=torch.float64, device=self.device
        )
        self.count = count


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """Global 2-norm of the gradients (0-d tensor), without touching them."""
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6 (DTensor-aware)
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
