"""Schedules of the official trainer, and when to evaluate. Pure functions of the step."""

from __future__ import annotations

import math

from scaling.config import EvalConfig, OptimConfig


def lr_factor(step: int, total_steps: int, optim: OptimConfig) -> float:
    """Multiplier of the peak learning rate at `step` (0-based) of `total_steps`.

    Linear warm-up from `warmup_start` over `warmup_frac` of training, then the peak is held
    for `hold_frac` of the remaining steps, then a linear decay to `final_lr_frac` at the
    last step (the official "lin0" schedule).
    """
    warmup = round(optim.warmup_frac * total_steps)
    if step < warmup:
        return optim.warmup_start + (1 - optim.warmup_start) * step / warmup
    remaining = max(total_steps - 1 - warmup, 1)
    progress = min((step - warmup) / remaining, 1.0)
    if progress < optim.hold_frac:
        return 1.0
    rest = (1 - progress) / (1 - optim.hold_frac)
    return optim.final_lr_frac + (1 - optim.final_lr_frac) * rest


def weight_decay(step: int, total_steps: int, optim: OptimConfig) -> float:
    """Weight decay at `step`: cosine from `weight_decay` to `weight_decay_end`."""
    end = optim.weight_decay if optim.weight_decay_end is None else optim.weight_decay_end
    progress = step / max(total_steps - 1, 1)
    return end + (optim.weight_decay - end) * (0.5 + 0.5 * math.cos(math.pi * progress))


def log_spaced_steps(total_steps: int, points: int, first_frac: float) -> list[int]:
    """`points` step counts (1-based: "after n steps") evenly spaced in log(compute).

    Training compute is proportional to steps, so the points are geometric between
    `first_frac * total_steps` and `total_steps`; duplicates after rounding collapse, and the
    last step is always included.
    """
    if points <= 0:
        return []
    first = max(1.0, first_frac * total_steps)
    if points == 1 or first >= total_steps:
        return [total_steps]
    ratio = (total_steps / first) ** (1 / (points - 1))
    steps = {min(total_steps, max(1, round(first * ratio**i))) for i in range(points)}
    steps.add(total_steps)
    return sorted(steps)


def eval_schedule(total_steps: int, cfg: EvalConfig) -> dict[int, str]:
    """Map step -> "full" | "subset": when to evaluate; full wins where both fall."""
    schedule = {s: "subset" for s in log_spaced_steps(total_steps, cfg.subset_points, cfg.first_frac)}
    schedule.update({s: "full" for s in log_spaced_steps(total_steps, cfg.points, cfg.first_frac)})
    return dict(sorted(schedule.items()))
