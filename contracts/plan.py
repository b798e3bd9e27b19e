"""``<output>/plan/plan.json``: every number of a study plan (docs/planning.md).

Written by ``var-scaling plan SWEEP`` (`scaling.study.laws.plan`). A `PlanFile` types what
a reader of the plan uses: the cost of each planned run and the totals (`PlanCost`), and the
precision records of the laws (one per metric and x: the simulated exponent intervals); the
other sections (prior, noise, curves, settings, joint, alternatives, ...) stay in `details`
as written.

    {"schema_version": 1, "tool": "python -m scaling.plan", "sweep": "sweeps/demo.yaml",
     "cost": {"runs": [{"run": "d2", "parent": null, "params": 1234, "steps": 100, ...}],
              "total_train_flops": 1e15, "total_eval_flops": 1e13, "total_gpu_hours": 0.4,
              "assumed_tflops_per_gpu": 300.0, "token_store_bytes": 1e9,
              "store_meta_real": true},
     "precision": [{"metric": "ce_last", "against": "N", ...}], ...}

Files without ``schema_version`` (written before this contract) are version 0 and read the
same. Policy: a missing file, or one that is not this shape, is a `ContractError` naming the
file and the field (``cost.runs[3].params``).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts import jsondoc
from contracts.atomic import atomic_write_json
from contracts.errors import ContractError

SCHEMA_VERSION = 1
FILE = "plan.json"
WHAT = "a study plan written by scaling.plan"


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of the plan and its cost."""

    run: str
    parent: str | None  # the run a decay branch leaves (None: not a branch)
    params: int
    steps: int
    start_step: int  # a branch starts at its parent's step
    tokens: float  # tokens trained (own steps)
    D_tokens: float  # D of the joint law: tokens seen since step 0 (a branch counts its parent's)
    train_flops: float
    eval_flops: float
    full_evals: int
    gpu_hours: float
    eval_compute: tuple[float, ...]  # training FLOPs at each full evaluation
    cpu_hours: float | None = None  # core-hours at the assumed CPU rate (None: an older file)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object (without `cpu_hours` when the file had none)."""
        out = {**dataclasses.asdict(self), "eval_compute": list(self.eval_compute)}
        if self.cpu_hours is None:
            del out["cpu_hours"]
        return out

    @classmethod
    def from_dict(cls, rec: Mapping[str, Any], path: str | Path, where: str) -> PlannedRun:
        """A run from its JSON object (`where` names it in errors)."""

        def get(key: str) -> Any:
            return jsondoc.field(path, rec, key, where)

        def num(key: str) -> float:
            return jsondoc.number(path, get(key), f"{where}.{key}")

        def whole(key: str) -> int:
            return jsondoc.count(path, get(key), f"{where}.{key}")

        compute = get("eval_compute")
        if not isinstance(compute, list):
            raise ContractError(path, f"{where}.eval_compute: expected a list")
        return cls(
            run=jsondoc.text(path, get("run"), f"{where}.run"),
            parent=jsondoc.text(path, get("parent"), f"{where}.parent", optional=True),
            params=whole("params"),
            steps=whole("steps"),
            start_step=whole("start_step"),
            tokens=num("tokens"),
            D_tokens=num("D_tokens"),
            train_flops=num("train_flops"),
            eval_flops=num("eval_flops"),
            full_evals=whole("full_evals"),
            gpu_hours=num("gpu_hours"),
            eval_compute=tuple(
                jsondoc.number(path, c, f"{where}.eval_compute[{i}]") for i, c in enumerate(compute)
            ),
            cpu_hours=jsondoc.number(
                path, rec.get("cpu_hours"), f"{where}.cpu_hours", optional=True
            ),
        )


@dataclasses.dataclass(frozen=True)
class PlanCost:
    """The planned runs' cost and its totals."""

    runs: tuple[PlannedRun, ...]
    total_train_flops: float
    total_eval_flops: float
    total_gpu_hours: float
    assumed_tflops_per_gpu: float
    token_store_bytes: float
    store_meta_real: bool  # the store exists (else its size is what prepare will make)
    # a study without GPUs is costed in CPU core-hours: the totals, the assumed rate and
    # which unit the plan's tables show (None / "GPU-h": an older file)
    total_cpu_hours: float | None = None
    assumed_gflops_per_cpu: float | None = None
    hours_unit: str = "GPU-h"

    def as_dict(self) -> dict[str, Any]:
        """The JSON object (without the CPU fields when the file had none)."""
        out = {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            "runs": [r.as_dict() for r in self.runs],
        }
        if self.total_cpu_hours is None:
            for key in ("total_cpu_hours", "assumed_gflops_per_cpu", "hours_unit"):
                del out[key]
        return out

    @classmethod
    def from_dict(cls, rec: Mapping[str, Any], path: str | Path) -> PlanCost:
        """The cost from its JSON object (``cost``)."""

        def get(key: str) -> Any:
            return jsondoc.field(path, rec, key, "cost")

        def num(key: str) -> float:
            return jsondoc.number(path, get(key), f"cost.{key}")

        runs = jsondoc.records(path, get("runs"), "cost.runs")
        real = get("store_meta_real")
        if not isinstance(real, bool):
            raise ContractError(path, "cost.store_meta_real: expected true or false")
        return cls(
            runs=tuple(
                PlannedRun.from_dict(r, path, f"cost.runs[{i}]") for i, r in enumerate(runs)
            ),
            total_train_flops=num("total_train_flops"),
            total_eval_flops=num("total_eval_flops"),
            total_gpu_hours=num("total_gpu_hours"),
            assumed_tflops_per_gpu=num("assumed_tflops_per_gpu"),
            token_store_bytes=num("token_store_bytes"),
            store_meta_real=real,
            total_cpu_hours=jsondoc.number(
                path, rec.get("total_cpu_hours"), "cost.total_cpu_hours", optional=True
            ),
            assumed_gflops_per_cpu=jsondoc.number(
                path,
                rec.get("assumed_gflops_per_cpu"),
                "cost.assumed_gflops_per_cpu",
                optional=True,
            ),
            hours_unit=jsondoc.text(path, rec.get("hours_unit", "GPU-h"), "cost.hours_unit"),
        )


@dataclasses.dataclass(frozen=True)
class PlanFile:
    """One plan.json."""

    sweep: str  # the sweep file planned
    cost: PlanCost
    precision: tuple[Mapping[str, Any], ...]  # per law: the simulated exponent's precision
    details: Mapping[str, Any] = dataclasses.field(default_factory=_empty)  # the other fields
    tool: str = "python -m scaling.plan"
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        frozen = tuple(types.MappingProxyType(dict(p)) for p in self.precision)
        object.__setattr__(self, "precision", frozen)
        object.__setattr__(self, "details", types.MappingProxyType(dict(self.details)))

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (schema_version first)."""
        return {
            "schema_version": self.schema_version,
            "tool": self.tool,
            "sweep": self.sweep,
            "cost": self.cost.as_dict(),
            "precision": [dict(p) for p in self.precision],
            **self.details,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], path: str | Path = FILE) -> PlanFile:
        """A plan from its JSON document; located `ContractError`s."""
        version = jsondoc.version(path, doc, SCHEMA_VERSION)
        precision = jsondoc.records(path, jsondoc.field(path, doc, "precision"), "precision")
        for i, law in enumerate(precision):
            for key in ("metric", "against"):
                where = f"precision[{i}]"
                jsondoc.text(path, jsondoc.field(path, law, key, where), f"{where}.{key}")
        known = ("schema_version", "tool", "sweep", "cost", "precision")
        return cls(
            sweep=jsondoc.text(path, jsondoc.field(path, doc, "sweep"), "sweep"),
            cost=PlanCost.from_dict(
                jsondoc.mapping(path, jsondoc.field(path, doc, "cost"), "cost"), path
            ),
            precision=tuple(precision),
            details={k: v for k, v in doc.items() if k not in known},
            tool=jsondoc.text(path, doc.get("tool", cls.tool), "tool"),
            schema_version=version,
        )


def read_plan(path: str | Path) -> PlanFile:
    """The plan.json at `path`."""
    return PlanFile.from_dict(jsondoc.read_document(path, WHAT), path)


def write_plan(path: str | Path, plan: PlanFile) -> None:
    """Replace `path` with `plan` atomically (this contract's schema version)."""
    atomic_write_json(path, dataclasses.replace(plan, schema_version=SCHEMA_VERSION).as_dict())
