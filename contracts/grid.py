"""``<output>/grid.yaml``: a sweep's axes and every run's axis values, written by the launcher
(`scaling.study.run.outputs.write_grid`) and read back by it (runs of earlier launches are
kept) and by the tidy table (`analysis.results`: one ``grid.<axis>`` column per axis).

    schema_version: 1
    sweep: depth_grid             # the sweep's name
    axes: [model.depth]           # the grid's axes (and command-line sets that changed runs)
    labels: {model.depth: d}      # each axis's run-id label
    runs:                         # run id -> {axis: value}
      d2: {model.depth: 2}

Files without ``schema_version`` (written before this contract) are version 0 and read the
same. Policy: a missing file is an empty grid; a file that is not YAML of this shape is a
`ContractError` naming the file (and the line of a YAML syntax error), for every reader.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from contracts.atomic import atomic_write_text
from contracts.errors import ContractError

SCHEMA_VERSION = 1
FILE = "grid.yaml"


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class GridFile:
    """One grid.yaml."""

    axes: tuple[str, ...] = ()
    labels: Mapping[str, str] = dataclasses.field(default_factory=_empty)  # axis -> label
    runs: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=_empty)
    sweep: str | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", tuple(self.axes))
        object.__setattr__(self, "labels", types.MappingProxyType(dict(self.labels)))
        runs = {k: types.MappingProxyType(dict(v)) for k, v in self.runs.items()}
        object.__setattr__(self, "runs", types.MappingProxyType(runs))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and deepcopy through the constructor (a mappingproxy does not pickle)
        return (
            GridFile,
            (
                self.axes,
                dict(self.labels),
                {k: dict(v) for k, v in self.runs.items()},
                self.sweep,
                self.schema_version,
            ),
        )

    def as_dict(self) -> dict[str, Any]:
        """The YAML document (schema_version first; runs sorted by id)."""
        return {
            "schema_version": self.schema_version,
            **({"sweep": self.sweep} if self.sweep is not None else {}),
            "axes": list(self.axes),
            "labels": dict(self.labels),
            "runs": {k: dict(self.runs[k]) for k in sorted(self.runs)},
        }


def read_grid(path: str | Path) -> GridFile:
    """The grid in `path`; an empty `GridFile` when the file does not exist."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return GridFile()
    except OSError as e:
        raise ContractError(path, f"cannot read it ({e.strerror or e})") from None
    fix = "; re-run the launcher to rewrite it"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ContractError(
            path,
            f"unreadable YAML ({getattr(e, 'problem', None) or e}){fix}",
            line=mark.line + 1 if mark is not None else None,
        ) from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("runs"), dict)
        or not isinstance(data.get("axes"), list)
    ):
        raise ContractError(
            path,
            "expected a mapping with 'axes' (a list) and 'runs' (run id -> axis values)" + fix,
        )
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or not 0 <= version <= SCHEMA_VERSION:
        raise ContractError(
            path, f"schema_version: this code reads 0 to {SCHEMA_VERSION}, got {version!r}"
        )
    labels = data.get("labels") or {}
    bad = [str(k) for k, v in data["runs"].items() if v is not None and not isinstance(v, dict)]
    if not isinstance(labels, dict) or bad:
        where = "labels" if not isinstance(labels, dict) else f"runs: {', '.join(bad[:3])}"
        raise ContractError(path, f"{where}: expected a mapping{fix}")
    return GridFile(
        axes=tuple(str(a) for a in data["axes"]),
        labels={str(k): str(v) for k, v in labels.items()},
        runs={str(k): dict(v or {}) for k, v in data["runs"].items()},
        sweep=None if data.get("sweep") is None else str(data["sweep"]),
        schema_version=version,
    )


def write_grid(path: str | Path, grid: GridFile) -> None:
    """Replace `path` with `grid` atomically (this contract's schema version)."""
    doc = dataclasses.replace(grid, schema_version=SCHEMA_VERSION).as_dict()
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))
