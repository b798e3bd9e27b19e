"""``compare_<A>_vs_<B>/compare.json``: two studies' exponents compared law by law.

Written by ``fit A B`` (`scaling.study.laws.compare`): per (metric, x) both exponents with
their intervals, the difference alpha_B - alpha_A with the interval of paired draws of two
independent bootstraps, and the share of draws with alpha_B < alpha_A; the two studies
(their fits.json and bootstrap seeds) and warnings when they were fitted differently.

    {"schema_version": 1, "tool": "...", "created_utc": "...",
     "studies": {"A": {"name": "small_v256", "source": "runs/small_v256",
                       "fits": ".../small_v256/fits.json", "bootstrap_seed": 0}, "B": {...}},
     "conventions": {"difference": "alpha_B - alpha_A", ...}, "warnings": [],
     "differences": [{"metric": "ce_avg", "against": "N", "alpha_a": -0.2, "alpha_b": -0.26,
                      "alpha_a_ci": [..], "alpha_b_ci": [..], "delta": -0.06,
                      "delta_ci": [-0.08, -0.04], "share_below_zero": 1.0, "draws": 1000,
                      "level": 0.95, "differs": true}, ...]}

Files without ``schema_version`` are version 0 and read the same. Policy: a missing file, or
one that is not this shape, is a `ContractError` naming the file and the field
(``differences[1].delta``).
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
FILE = "compare.json"
WHAT = "a comparison of two studies written by scaling.fit A B"


@dataclasses.dataclass(frozen=True)
class ComparedStudy:
    """One of the two studies."""

    name: str
    source: str  # its runs directory or table
    fits: str  # its fits.json
    bootstrap_seed: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Difference:
    """alpha_B - alpha_A for one (metric, x), with its interval (None: too few draws)."""

    metric: str
    against: str  # "N" or "Cmin"
    alpha_a: float
    alpha_b: float
    alpha_a_ci: tuple[float, float] | None
    alpha_b_ci: tuple[float, float] | None
    delta: float  # alpha_b - alpha_a
    delta_ci: tuple[float, float] | None
    share_below_zero: float | None  # fraction of paired draws with alpha_b < alpha_a
    draws: int
    level: float
    differs: bool | None  # the interval of the difference excludes 0 (None: no interval)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object (intervals as [lo, hi])."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("alpha_a_ci", "alpha_b_ci", "delta_ci"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    @classmethod
    def from_dict(cls, rec: Mapping[str, Any], path: str | Path, where: str) -> Difference:
        """A difference from its JSON object (`where` names it in errors)."""

        def get(key: str) -> Any:
            return jsondoc.field(path, rec, key, where)

        def num(key: str, optional: bool = False) -> Any:
            return jsondoc.number(path, get(key), f"{where}.{key}", optional=optional)

        differs = get("differs")
        if differs is not None and not isinstance(differs, bool):
            raise ContractError(
                path, f"{where}.differs: expected true, false or null, got {differs!r}"
            )
        return cls(
            metric=jsondoc.text(path, get("metric"), f"{where}.metric"),
            against=jsondoc.text(path, get("against"), f"{where}.against"),
            alpha_a=num("alpha_a"),
            alpha_b=num("alpha_b"),
            alpha_a_ci=jsondoc.pair(path, get("alpha_a_ci"), f"{where}.alpha_a_ci"),
            alpha_b_ci=jsondoc.pair(path, get("alpha_b_ci"), f"{where}.alpha_b_ci"),
            delta=num("delta"),
            delta_ci=jsondoc.pair(path, get("delta_ci"), f"{where}.delta_ci"),
            share_below_zero=num("share_below_zero", optional=True),
            draws=jsondoc.count(path, get("draws"), f"{where}.draws"),
            level=num("level"),
            differs=differs,
        )


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class CompareFile:
    """One compare.json."""

    a: ComparedStudy
    b: ComparedStudy
    differences: tuple[Difference, ...]
    created_utc: str
    warnings: tuple[str, ...] = ()
    conventions: Mapping[str, str] = dataclasses.field(default_factory=_empty)  # words
    tool: str = "python -m scaling.fit A B"
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "differences", tuple(self.differences))
        object.__setattr__(self, "warnings", tuple(self.warnings))
        object.__setattr__(self, "conventions", types.MappingProxyType(dict(self.conventions)))

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (schema_version first)."""
        return {
            "schema_version": self.schema_version,
            "tool": self.tool,
            "created_utc": self.created_utc,
            "studies": {"A": self.a.as_dict(), "B": self.b.as_dict()},
            "conventions": dict(self.conventions),
            "warnings": list(self.warnings),
            "differences": [d.as_dict() for d in self.differences],
        }


def _study(path: str | Path, studies: Mapping[str, Any], key: str) -> ComparedStudy:
    where = f"studies.{key}"
    rec = jsondoc.mapping(path, jsondoc.field(path, studies, key, "studies"), where)

    def get(name: str) -> Any:
        return jsondoc.field(path, rec, name, where)

    return ComparedStudy(
        name=jsondoc.text(path, get("name"), f"{where}.name"),
        source=jsondoc.text(path, get("source"), f"{where}.source"),
        fits=jsondoc.text(path, get("fits"), f"{where}.fits"),
        bootstrap_seed=jsondoc.count(path, get("bootstrap_seed"), f"{where}.bootstrap_seed"),
    )


def read_compare(path: str | Path) -> CompareFile:
    """The compare.json at `path`."""
    doc = jsondoc.read_document(path, WHAT)
    version = jsondoc.version(path, doc, SCHEMA_VERSION)
    studies = jsondoc.mapping(path, jsondoc.field(path, doc, "studies"), "studies")
    diffs = jsondoc.records(path, jsondoc.field(path, doc, "differences"), "differences")
    warnings = doc.get("warnings") or []
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        raise ContractError(path, "warnings: expected a list of strings")
    conventions = jsondoc.mapping(path, doc.get("conventions") or {}, "conventions")
    return CompareFile(
        a=_study(path, studies, "A"),
        b=_study(path, studies, "B"),
        differences=tuple(
            Difference.from_dict(d, path, f"differences[{i}]") for i, d in enumerate(diffs)
        ),
        created_utc=jsondoc.text(path, jsondoc.field(path, doc, "created_utc"), "created_utc"),
        warnings=tuple(warnings),
        conventions={str(k): str(v) for k, v in conventions.items()},
        tool=jsondoc.text(path, doc.get("tool", CompareFile.tool), "tool"),
        schema_version=version,
    )


def write_compare(path: str | Path, compare: CompareFile) -> None:
    """Replace `path` with `compare` atomically (this contract's schema version)."""
    atomic_write_json(path, dataclasses.replace(compare, schema_version=SCHEMA_VERSION).as_dict())
