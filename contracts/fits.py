"""``fits.json``: the laws `python -m scaling.fit` wrote (power laws vs N and Cmin under
``fits``, or the joint law L(N, D) under ``joint``), read back by the planner
(`scaling.plan --prior`). The document is described field by field in docs/fitting.md.

A `FitsFile` types what crosses to another stage: each law's metric, x and coefficients
(`PowerLawFit`, `JointLawFit`); each law's other fields (intervals, r, hold-out, frontier
points, ...) stay in its `record`, and the other top-level fields (created_utc, conventions,
warnings, ...) in `details`, as written. Files without ``schema_version`` are version 0 and
read the same. Policy: a file that is not a JSON object with ``fits`` or ``joint``, or a law
without its metric or a numeric coefficient, is a `ContractError` naming the file (and the
law: ``fits[2].alpha``).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.atomic import atomic_write_json
from contracts.errors import ContractError

SCHEMA_VERSION = 1
FILE = "fits.json"
WHAT = "not a fits.json written by scaling.fit"


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """One law ``y - E = (beta * x)^alpha`` of a metric vs N or Cmin (x in `analysis.paper`'s
    units: billions of parameters, PFLOPs)."""

    metric: str
    against: str  # "N" or "Cmin"
    alpha: float
    beta: float
    E: float
    record: Mapping[str, Any] = dataclasses.field(default_factory=_empty)  # all its fields

    def __post_init__(self) -> None:
        object.__setattr__(self, "record", _frozen(self.record))

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any], path: str | Path = FILE, where: str = "fits[0]"
    ) -> PowerLawFit:
        """A law from its fits.json record (`where` names it in errors)."""
        if not isinstance(record, Mapping):
            raise ContractError(path, f"{WHAT}: {where}: expected a JSON object")
        num = {k: _number(path, where, record, k) for k in ("alpha", "beta", "E")}
        return cls(
            metric=_text(path, where, record, "metric"),
            against=_text(path, where, record, "against"),
            **num,
            record=record,
        )

    def as_dict(self) -> dict[str, Any]:
        """The law's record in fits.json (its coefficients over whatever `record` holds)."""
        typed = {k: getattr(self, k) for k in ("metric", "against", "E", "alpha", "beta")}
        return {**self.record, **typed}  # the record's order, the typed values


@dataclasses.dataclass(frozen=True)
class ComputeModelFit:
    """C = k N^gamma D: the training FLOPs of the fitted runs as a function of N and D."""

    k: float
    gamma: float
    max_rel_error_on_runs: float  # of this model on the fitted runs' exact counts

    @classmethod
    def from_record(cls, record: Any, path: str | Path, where: str) -> ComputeModelFit:
        """From a joint law's ``compute_model`` object."""
        if not isinstance(record, Mapping):
            raise ContractError(path, f"{WHAT}: {where}: expected a JSON object")
        return cls(
            *(_number(path, where, record, k) for k in ("k", "gamma", "max_rel_error_on_runs"))
        )


@dataclasses.dataclass(frozen=True)
class JointLawFit:
    """One joint law L(N, D) = E + A / N^alpha + B / D^beta of a loss (N parameters, D in
    `D_unit`: "training tokens" or "training images")."""

    metric: str
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    D_unit: str = "training tokens"
    # the bootstrap behind its intervals (None: a record without "ci")
    level: float | None = None
    bootstrap_samples: int | None = None
    compute_model: ComputeModelFit | None = None  # None: a record without one
    record: Mapping[str, Any] = dataclasses.field(default_factory=_empty)  # all its fields

    def __post_init__(self) -> None:
        object.__setattr__(self, "record", _frozen(self.record))

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any], path: str | Path = FILE, where: str = "joint[0]"
    ) -> JointLawFit:
        """A joint law from its fits.json record (`where` names it in errors)."""
        if not isinstance(record, Mapping):
            raise ContractError(path, f"{WHAT}: {where}: expected a JSON object")
        num = {k: _number(path, where, record, k) for k in ("E", "A", "alpha", "B", "beta")}
        ci = record.get("ci")
        if ci is not None and not isinstance(ci, Mapping):
            raise ContractError(path, f"{WHAT}: {where}.ci: expected a JSON object")
        samples = None if ci is None else ci.get("bootstrap_samples")
        if samples is not None and (not isinstance(samples, int) or isinstance(samples, bool)):
            raise ContractError(
                path, f"{WHAT}: {where}.ci.bootstrap_samples: expected a count, got {samples!r}"
            )
        cm = record.get("compute_model")
        return cls(
            metric=_text(path, where, record, "metric"),
            **num,
            D_unit=str(record.get("D_unit", "training tokens")),
            level=None if ci is None else _number(path, f"{where}.ci", ci, "level"),
            bootstrap_samples=samples,
            compute_model=(
                None
                if cm is None
                else ComputeModelFit.from_record(cm, path, f"{where}.compute_model")
            ),
            record=record,
        )

    @property
    def d_unit(self) -> str:
        """ "tokens" or "images": the last word of `D_unit`."""
        return self.D_unit.split()[-1]

    def as_dict(self) -> dict[str, Any]:
        """The law's record in fits.json (its coefficients over whatever `record` holds)."""
        keys = ("metric", "E", "A", "alpha", "B", "beta", "D_unit")
        typed: dict[str, Any] = {k: getattr(self, k) for k in keys}
        if self.level is not None or self.bootstrap_samples is not None:
            ci = {"level": self.level, "bootstrap_samples": self.bootstrap_samples}
            typed["ci"] = {**self.record.get("ci", {}), **ci}
        if self.compute_model is not None:
            cm = dataclasses.asdict(self.compute_model)
            typed["compute_model"] = {**self.record.get("compute_model", {}), **cm}
        return {**self.record, **typed}  # the record's order, the typed values


@dataclasses.dataclass(frozen=True)
class FitsFile:
    """One fits.json: power laws (`fits`) or joint laws (`joint`, None for a power-law fit)."""

    fits: tuple[PowerLawFit, ...] = ()
    joint: tuple[JointLawFit, ...] | None = None
    tool: str | None = None  # the command that wrote it
    source: str | None = None  # what was fitted (runs directory or table)
    settings: Mapping[str, Any] = dataclasses.field(default_factory=_empty)  # as resolved
    details: Mapping[str, Any] = dataclasses.field(default_factory=_empty)  # the other fields
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "fits", tuple(self.fits))
        if self.joint is not None:
            object.__setattr__(self, "joint", tuple(self.joint))
        object.__setattr__(self, "settings", _frozen(self.settings))
        object.__setattr__(self, "details", _frozen(self.details))

    def laws(self) -> dict[tuple[str, str], PowerLawFit]:
        """(metric, against) -> its power law (the last one of a metric with a law per group)."""
        return {(f.metric, f.against): f for f in self.fits}

    def joint_laws(self) -> dict[str, JointLawFit]:
        """metric -> its joint law."""
        return {j.metric: j for j in self.joint or ()}

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (schema_version, tool, source and settings first)."""
        head = {"schema_version": self.schema_version}
        for name in ("tool", "source"):
            if getattr(self, name) is not None:
                head[name] = getattr(self, name)
        body: dict[str, Any] = {}
        if self.joint is None:
            body["fits"] = [f.as_dict() for f in self.fits]
        else:
            body["joint"] = [j.as_dict() for j in self.joint]
        settings = {"settings": dict(self.settings)} if self.settings else {}
        return {**head, **settings, **self.details, **body}


def _number(path: str | Path, where: str, record: Mapping[str, Any], key: str) -> float:
    value = record.get(key)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):  # numpy floats pass
        raise ContractError(path, f"{WHAT}: {where}.{key}: expected a number, got {value!r}")
    return float(value)


def _text(path: str | Path, where: str, record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise ContractError(path, f"{WHAT}: {where}.{key}: expected a string, got {value!r}")
    return value


def from_dict(doc: Mapping[str, Any], path: str | Path = FILE) -> FitsFile:
    """A `FitsFile` from its JSON document; what the contract needs missing or mistyped is a
    `ContractError` naming `path` and the field."""
    path = Path(path)
    if not isinstance(doc, Mapping) or not ("fits" in doc or "joint" in doc):
        raise ContractError(path, f"{WHAT} (neither 'fits' nor 'joint')")
    version = doc.get("schema_version", 0)
    if not isinstance(version, int) or not 0 <= version <= SCHEMA_VERSION:
        raise ContractError(
            path, f"schema_version: this code reads 0 to {SCHEMA_VERSION}, got {version!r}"
        )
    for key in ("fits", "joint"):
        if key in doc and doc[key] is not None and not isinstance(doc[key], list):
            raise ContractError(path, f"{WHAT}: {key}: expected a list of laws")
    fits = [
        PowerLawFit.from_record(r, path, f"fits[{i}]") for i, r in enumerate(doc.get("fits") or [])
    ]
    joint = (
        [JointLawFit.from_record(r, path, f"joint[{i}]") for i, r in enumerate(doc["joint"] or [])]
        if "joint" in doc
        else None
    )
    settings = doc.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ContractError(path, f"{WHAT}: settings: expected a JSON object")
    known = ("schema_version", "tool", "source", "settings", "fits", "joint")
    return FitsFile(
        fits=tuple(fits),
        joint=None if joint is None else tuple(joint),
        tool=None if doc.get("tool") is None else str(doc["tool"]),
        source=None if doc.get("source") is None else str(doc["source"]),
        settings=settings,
        details={k: v for k, v in doc.items() if k not in known},
        schema_version=version,
    )


def read_fits(path: str | Path) -> FitsFile:
    """The fits.json at `path` (a missing file is a `ContractError` too: a fit was asked for)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ContractError(path, "no such file (a fits.json from scaling.fit)") from None
    except OSError as e:
        raise ContractError(path, f"cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise ContractError(path, f"{WHAT} ({e})") from None
    return from_dict(doc, path)


def write_fits(path: str | Path, fits: FitsFile) -> None:
    """Replace `path` with `fits` atomically (this contract's schema version)."""
    atomic_write_json(path, dataclasses.replace(fits, schema_version=SCHEMA_VERSION).as_dict())
