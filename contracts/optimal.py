"""``<runs>/optimal-C/optimal.json``: the compute-optimal answer for a budget of C FLOPs.

Written by ``fit --optimal-for C`` (`scaling.study.laws.fit_joint.run_optimal`) from the joint
law L(N, D): N* and D* with their bootstrap intervals, the images and epochs of the dataset
D* means, the depth whose model is closest to N*, the loss the law predicts there.

    {"schema_version": 1, "tool": "...", "created_utc": "...", "source": "runs/demo_wsd",
     "joint_fit": {"folder": "runs/demo_wsd/fit-nd", "how": "reused the joint fit of ..."},
     "optimal_for": {"C": 1e13, "metric": "ce_avg", "N": 4.1e6, "N_ci": [3.2e6, 5.5e6],
                     "D": 2.4e8, "D_ci": null, "D_unit": "tokens", "images": 8.9e5,
                     "dataset_images": 1200, "epochs": 741.0, "predicted_loss": 4.61,
                     "extrapolation": 3.2, "nearest_depth": {"depth": 4, "width": 256,
                     "heads": 4, "params": 4210688, "rule": "..."}}}

Files without ``schema_version`` are version 0 and read the same. Policy: a missing file, or
one that is not this shape, is a `ContractError` naming the file and the field
(``optimal_for.N_ci[1]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts import jsondoc
from contracts.atomic import atomic_write_json

SCHEMA_VERSION = 1
FILE = "optimal.json"
WHAT = "the compute-optimal answer written by scaling.fit --optimal-for"


@dataclasses.dataclass(frozen=True)
class NearestDepth:
    """The depth whose VAR (the runs' width rule) has the parameter count closest to N*."""

    depth: int
    width: int
    heads: int
    params: int
    rule: str  # where the width rule came from

    def as_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class OptimalAnswer:
    """N*, D* and what they mean for a training budget of `C` FLOPs (exact count)."""

    C: float
    metric: str  # the loss whose joint law answers
    N: float  # N*: parameters
    N_ci: tuple[float, float] | None
    D: float  # D*: in D_unit
    D_ci: tuple[float, float] | None
    D_unit: str  # "tokens" or "images"
    images: float  # D* in training images
    dataset_images: int  # images of the training set (not stored views)
    epochs: float  # images / dataset_images
    nearest_depth: NearestDepth
    predicted_loss: float  # the law at (N*, D*)
    extrapolation: float  # C over the largest run's compute

    def as_dict(self) -> dict[str, Any]:
        """The JSON object (``optimal_for``)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("N_ci", "D_ci"):
            out[key] = None if out[key] is None else list(out[key])
        out["nearest_depth"] = self.nearest_depth.as_dict()
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], path: str | Path = FILE) -> OptimalAnswer:
        """The answer from its JSON object (``optimal_for``); located `ContractError`s."""
        where = "optimal_for"

        def get(key: str) -> Any:
            return jsondoc.field(path, doc, key, where)

        def num(key: str) -> float:
            return jsondoc.number(path, get(key), f"{where}.{key}")

        depth = jsondoc.mapping(path, get("nearest_depth"), f"{where}.nearest_depth")
        at = f"{where}.nearest_depth"
        return cls(
            C=num("C"),
            metric=jsondoc.text(path, get("metric"), f"{where}.metric"),
            N=num("N"),
            N_ci=jsondoc.pair(path, get("N_ci"), f"{where}.N_ci"),
            D=num("D"),
            D_ci=jsondoc.pair(path, get("D_ci"), f"{where}.D_ci"),
            D_unit=jsondoc.text(path, get("D_unit"), f"{where}.D_unit"),
            images=num("images"),
            dataset_images=jsondoc.count(path, get("dataset_images"), f"{where}.dataset_images"),
            epochs=num("epochs"),
            nearest_depth=NearestDepth(
                **{
                    k: jsondoc.count(path, jsondoc.field(path, depth, k, at), f"{at}.{k}")
                    for k in ("depth", "width", "heads", "params")
                },
                rule=jsondoc.text(path, jsondoc.field(path, depth, "rule", at), f"{at}.rule"),
            ),
            predicted_loss=num("predicted_loss"),
            extrapolation=num("extrapolation"),
        )


@dataclasses.dataclass(frozen=True)
class OptimalFile:
    """One optimal.json."""

    answer: OptimalAnswer  # "optimal_for"
    source: str  # the runs (or table) the joint law was fitted on
    joint_folder: str  # the folder of the joint fit that answered
    joint_how: str  # reused or fitted, and why
    created_utc: str
    tool: str = "python -m scaling.fit --optimal-for"
    schema_version: int = SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (schema_version first)."""
        return {
            "schema_version": self.schema_version,
            "tool": self.tool,
            "created_utc": self.created_utc,
            "source": self.source,
            "joint_fit": {"folder": self.joint_folder, "how": self.joint_how},
            "optimal_for": self.answer.as_dict(),
        }


def read_optimal(path: str | Path) -> OptimalFile:
    """The optimal.json at `path`."""
    doc = jsondoc.read_document(path, WHAT)
    version = jsondoc.version(path, doc, SCHEMA_VERSION)
    joint = jsondoc.mapping(path, jsondoc.field(path, doc, "joint_fit"), "joint_fit")

    def text(within: Mapping[str, Any], key: str, prefix: str = "") -> str:
        name = f"{prefix}.{key}" if prefix else key
        return jsondoc.text(path, jsondoc.field(path, within, key, prefix), name)

    return OptimalFile(
        answer=OptimalAnswer.from_dict(
            jsondoc.mapping(path, jsondoc.field(path, doc, "optimal_for"), "optimal_for"), path
        ),
        source=text(doc, "source"),
        joint_folder=text(joint, "folder", "joint_fit"),
        joint_how=text(joint, "how", "joint_fit"),
        created_utc=text(doc, "created_utc"),
        tool=text(doc, "tool"),
        schema_version=version,
    )


def write_optimal(path: str | Path, optimal: OptimalFile) -> None:
    """Replace `path` with `optimal` atomically (this contract's schema version)."""
    doc = dataclasses.replace(optimal, schema_version=SCHEMA_VERSION).as_dict()
    atomic_write_json(path, doc)
