"""What every run of a planned study costs, and when it evaluates (the planner's first section).

A `RunCost` is one run's `RunBudget` (`scaling.training.budget`: its exact counts, its steps
and its evaluation schedule exactly as the trainer lays them out) and where it runs (GPUs,
assumed throughput). A decay branch (issue 17) starts from its parent's stable-phase state
after `start_step` steps: it pays for its own steps only (its GPU-hours), while its compute
and data axis count the parent's steps up to the branch point too (as `scaling.fit` counts
them). `branch_cost` lays out a branch of any run with the trainer's own schedule code, so
alternatives of a sweep without branches can add them.

Torch-free.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from analysis.calibration import PlannedRun
from scaling.core.tables import human
from scaling.study.sweep.estimates import store_meta
from scaling.study.sweep.expand import format_value
from scaling.training.budget import RunBudget, run_budget
from scaling.training.config import BranchConfig, LengthConfig, RunConfig
from var_core.counting import tokens_per_image

TOKEN_BYTES = 2  # scaling.data.token_store: tokens are uint16 [count, L]
LABEL_BYTES = 4  # labels are int32 [count]


@dataclasses.dataclass(frozen=True)
class RunCost:
    """What one run costs, and when it evaluates (all FLOPs exact counts): its budget, and the
    GPUs it runs on."""

    budget: RunBudget
    depth: int
    seed: int
    config: RunConfig
    gpus: int
    tflops_per_gpu: float
    # a decay branch (start_step 0: a run from scratch in its stead): the parent's id
    parent: str | None = None
    gflops_per_cpu: float = 5.0  # a run without GPUs: its assumed rate per CPU core

    @property
    def run_id(self) -> str:
        return self.budget.run_id

    @property
    def params(self) -> int:
        return self.budget.params

    @property
    def steps(self) -> int:
        """The run's last step (a branch: its parent's steps before it included)."""
        return self.budget.steps

    @property
    def start_step(self) -> int:
        """A decay branch: the parent's step it starts from (else 0)."""
        return self.budget.start_step

    @property
    def own_steps(self) -> int:
        """Steps the run trains itself (a branch: its cool-down)."""
        return self.budget.own_steps

    @property
    def train_flops(self) -> float:
        """Training FLOPs the run itself spends."""
        return float(self.budget.own_flops)

    @property
    def compute(self) -> float:
        """Training FLOPs behind the run's final point (a branch: its parent's up to it too)."""
        return float(self.budget.flops)

    @property
    def tokens(self) -> float:
        """Tokens the run itself trains on."""
        return float(self.budget.own_tokens)

    def data(self, unit: str) -> float:
        """D of the joint law: the tokens or images behind the final point (parent's included)."""
        return float(self.budget.tokens if unit == "tokens" else self.budget.images)

    def schedule(self) -> dict[int, str]:
        """step -> full | subset, as the trainer evaluates (a branch: after its start only)."""
        return self.budget.evals

    def full_steps(self) -> np.ndarray:
        return np.array(self.budget.full_eval_steps, dtype=float)

    @property
    def eval_flops(self) -> float:
        """Forward FLOPs x images evaluated, over every evaluation (as the trainer's eval_flops)."""
        return float(self.budget.eval_flops)

    @property
    def gpu_hours(self) -> float:
        return self.budget.gpu_hours(self.tflops_per_gpu)

    @property
    def cpu_hours(self) -> float:
        """CPU core-hours of the run's own training and evaluation at the assumed rate."""
        return (self.train_flops + self.eval_flops) / (self.gflops_per_cpu * 1e9) / 3600.0

    @property
    def on_cpu(self) -> bool:
        """Whether the run has no GPU (its cost is then counted in CPU-hours)."""
        return self.gpus == 0

    @property
    def hours(self) -> float:
        """The run's cost in its own device's hours: GPU-hours, or CPU-hours without GPUs."""
        return self.cpu_hours if self.on_cpu else self.gpu_hours

    def eval_compute(self) -> np.ndarray:
        """[k] cumulative training FLOPs at each full evaluation (a branch: from step 0)."""
        return np.array(
            [float(self.budget.at(s).flops) for s in self.budget.full_eval_steps], dtype=float
        )

    def planned(self, seed: int | None = None, suffix: str = "") -> PlannedRun:
        """The run as `analysis.calibration.PlannedRun`."""
        return PlannedRun(
            self.run_id + suffix,
            float(self.params),
            self.eval_compute(),
            self.seed if seed is None else seed,
        )

    def with_steps(self, steps: int) -> RunCost:
        """This run (not a branch) made `steps` steps long, its schedule laid out again.
        Raises ScheduleError when its warm-up and cool-down do not fit."""
        config = dataclasses.replace(self.config, length=LengthConfig(steps=steps), save_at=())
        return dataclasses.replace(self, config=config, budget=self.budget.laid_out(config, steps))

    def with_eval(self, config: RunConfig) -> RunCost:
        """This run evaluating as `config.eval` says."""
        budget = dataclasses.replace(self.budget, eval=config.eval)
        return dataclasses.replace(self, config=config, budget=budget)

    def from_scratch(self) -> RunCost:
        """This run trained from step 0 (a branch without its parent's state)."""
        return dataclasses.replace(self, budget=self.budget.from_scratch())


def run_costs(sweep, meta: dict[str, Any]) -> list[RunCost]:
    """One `RunCost` per run of a loaded sweep (branches after their parent), for the store
    described by `meta` (a sweep with tokenizer variants: each run's own store's)."""
    out = []
    metas: dict[str | None, dict[str, Any]] = {}
    for run in sweep.runs:
        res = run.resources
        name = sweep.tokenizer_of(run).name if sweep.spec.tokenizers else None
        if name is not None and name not in metas:
            metas[name] = store_meta(sweep, name)[0]
        out.append(
            RunCost(
                run_budget(run.config, metas[name] if name is not None else meta),
                run.depth,
                int(run.config.seed),
                run.config,
                res.nodes * res.gpus_per_node,
                res.assumed_tflops_per_gpu,
                parent=run.parent,
                gflops_per_cpu=res.assumed_gflops_per_cpu,
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
    return dataclasses.replace(
        parent,
        config=config,
        budget=parent.budget.laid_out(config, parent.steps),
        parent=parent.run_id,
    )


def store_bytes(meta: dict[str, Any]) -> int:
    """Size of the token store's arrays: every split's count of stored sequences (views and
    flips included) x (L uint16 tokens + an int32 label)."""
    L = tokens_per_image(meta["patch_nums"])
    return sum(
        int(s.get("count", 0)) * (L * TOKEN_BYTES + LABEL_BYTES)
        for s in meta.get("splits", {}).values()
    )


def hours_unit(costs: list[RunCost]) -> str:
    """ "CPU-h" for a study without GPUs, else "GPU-h" (the unit of `RunCost.hours`)."""
    return "CPU-h" if costs and all(c.on_cpu for c in costs) else "GPU-h"


def hours_text(hours: float) -> str:
    """Hours for a table: whole hours from 10 up, else three significant digits."""
    return f"{hours:,.0f}" if hours >= 10 else f"{hours:.3g}"


def cost_table(costs: list[RunCost]) -> str:
    """Markdown table of the cost per run, with a total row (a branch: `start+own` steps)."""
    unit = hours_unit(costs)
    lines = [
        f"| run | N | steps | train tokens | train FLOPs | eval FLOPs | full evals | {unit} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in costs:
        steps = f"{c.steps:,}" if c.parent is None else f"{c.start_step:,}+{c.own_steps:,}"
        lines.append(
            f"| {c.run_id} | {human(c.params)} | {steps} | {human(c.tokens)} | {c.train_flops:.3g} "
            f"| {c.eval_flops:.3g} | {len(c.full_steps())} | {hours_text(c.hours)} |"
        )
    tr, ev = sum(c.train_flops for c in costs), sum(c.eval_flops for c in costs)
    lines.append(
        f"| **total ({len(costs)} runs)** | | | {human(sum(c.tokens for c in costs))} | {tr:.3g} "
        f"| {ev:.3g} "
        f"| {sum(len(c.full_steps()) for c in costs)} | {hours_text(sum(c.hours for c in costs))} |"
    )
    return "\n".join(lines)
