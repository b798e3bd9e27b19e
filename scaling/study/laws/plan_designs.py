"""The grids the planner simulates: the sweep as planned and the alternatives it is compared with.

A `Design` is a list of `RunCost` (parents, each followed by its decay branches) repeated for
a number of seeds. It gives the runs the laws vs N and vs Cmin are simulated on (the parents:
in the planner's training curves a branch's final point lies on its parent's curve, so it adds
nothing to the frontier, and an N law takes one final point per size) and the annealed final
points of the joint law L(N, D) (every run, branches included; a parent and its branches share
one seed's noise).

`alternatives` builds the comparison: the same sweep with more seeds, fewer or more sizes,
longer or shorter runs, more evaluations, against repeated data ("more views": 4x the stored
views per image; "fewer epochs": half of them), and decay branches: added to a sweep that has none
(WSD parents, branches at 1/4 and 1/2, or 1/8, 1/4 and 1/2, of the run, cooling down over 20%
of their own length as in Hagele et al. 2024; and the same with the runs shortened to the
planned budget), or, for a sweep with branches, without them and with every branch trained
from scratch instead (its own seed noise).

Torch-free.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np

from analysis.calibration import PlannedRun
from analysis.simulate import JointPoints
from scaling.core.config_io import ConfigError, load_yaml
from scaling.study.laws.plan_cost import RunCost, branch_cost, run_costs
from scaling.study.sweep.sweep import sweep_from_data
from scaling.training.schedule import ScheduleError

# decay branches added to a sweep that has none: (name, branch points); cool-down 20% of a branch
BRANCH_SETS = (("2 decay branches", (0.25, 0.5)), ("3 decay branches", (0.125, 0.25, 0.5)))
BRANCH_COOLDOWN = 0.2
MORE_VIEWS = 4  # the "more views" design: this many times the stored views per image


@dataclasses.dataclass
class Design:
    """A grid to simulate: its runs (parents, each followed by its branches) and its seeds."""

    name: str
    costs: list[RunCost]
    seeds: int = 1

    def _copies(self):
        for c in self.costs:
            for k in range(self.seeds):
                yield c, k, (f"-rep{k}" if self.seeds > 1 else "")

    def planned(self) -> list[PlannedRun]:
        """The parent runs as PlannedRun (the laws vs N and Cmin), each repeated for `seeds`
        seeds."""
        return [
            c.planned(seed=c.seed + k, suffix=sfx)
            for c, k, sfx in self._copies()
            if c.parent is None
        ]

    def joint_points(self, d_unit: str) -> JointPoints:
        """Every run's annealed final point; one family per parent and seed (its branches join
        it)."""
        runs, N, D, fam = [], [], [], []
        families: dict[tuple[str, int], int] = {}
        for c, k, sfx in self._copies():
            runs.append(c.run_id + sfx)
            N.append(float(c.params))
            D.append(c.data(d_unit))
            root = (
                c.parent if c.start_step else c.run_id
            )  # a branch continues its parent's trajectory
            fam.append(families.setdefault((root, k), len(families)))
        return JointPoints(tuple(runs), np.array(N), np.array(D), np.array(fam), d_unit)

    @property
    def gpu_hours(self) -> float:
        return self.seeds * sum(c.gpu_hours for c in self.costs)

    @property
    def hours(self) -> float:
        """The design's cost in its device's hours (`RunCost.hours`: GPU-h, or CPU-h)."""
        return self.seeds * sum(c.hours for c in self.costs)

    @property
    def runs(self) -> int:
        return self.seeds * len(self.costs)


def _parents(costs: list[RunCost]) -> list[RunCost]:
    return [c for c in costs if c.parent is None]


def _rebuild(costs: list[RunCost], parents: dict[str, RunCost]) -> list[RunCost]:
    """`costs` with each parent replaced by `parents[id]` and its branches laid out again on it."""
    out = []
    for c in costs:
        if c.parent is None:
            out.append(parents[c.run_id])
        else:
            branch = c.config.branch
            assert branch is not None  # a run with a parent is a decay branch
            out.append(branch_cost(parents[c.parent], branch.at, branch.cooldown))
    return out


def with_branches(
    costs: list[RunCost], at: tuple[float, ...], cooldown: float = BRANCH_COOLDOWN
) -> list[RunCost]:
    """The parents of `costs`, each followed by decay branches at `at` (their old ones dropped)."""
    out = []
    for p in _parents(costs):
        out += [p] + [branch_cost(p, f, cooldown) for f in at]
    return out


def from_scratch(costs: list[RunCost]) -> list[RunCost]:
    """Every branch trained from step 0 as a run of its own (its own seed noise; it keeps its
    parent's id, so that the laws vs N and Cmin still take the parents)."""
    return [c if c.parent is None else c.from_scratch() for c in costs]


def _every_other(costs: list[RunCost]) -> list[RunCost]:
    sizes = sorted({c.params for c in costs})
    keep = np.round(np.linspace(0, len(sizes) - 1, (len(sizes) + 1) // 2)).astype(int)
    keep_sizes = {sizes[i] for i in sorted(set(keep))}
    return [c for c in costs if c.params in keep_sizes]


def _length(costs: list[RunCost], factor: float) -> list[RunCost]:
    parents = {c.run_id: c.with_steps(max(1, round(c.steps * factor))) for c in _parents(costs)}
    return _rebuild(costs, parents)


def _evals(costs: list[RunCost], factor: float) -> list[RunCost]:
    def more(c: RunCost) -> RunCost:
        cfg = c.config.eval
        points = max(2, round(cfg.points * factor))
        return c.with_eval(
            dataclasses.replace(c.config, eval=dataclasses.replace(cfg, points=points))
        )

    return [more(c) for c in costs]


def _midpoint_sweep_costs(path: Path, sweep, meta) -> list[RunCost] | None:
    """The sweep with a depth added between every two consecutive depths (rules apply as
    written)."""
    depths = sorted(sweep.spec.grid["depth"])
    extra = [(a + b) // 2 for a, b in zip(depths, depths[1:]) if b - a >= 2]
    if not extra:
        return None
    data, loc = load_yaml(path)
    data["grid"]["depth"] = sorted(set(depths) | set(extra))
    try:
        more = sweep_from_data(data, loc)
    except ConfigError:
        return None
    return run_costs(more, meta)


def _same_budget(costs: list[RunCost], at: tuple[float, ...], budget: float) -> list[RunCost]:
    """Parents shortened so that they and their branches at `at` cost `budget` GPU-hours."""
    factor = 1.0
    for _ in range(3):  # the cost is linear in the length up to rounding: two corrections suffice
        trial = with_branches(_length(_parents(costs), factor), at)
        factor *= budget / sum(c.gpu_hours for c in trial)
    return with_branches(_length(_parents(costs), factor), at)


def more_views_meta(meta: dict, factor: int = MORE_VIEWS) -> dict:
    """`meta` with `factor` x the stored views (and sequences) in every split but the
    evaluation's: the store of the "more views" design."""
    out = copy.deepcopy(meta)
    for name, split in out.get("splits", {}).items():
        if name == "val":
            continue
        split["views"] = int(split.get("views", 1)) * factor
        split["count"] = int(split.get("count", 0)) * factor
    return out


def _repetition_designs(sweep, meta, costs: list[RunCost], skipped: list[str]) -> list[Design]:
    """The designs against repetition (issue 31): the same runs on a store with
    `MORE_VIEWS` x the views (each stored sequence repeated less; the same training cost,
    more tokenising and disk), and the runs at half their epochs (one seed)."""
    out = []
    try:
        more = run_costs(sweep, more_views_meta(meta))
        views = {c.budget.views for c in more}
        text = "/".join(str(v) for v in sorted(views))
        out.append(Design(f"more views ({MORE_VIEWS}x: {text} stored views per image)", more, 1))
    except (ConfigError, ScheduleError, ValueError) as e:
        skipped.append(f"more views: {e}")
    try:
        out.append(Design("fewer epochs (half, 1 seed)", _length(costs, 0.5), 1))
    except ScheduleError as e:
        skipped.append(f"fewer epochs: {e}")
    return out


def alternatives(path: Path, sweep, meta, costs: list[RunCost]) -> tuple[list[Design], list[str]]:
    """The planned grid and the variations compared with it (seed rows double the planned
    seeds); and the variations that could not be laid out, with the reason."""
    designs = [Design("as planned", costs, 1)]
    skipped: list[str] = []
    parents = _parents(costs)
    half = _every_other(costs)
    n_sizes = len({c.params for c in costs})
    per_size = max(
        sum(c.params == p for c in parents) for p in {c.params for c in parents}
    )  # planned seeds
    twice = f"{2 * per_size} seeds each"
    designs.append(
        Design(f"every other size ({len({c.params for c in half})} of {n_sizes}), {twice}", half, 2)
    )
    designs.append(Design(f"all sizes, {twice}", costs, 2))
    for name, factor, seeds in (
        (f"runs half as long, {twice}", 0.5, 2),
        ("runs twice as long", 2.0, 1),
    ):
        try:
            designs.append(Design(name, _length(costs, factor), seeds))
        except ScheduleError as e:  # a warm-up and cool-down in steps that no longer fit
            skipped.append(f"{name}: {e}")
    designs.append(Design("twice the evaluation points", _evals(costs, 2.0), 1))
    more = _midpoint_sweep_costs(path, sweep, meta)
    if more is not None:
        designs.append(
            Design(
                f"more sizes ({len({c.params for c in more})}: a depth between each two)", more, 1
            )
        )
    if len(parents) < len(costs):
        designs.append(Design("no decay branches (parents only)", parents, 1))
        designs.append(Design("each branch a run from scratch (own seed)", from_scratch(costs), 1))
        # last: the simulation seeds of the designs above stay what they were
        return designs + _repetition_designs(sweep, meta, costs, skipped), skipped
    budget = sum(c.gpu_hours for c in costs)
    for name, at in BRANCH_SETS:
        points = ", ".join(format(f, "g") for f in at)
        try:
            designs.append(
                Design(f"WSD + {name} per size (at {points})", with_branches(costs, at), 1)
            )
            designs.append(
                Design(
                    f"WSD + {name}, runs shortened to the planned budget",
                    _same_budget(costs, at, budget),
                    1,
                )
            )
        except ScheduleError as e:
            skipped.append(f"{name}: {e}")
    return designs + _repetition_designs(sweep, meta, costs, skipped), skipped
