"""What every run of a planned study costs, and when it evaluates (the planner's first section).

A `RunCost` holds one run's shapes and schedule: its exact forward FLOPs per image
(`var_core.counting` via `scaling.training.config.estimate`), its steps, and its evaluation
schedule exactly as the trainer lays it out (`scaling.training.schedule`). A decay branch
(issue 17) is a run that starts from its parent's stable-phase state after `start_step` steps:
it pays for its own steps only (its GPU-hours), while its compute and data axis count the
parent's steps up to the branch point too (as `scaling.fit` counts them). `branch_cost` lays
out a branch of any run with the trainer's own schedule code, so alternatives of a sweep
without branches can add them.

Torch-free.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from analysis.simulate import PlannedRun
from scaling.core.tables import human
from scaling.study.sweep.expand import format_value
from scaling.training.config import BranchConfig, RunConfig, estimate
from scaling.training.schedule import eval_schedule, plan

TOKEN_BYTES = 2  # scaling.data.token_store: tokens are uint16 [count, L]
LABEL_BYTES = 4  # labels are int32 [count]


@dataclasses.dataclass(frozen=True)
class RunCost:
    """What one run costs, and when it evaluates (all FLOPs exact counts)."""

    run_id: str
    depth: int
    params: int
    seed: int
    steps: int  # the run's last step (a branch: its parent's steps before it included)
    batch_size: int
    L: int  # tokens per image
    forward_flops: int  # per image
    config: RunConfig
    val_images: int
    gpus: int
    tflops_per_gpu: float
    start_step: int = 0  # a decay branch: the parent's step it starts from
    parent: str | None = (
        None  # a decay branch (start_step 0: a run from scratch in its stead): the parent's id
    )

    @property
    def own_steps(self) -> int:
        """Steps the run trains itself (a branch: its cool-down)."""
        return self.steps - self.start_step

    @property
    def train_flops(self) -> float:
        """Training FLOPs the run itself spends (3 x forward x images of its own steps)."""
        return 3.0 * self.forward_flops * self.batch_size * self.own_steps

    @property
    def compute(self) -> float:
        """Training FLOPs behind the run's final point (a branch: its parent's up to the branch
        too)."""
        return 3.0 * self.forward_flops * self.batch_size * self.steps

    @property
    def tokens(self) -> float:
        """Tokens the run itself trains on."""
        return float(self.own_steps) * self.batch_size * self.L

    def data(self, unit: str) -> float:
        """D of the joint law: the tokens or images behind the final point (parent's included)."""
        images = float(self.steps) * self.batch_size
        return images * self.L if unit == "tokens" else images

    def schedule(self) -> dict[int, str]:
        """step -> full | subset, exactly as the trainer evaluates (a branch: after its start
        only)."""
        return {
            s: k
            for s, k in eval_schedule(self.steps, self.config.eval).items()
            if s > self.start_step
        }

    def full_steps(self) -> np.ndarray:
        return np.array([s for s, k in self.schedule().items() if k == "full"], dtype=float)

    @property
    def eval_flops(self) -> float:
        """Forward FLOPs x images evaluated, over every evaluation (as the trainer's eval_flops)."""
        kinds = list(self.schedule().values())
        cfg = self.config.eval
        full = min(cfg.max_images or self.val_images, self.val_images)
        subset = min(cfg.subset_images, self.val_images)
        return float(self.forward_flops) * (
            kinds.count("full") * full + kinds.count("subset") * subset
        )

    @property
    def gpu_hours(self) -> float:
        return (self.train_flops + self.eval_flops) / (self.tflops_per_gpu * 1e12) / 3600.0

    def eval_compute(self) -> np.ndarray:
        """[k] cumulative training FLOPs at each full evaluation (a branch: from the parent's
        start)."""
        return self.full_steps() * 3.0 * self.forward_flops * self.batch_size

    def planned(self, seed: int | None = None, suffix: str = "") -> PlannedRun:
        """The run as `analysis.simulate.PlannedRun`."""
        return PlannedRun(
            self.run_id + suffix,
            float(self.params),
            self.eval_compute(),
            self.seed if seed is None else seed,
        )


def run_costs(sweep, meta: dict[str, Any]) -> list[RunCost]:
    """One `RunCost` per run of a loaded sweep (branches after their parent), for the store
    described by `meta`."""
    split = sweep.runs[0].config.data.eval_split if sweep.runs else "val"
    val = int(meta.get("splits", {}).get(split, {}).get("count", 0))
    out = []
    for run in sweep.runs:
        est = estimate(run.config, meta)
        res = run.resources
        per_step = 3 * int(est["forward_flops_per_image"]) * run.config.optim.batch_size
        own = int(est["own_flops"]) // per_step
        out.append(
            RunCost(
                run.run_id,
                run.depth,
                int(est["params"]),
                int(run.config.seed),
                int(est["steps"]),
                run.config.optim.batch_size,
                int(sum(p * p for p in meta["patch_nums"])),
                int(est["forward_flops_per_image"]),
                run.config,
                val,
                res.nodes * res.gpus_per_node,
                res.assumed_tflops_per_gpu,
                start_step=int(est["steps"]) - own,
                parent=run.parent,
            )
        )
    return out


def branch_cost(parent: RunCost, at: float, cooldown: float) -> RunCost:
    """A decay branch of `parent` at fraction `at` of its steps, cooling down over `cooldown`
    of its own length, laid out by the trainer's schedule (`scaling.training.schedule.plan`).
    A parent on the official schedule is taken as WSD with its defaults (a 20% cool-down,
    constant weight decay): the same cost. Raises `ScheduleError` when the point is outside the
    constant phase."""
    optim = parent.config.optim
    if optim.schedule != "wsd":
        optim = dataclasses.replace(optim, schedule="wsd", weight_decay_end=None)
    run_id = f"{parent.run_id}-b{format_value(at)}"
    config = dataclasses.replace(
        parent.config,
        run_id=run_id,
        optim=optim,
        save_at=(),
        branch=BranchConfig(parent=parent.run_id, at=at, cooldown=cooldown),
    )
    layout = plan(config, parent.steps)
    return dataclasses.replace(
        parent,
        run_id=run_id,
        config=config,
        steps=layout.total_steps,
        start_step=layout.start_step,
        parent=parent.run_id,
    )


def store_bytes(meta: dict[str, Any]) -> int:
    """Size of the token store's arrays: every split's count of stored sequences (views and
    flips included) x (L uint16 tokens + an int32 label)."""
    L = sum(p * p for p in meta["patch_nums"])
    return sum(
        int(s.get("count", 0)) * (L * TOKEN_BYTES + LABEL_BYTES)
        for s in meta.get("splits", {}).values()
    )


def cost_table(costs: list[RunCost]) -> str:
    """Markdown table of the cost per run, with a total row (a branch: `start+own` steps)."""
    lines = [
        "| run | N | steps | train tokens | train FLOPs | eval FLOPs | full evals | GPU-h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in costs:
        steps = f"{c.steps:,}" if c.parent is None else f"{c.start_step:,}+{c.own_steps:,}"
        lines.append(
            f"| {c.run_id} | {human(c.params)} | {steps} | {human(c.tokens)} | {c.train_flops:.3g} "
            f"| {c.eval_flops:.3g} | {len(c.full_steps())} | {c.gpu_hours:,.0f} |"
        )
    tr, ev = sum(c.train_flops for c in costs), sum(c.eval_flops for c in costs)
    lines.append(
        f"| **total ({len(costs)} runs)** | | | {human(sum(c.tokens for c in costs))} | {tr:.3g} "
        f"| {ev:.3g} "
        f"| {sum(len(c.full_steps()) for c in costs)} | {sum(c.gpu_hours for c in costs):,.0f} |"
    )
    return "\n".join(lines)
