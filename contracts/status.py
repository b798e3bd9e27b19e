"""``<run>/status.json``: where a run (or a preparation stage) stands, written atomically by the
launcher and the job (`scaling.core.rundir.RunDir.update_status`, the one writer, under a lock)
and read by the launcher, the status CLI and the tidy table (`analysis.results`).

States: pending (never submitted; also a run without the file), queued, running, done,
failed (with `error`), stopped. A `RunStatus` types the fields the readers use (step,
total_steps, error, log, job_ids, and `final` as a `RunSummary`); the rest of the job's and
launcher's bookkeeping (hosts, times, attempts...) is kept in `fields` as written.
Files without ``schema_version`` (written before this contract) are version 0 and read the
same. Policy: a missing file is a pending run; a file that is not a JSON object with a known
state is a `ContractError` naming the file (a JSON syntax error: its line and column).
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.atomic import atomic_write_json
from contracts.errors import ContractError
from contracts.metrics import METRICS

SCHEMA_VERSION = 1
FILE = "status.json"
STATES = ("pending", "queued", "running", "done", "failed", "stopped")
FINAL = ("done", "failed", "stopped")
# the headline columns of a finished run's last metrics line, kept as `final`
SUMMARY_KEYS = ("step", "tokens", "flops", *METRICS)


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """A finished run's headline numbers (`SUMMARY_KEYS` of its last metrics record)."""

    step: int | None = None
    tokens: int | None = None
    flops: float | None = None
    metrics: Mapping[str, float] = dataclasses.field(default_factory=_empty)  # METRICS present

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", types.MappingProxyType(dict(self.metrics)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (RunSummary, (self.step, self.tokens, self.flops, dict(self.metrics)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | Path) -> RunSummary:
        """From status.json's ``final``; a mistyped value is a `ContractError` (``final.flops``)."""
        for key in SUMMARY_KEYS:
            value = data.get(key)
            whole = key in ("step", "tokens")
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int if whole else (int, float))
            ):
                kind = "a count" if whole else "a number"
                raise ContractError(path, f"final.{key}: expected {kind}, got {value!r}")
        flops = data.get("flops")
        return cls(
            step=data.get("step"),
            tokens=data.get("tokens"),
            flops=None if flops is None else float(flops),
            metrics={m: float(data[m]) for m in METRICS if data.get(m) is not None},
        )


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """One status.json: the state, and every other key as written in `fields` (job_ids,
    log, host, started_at, samples, ...; docs/slurm.md#lifecycle); the ones every reader
    uses are typed properties, checked when the file is read."""

    state: str = "pending"
    fields: Mapping[str, Any] = dataclasses.field(default_factory=_empty)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"unknown run state {self.state!r}; expected one of {STATES}")
        fields = {k: v for k, v in self.fields.items() if k not in ("state", "schema_version")}
        object.__setattr__(self, "fields", types.MappingProxyType(fields))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and deepcopy through the constructor (a mappingproxy does not pickle)
        return (RunStatus, (self.state, dict(self.fields), self.schema_version))

    @property
    def finished(self) -> bool:
        """Whether the run has trained to its last step."""
        return self.state == "done"

    @property
    def step(self) -> int | None:
        """Optimizer steps done (the job's last report)."""
        return self.fields.get("step")

    @property
    def error(self) -> str | None:
        """Why it failed (first line: the exception)."""
        return self.fields.get("error")

    @property
    def final(self) -> RunSummary | None:
        """A finished run's headline numbers (its last metrics record), when recorded."""
        final = self.fields.get("final")
        return None if final is None else RunSummary.from_dict(final, FILE)

    @property
    def total_steps(self) -> int | None:
        """The run's length in optimizer steps (known once its job has started)."""
        return self.fields.get("total_steps")

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The scheduler's ids of the run's jobs, oldest first (none: never submitted)."""
        return tuple(self.fields.get("job_ids") or ())

    @property
    def log(self) -> str | None:
        """The latest job's log file."""
        return self.fields.get("log")

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict (what the file holds, schema_version left out)."""
        return {"state": self.state, **self.fields}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | Path = "<status>") -> RunStatus:
        """A status from its JSON object; a bad state or typed field is a `ContractError`."""
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ContractError(path, f"schema_version: expected a count, got {version!r}")
        if version > SCHEMA_VERSION:
            raise ContractError(
                path,
                f"schema_version {version} is newer than this code reads ({SCHEMA_VERSION})",
            )
        state = data.get("state", "pending")
        if state not in STATES:
            raise ContractError(
                path,
                f"not a status record (expected a JSON object with state one of "
                f"{', '.join(STATES)}; got {state!r})",
            )
        for key in ("step", "total_steps"):
            value = data.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ContractError(path, f"{key}: expected a count, got {value!r}")
        for key in ("error", "log"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise ContractError(path, f"{key}: expected a string, got {value!r}")
        job_ids = data.get("job_ids")
        if job_ids is not None and (
            not isinstance(job_ids, list) or not all(isinstance(j, str) for j in job_ids)
        ):
            raise ContractError(path, f"job_ids: expected a list of strings, got {job_ids!r}")
        final = data.get("final")
        if final is not None and not isinstance(final, dict):
            raise ContractError(path, f"final: expected a JSON object, got {final!r}")
        if final is not None:
            RunSummary.from_dict(final, path)  # checked here, where the file is named
        return cls(state, data, version)


def read_status(path: str | Path) -> RunStatus:
    """The status in `path`; a pending `RunStatus` when the file does not exist."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return RunStatus()
    except OSError as e:
        raise ContractError(path, f"cannot read the status file ({e.strerror or e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ContractError(
            path,
            f"corrupt status file ({e}); move it away to let the launcher start the run over",
        ) from None
    if not isinstance(data, dict):
        raise ContractError(
            path,
            f"not a status record (expected a JSON object with state one of {', '.join(STATES)})",
        )
    return RunStatus.from_dict(data, path)


def write_status(path: str | Path, status: RunStatus) -> None:
    """Replace `path` with `status` atomically (this contract's schema version first)."""
    atomic_write_json(path, {"schema_version": SCHEMA_VERSION, **status.as_dict()})
