"""Schedules of the official trainer, and when to evaluate. Pure functions of the step."""

from __future__ import annotations

import dataclasses
import math

from scaling.core.cli import InputError
from scaling.training.config import EvalConfig, OptimConfig, RunConfig

COOLDOWN_SHAPES = ("linear", "1-sqrt", "cosine")


class ScheduleError(InputError):
    """A schedule that cannot be laid out on the run's steps (the message names the key)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """A run's schedule laid out on its steps (all counts in optimizer steps).

    total_steps: the run ends after this many steps (a branch: counted from the parent's step 0).
    warmup_steps: linear warm-up length.
    decay_start: wsd: the first cool-down step (0-based); lin0: total_steps (unused).
    start_step: a decay branch starts from its parent's state after this many steps (else 0).
    save_steps: wsd: after these steps the stable-phase state is kept for decay branches.
    """

    total_steps: int
    warmup_steps: int
    decay_start: int
    start_step: int = 0
    save_steps: tuple[int, ...] = ()


def layout(optim: OptimConfig, total_steps: int) -> Plan:
    """The schedule of a plain run (no branch, no saved states) of `total_steps` steps."""
    T = int(total_steps)
    warmup = optim.warmup_steps if optim.warmup_steps is not None else round(optim.warmup_frac * T)
    if optim.schedule == "lin0":
        return Plan(T, warmup, T)
    cooldown = (
        optim.cooldown_steps if optim.cooldown_steps is not None else round(optim.cooldown_frac * T)
    )
    cooldown = max(1, cooldown)
    key = "optim.cooldown_steps" if optim.cooldown_steps is not None else "optim.cooldown_frac"
    if warmup + cooldown > T:
        raise ScheduleError(
            f"{key}: the cool-down ({cooldown} steps) is longer than the rest of "
            f"the run after its {warmup} warm-up steps ({T} steps in all)"
        )
    return Plan(T, warmup, T - cooldown)


def plan(config: RunConfig, length_steps: int) -> Plan:
    """Lay out `config`'s schedule; `length_steps` = `budget.length_steps(config.length, ...)`.

    A decay branch shares its parent's length config, so `length_steps` is the parent's T:
    the branch starts after s = round(at * T) steps and cools down over
    round(s * cooldown / (1 - cooldown)) more, with the parent's warm-up.
    Raises ScheduleError when the warm-up, cool-down and branch points do not fit.
    """
    optim = config.optim
    T = int(length_steps)
    base = layout(optim, T)
    if optim.schedule == "lin0":
        return base
    warmup, decay_start = base.warmup_steps, base.decay_start
    if config.branch is not None:
        b = config.branch
        s = round(b.at * T)
        if s < max(1, warmup) or s > decay_start:
            raise ScheduleError(
                f"branch.at: {b.at} of the parent's {T} steps is step {s}, outside "
                f"its constant phase (steps {max(1, warmup)} to {decay_start})"
            )
        own = max(1, round(s * b.cooldown / (1 - b.cooldown)))
        return Plan(s + own, warmup, s, start_step=s)
    saves = []
    for f in config.save_at:
        s = round(f * T)
        if s < max(1, warmup) or s > decay_start:
            raise ScheduleError(
                f"save_at: {f} of {T} steps is step {s}, outside the constant "
                f"phase (steps {max(1, warmup)} to {decay_start})"
            )
        saves.append(s)
    return Plan(T, warmup, decay_start, save_steps=tuple(sorted(set(saves))))


def _cooldown_shape(progress: float, shape: str) -> float:
    """1 -> 0 as progress goes 0 -> 1."""
    if shape == "linear":
        return 1 - progress
    if shape == "1-sqrt":
        return 1 - math.sqrt(progress)
    if shape == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    raise ScheduleError(f"optim.cooldown_shape: unknown shape {shape!r}; one of {COOLDOWN_SHAPES}")


def lr_factor(step: int, plan: Plan | int, optim: OptimConfig) -> float:
    """Multiplier of the peak learning rate at `step` (0-based) of `plan.total_steps` (an
    int: a plain run of that many steps, `layout(optim, plan)`).

    Both schedules start with a linear warm-up from `warmup_start` over `plan.warmup_steps`.
    lin0 (official): the peak is held for `hold_frac` of the remaining steps, then decays
    linearly to `final_lr_frac` at the last step. wsd: the peak is held until
    `plan.decay_start`, then the cool-down (`cooldown_shape`: linear, 1-sqrt or cosine) brings
    it to `final_lr_frac` at the last step (step total - 1).
    """
    if isinstance(plan, int):
        plan = layout(optim, plan)
    warmup, total = plan.warmup_steps, plan.total_steps
    if step < warmup:
        return optim.warmup_start + (1 - optim.warmup_start) * step / warmup
    if optim.schedule == "wsd":
        if step < plan.decay_start:
            return 1.0
        progress = min((step - plan.decay_start + 1) / (total - plan.decay_start), 1.0)
        return optim.final_lr_frac + (1 - optim.final_lr_frac) * _cooldown_shape(
            progress, optim.cooldown_shape
        )
    remaining = max(total - 1 - warmup, 1)
    progress = min((step - warmup) / remaining, 1.0)
    if progress < optim.hold_frac:
        return 1.0
    rest = (1 - progress) / (1 - optim.hold_frac)
    return optim.final_lr_frac + (1 - optim.final_lr_frac) * rest


def weight_decay(step: int, total_steps: int, optim: OptimConfig) -> float:
    """Weight decay at `step`: cosine from `weight_decay` to `weight_decay_end` (constant
    when that is unset, as WSD runs require)."""
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
    schedule = {
        s: "subset" for s in log_spaced_steps(total_steps, cfg.subset_points, cfg.first_frac)
    }
    schedule.update({s: "full" for s in log_spaced_steps(total_steps, cfg.points, cfg.first_frac)})
    return dict(sorted(schedule.items()))
