"""``<run>/rank_errors/rank<k>.json``: why process `k` of a multi-process run failed.

Each rank writes its own file (ranks never share one), atomically, when its training raises
(`scaling.training.job`, through `scaling.core.rundir.RunDir.record_rank_error`); the status
CLI reports the first error of the latest attempt (the rank that failed first, not the ranks
that then timed out waiting for it). The launcher clears the folder before a new submission.

    {"schema_version": 1, "rank": 3, "host": "node2", "time": 1733580000.5,
     "attempt": "4242.0", "error": "RuntimeError: ..."}

Files without ``schema_version`` are version 0 and read the same. Policy: a file that is not
such a record is a `ContractError` naming it and the field; a file removed between listing
the folder and reading it (a new submission clearing it) is skipped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from contracts import jsondoc
from contracts.atomic import atomic_write_json
from contracts.errors import ContractError

SCHEMA_VERSION = 1
FOLDER = "rank_errors"
WHAT = "a rank's error record: rank, host, time, attempt, error"


@dataclasses.dataclass(frozen=True)
class RankError:
    """One rank's failure."""

    rank: int
    host: str
    time: float  # when it failed (seconds since the epoch)
    attempt: str  # the job attempt (SLURM job id and restart count)
    error: str  # the exception, first line first
    schema_version: int = SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        """The JSON record (schema_version first)."""
        fields = dataclasses.asdict(self)
        return {"schema_version": fields.pop("schema_version"), **fields}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], path: str | Path) -> RankError:
        """A record from its JSON object; a missing or mistyped field is a `ContractError`."""

        def get(key: str) -> Any:
            return jsondoc.field(path, doc, key)

        return cls(
            rank=jsondoc.count(path, get("rank"), "rank"),
            host=jsondoc.text(path, get("host"), "host"),
            time=jsondoc.number(path, get("time"), "time"),
            attempt=jsondoc.text(path, get("attempt"), "attempt"),
            error=jsondoc.text(path, get("error"), "error"),
            schema_version=jsondoc.version(path, doc, SCHEMA_VERSION),
        )


def rank_error_path(folder: str | Path, rank: int) -> Path:
    """The file of rank `rank` in a run's rank_errors folder."""
    return Path(folder) / f"rank{rank}.json"


def write_rank_error(folder: str | Path, record: RankError) -> Path:
    """Write `record` into `folder` (created) atomically; returns the file."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = rank_error_path(folder, record.rank)
    atomic_write_json(path, dataclasses.replace(record, schema_version=SCHEMA_VERSION).as_dict())
    return path


def read_rank_error(path: str | Path) -> RankError:
    """The record in `path` (a `ContractError` when it is missing or not a record)."""
    return RankError.from_dict(jsondoc.read_document(path, WHAT), path)


def read_rank_errors(folder: str | Path) -> tuple[RankError, ...]:
    """Every record in a run's rank_errors folder, by rank file name (none: no folder)."""
    folder = Path(folder)
    out = []
    for path in sorted(folder.glob("rank*.json")) if folder.is_dir() else ():
        try:
            out.append(read_rank_error(path))
        except ContractError:
            if path.exists():
                raise  # a bad record; one removed since the listing (a new submission) is gone
    return tuple(out)


def first_rank_error(folder: str | Path) -> RankError | None:
    """The earliest error of the latest attempt that recorded any (None: no error)."""
    found = read_rank_errors(folder)
    if not found:
        return None
    latest = max(found, key=lambda r: r.time).attempt
    return min((r for r in found if r.attempt == latest), key=lambda r: r.time)
