"""``<runs>/fit-nd/draws.json``: the bootstrap's refitted joint laws, beside fits.json.

Written by the joint-law fit (`scaling.study.laws.fit_joint`, ``fit --set law=nd``); read back
by ``fit --optimal-for C``, which rebuilds the saved fit with these draws instead of fitting
again (fits.json's intervals are percentiles over them).

    {"schema_version": 1, "what": "...",
     "draws": {"ce_avg": [{"E": 4.1, "A": 310.0, "alpha": 0.31, "B": 2.1e3, "beta": 0.28}, ...]}}

Files without ``schema_version`` are version 0 and read the same. Policy: a missing file, or
one that is not this shape (a law without a numeric coefficient: ``draws.ce_avg[3].beta``), is
a `ContractError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts import jsondoc
from contracts.atomic import atomic_write_json

SCHEMA_VERSION = 1
FILE = "draws.json"
WHAT = "the joint-law bootstrap's draws written by scaling.fit --set law=nd"
COEFFICIENTS = ("E", "A", "alpha", "B", "beta")
ABOUT = (
    "the bootstrap's refitted laws, one list per metric (fits.json's intervals are "
    "percentiles over them); scaling.fit --optimal-for reuses them"
)


@dataclasses.dataclass(frozen=True)
class JointLawDraw:
    """One bootstrap refit of L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def as_dict(self) -> dict[str, float]:
        """The law's coefficients by name (`analysis.jointlaw.JointLaw`'s fields)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DrawsFile:
    """One draws.json: metric -> its bootstrap's laws, in draw order."""

    draws: Mapping[str, tuple[JointLawDraw, ...]]
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        frozen = {m: tuple(laws) for m, laws in self.draws.items()}
        object.__setattr__(self, "draws", types.MappingProxyType(frozen))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and deepcopy through the constructor (a mappingproxy does not pickle)
        return (DrawsFile, (dict(self.draws), self.schema_version))

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (schema_version first)."""
        return {
            "schema_version": self.schema_version,
            "what": ABOUT,
            "draws": {m: [law.as_dict() for law in laws] for m, laws in self.draws.items()},
        }


def read_draws(path: str | Path) -> DrawsFile:
    """The draws.json at `path`."""
    doc = jsondoc.read_document(path, WHAT)
    version = jsondoc.version(path, doc, SCHEMA_VERSION)
    draws = jsondoc.mapping(path, jsondoc.field(path, doc, "draws"), "draws")
    out = {}
    for metric, laws in draws.items():
        laws = jsondoc.records(path, laws, f"draws.{metric}")
        out[metric] = tuple(_law(path, law, f"draws.{metric}[{i}]") for i, law in enumerate(laws))
    return DrawsFile(out, version)


def _law(path: str | Path, law: Mapping[str, Any], where: str) -> JointLawDraw:
    values = {
        k: jsondoc.number(path, jsondoc.field(path, law, k, where), f"{where}.{k}")
        for k in COEFFICIENTS
    }
    return JointLawDraw(**values)


def write_draws(path: str | Path, draws: DrawsFile) -> None:
    """Replace `path` with `draws` atomically (this contract's schema version)."""
    atomic_write_json(path, dataclasses.replace(draws, schema_version=SCHEMA_VERSION).as_dict())
