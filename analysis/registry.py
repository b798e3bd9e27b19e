"""The forecast registry: ``forecasts.jsonl`` in a study folder, append-only.

Every forecast the toolkit makes (a backtest's prediction, a whole-curve forecast of a run,
``scaling.fit --optimal-for``) is one ``forecast`` line: what it predicts (`Target`), the
value and interval, the law and its settings, the E choice, the input table's hash and the
code version. When the predicted value is observed (the run finished), a ``score`` line is
appended that names the forecast by its id: observed, error, inside the interval or not. A
line is never rewritten: a forecast made before its run finished keeps what it said.

A forecast's id is a hash of what it says and what it was made from (kind, target, law,
settings, input hash, code, prediction), so making the same forecast again from the same data
does not append a duplicate. This module is the one reader and writer of the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from contracts import ContractError
from contracts.jsondoc import utc_now
from contracts.jsonl import append_jsonl_lines, read_jsonl_lines

FILE = "forecasts.jsonl"
SCHEMA_VERSION = 1
KINDS = ("backtest_size", "backtest_compute", "curve", "cooldown", "optimal_for")


class RegistryError(ValueError):
    """A forecasts.jsonl line that is not a forecast or score record (names file and line)."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What a forecast predicts: `metric` of `run` after `step` steps (its final evaluation
    when step is its length). A target without a run (``--optimal-for``) names `params` and
    `flops` instead: the run of that size at that compute, when one exists."""

    metric: str
    run: str | None = None
    step: int | None = None
    params: float | None = None
    flops: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, None fields left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class ForecastRecord:
    """One forecast line. kind: one of `KINDS`. interval: (lo, hi) at `level`, or None
    (with `interval_note` saying why). E: {"choice": ..., "value": ...} (None for laws
    without E). settings: the law's settings (prefix fraction, cut, k sizes...)."""

    id: str
    created_utc: str
    kind: str
    target: Target
    predicted: float
    interval: tuple[float, float] | None
    level: float | None
    law: str
    settings: dict[str, Any]
    E: dict[str, Any] | None
    input_sha256: str
    code: str | None
    source: str
    interval_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON line's object."""
        d = dataclasses.asdict(self)
        d["record"] = "forecast"
        d["schema_version"] = SCHEMA_VERSION
        d["target"] = self.target.to_dict()
        d["interval"] = list(self.interval) if self.interval is not None else None
        return d


@dataclasses.dataclass(frozen=True)
class ScoreRecord:
    """One score line: the forecast `forecast` (its id) met its observed value."""

    forecast: str
    created_utc: str
    observed: float
    error: float  # predicted - observed
    rel_error: float  # predicted / observed - 1
    inside: bool | None  # None: the forecast had no interval

    def to_dict(self) -> dict[str, Any]:
        """The JSON line's object."""
        d = dataclasses.asdict(self)
        d["record"] = "score"
        d["schema_version"] = SCHEMA_VERSION
        return d


def table_sha256(table: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """The hash of a table's content (the given columns, rows sorted): the input of a
    forecast, so two forecasts from the same data share it."""
    cols = [c for c in (columns or table.columns) if c in table.columns]
    sub = table[cols].sort_values(cols[:2] if len(cols) >= 2 else cols, kind="stable")
    return hashlib.sha256(sub.to_csv(index=False).encode()).hexdigest()


def make_forecast(
    *,
    kind: str,
    target: Target,
    predicted: float,
    interval: tuple[float, float] | None,
    level: float | None,
    law: str,
    settings: dict[str, Any],
    E: dict[str, Any] | None,
    input_sha256: str,
    code: str | None,
    source: str,
    interval_note: str | None = None,
) -> ForecastRecord:
    """A forecast record with its id (a hash of everything it says but its time)."""
    if kind not in KINDS:
        raise ValueError(f"forecast kind must be one of {', '.join(KINDS)}; got {kind!r}")
    body = {
        "kind": kind,
        "target": target.to_dict(),
        "predicted": round(float(predicted), 12),
        "interval": None if interval is None else [round(float(v), 12) for v in interval],
        "law": law,
        "settings": settings,
        "E": E,
        "input": input_sha256,
        "code": code,
    }
    fid = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return ForecastRecord(
        id=fid,
        created_utc=utc_now(),
        kind=kind,
        target=target,
        predicted=float(predicted),
        interval=None if interval is None else (float(interval[0]), float(interval[1])),
        level=level,
        law=law,
        settings=settings,
        E=E,
        input_sha256=input_sha256,
        code=code,
        source=source,
        interval_note=interval_note,
    )


def score(forecast: ForecastRecord, observed: float) -> ScoreRecord:
    """The score of `forecast` against its observed value."""
    obs = float(observed)
    inside = (
        None
        if forecast.interval is None
        else bool(forecast.interval[0] <= obs <= forecast.interval[1])
    )
    return ScoreRecord(
        forecast=forecast.id,
        created_utc=utc_now(),
        observed=obs,
        error=forecast.predicted - obs,
        rel_error=forecast.predicted / obs - 1 if obs != 0 else math.nan,
        inside=inside,
    )


# ----------------------------------------------------------------------------- file


def _need(obj: dict, key: str, types: type | tuple, where: str, optional: bool = False) -> Any:
    """obj[key] of one of `types` (a bool is not a number), else RegistryError naming it."""
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise RegistryError(f"{where}: key {key!r} missing")
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise RegistryError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _parse(obj: Any, where: str) -> ForecastRecord | ScoreRecord:
    if not isinstance(obj, dict):
        raise RegistryError(f"{where}: not a JSON object")
    kind = obj.get("record")
    num = (int, float)
    if kind == "score":
        return ScoreRecord(
            forecast=_need(obj, "forecast", str, where),
            created_utc=_need(obj, "created_utc", str, where),
            observed=float(_need(obj, "observed", num, where)),
            error=float(_need(obj, "error", num, where)),
            rel_error=float(_need(obj, "rel_error", num, where)),
            inside=_need(obj, "inside", bool, where, optional=True),
        )
    if kind != "forecast":
        raise RegistryError(f"{where}: 'record' must be 'forecast' or 'score'; got {kind!r}")
    t = _need(obj, "target", dict, where)
    interval = _need(obj, "interval", list, where, optional=True)
    if interval is not None and (
        len(interval) != 2 or not all(isinstance(v, num) for v in interval)
    ):
        raise RegistryError(f"{where}: 'interval' must be [lo, hi] or null")
    try:
        target = Target(**t)
    except TypeError as e:
        raise RegistryError(f"{where}: bad target ({e})") from None
    return ForecastRecord(
        id=_need(obj, "id", str, where),
        created_utc=_need(obj, "created_utc", str, where),
        kind=_need(obj, "kind", str, where),
        target=target,
        predicted=float(_need(obj, "predicted", num, where)),
        interval=None if interval is None else (float(interval[0]), float(interval[1])),
        level=_need(obj, "level", num, where, optional=True),
        law=_need(obj, "law", str, where),
        settings=_need(obj, "settings", dict, where),
        E=_need(obj, "E", dict, where, optional=True),
        input_sha256=_need(obj, "input_sha256", str, where),
        code=_need(obj, "code", str, where, optional=True),
        source=_need(obj, "source", str, where),
        interval_note=_need(obj, "interval_note", str, where, optional=True),
    )


def read(path: str | Path) -> list[ForecastRecord | ScoreRecord]:
    """Every record of a forecasts.jsonl (none when it does not exist). The append-only log's
    policy (`contracts.jsonl`): a torn last line (a writer killed mid-line) is skipped with a
    warning; any other bad line raises RegistryError naming it."""
    try:
        lines = read_jsonl_lines(path)
    except ContractError as e:
        raise RegistryError(str(e)) from None
    return [_parse(obj, f"{path}:{n}") for n, obj in lines]


def append(path: str | Path, records: Iterable[ForecastRecord | ScoreRecord]) -> int:
    """Append records (forecasts already in the file, by id, and scores of forecasts already
    scored are skipped); returns how many lines were written. Each line is written whole
    and flushed to disk; the file is only ever appended to (`contracts.jsonl`)."""
    path = Path(path)
    existing = read(path)
    have = {r.id for r in existing if isinstance(r, ForecastRecord)}
    scored = {r.forecast for r in existing if isinstance(r, ScoreRecord)}
    lines: list[dict[str, Any]] = []
    for r in records:
        if isinstance(r, ForecastRecord):
            if r.id in have:
                continue
            have.add(r.id)
        else:
            if r.forecast in scored:
                continue
            scored.add(r.forecast)
        lines.append(r.to_dict())
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl_lines(path, lines, sort_keys=True)  # a torn tail of a killed writer is cut first
    return len(lines)


def pending(records: Sequence[ForecastRecord | ScoreRecord]) -> list[ForecastRecord]:
    """The forecasts without a score yet."""
    scored = {r.forecast for r in records if isinstance(r, ScoreRecord)}
    return [r for r in records if isinstance(r, ForecastRecord) and r.id not in scored]


def scored(
    records: Sequence[ForecastRecord | ScoreRecord],
) -> list[tuple[ForecastRecord, ScoreRecord]]:
    """(forecast, its score) for every scored forecast, in the order they were scored."""
    by_id = {r.id: r for r in records if isinstance(r, ForecastRecord)}
    return [
        (by_id[r.forecast], r)
        for r in records
        if isinstance(r, ScoreRecord) and r.forecast in by_id
    ]
