"""The checks every JSON contract shares: read a document, its schema version, typed fields.

One error policy (contracts/__init__.py): what cannot be read as the contract says is a
`ContractError` naming the file, the field (``differences[2].delta``) and, for a JSON syntax
error, the line.
"""

from __future__ import annotations

import datetime as _dt
import json
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts.errors import ContractError


def utc_now() -> str:
    """Now, as every file written between stages records its time (`created_utc`,
    `time_utc`): UTC, ISO 8601 to the second, e.g. "2026-12-07T19:40:00Z"."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_document(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON object in `path`; `what` says which file it should be (in every error).
    A missing file is an error too: the reader was asked for it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ContractError(path, f"no such file ({what})") from None
    except OSError as e:
        raise ContractError(path, f"cannot read it ({e.strerror or e})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ContractError(
            path, f"not JSON ({e.msg}, column {e.colno}); {what}", e.lineno
        ) from None
    if not isinstance(doc, dict):
        raise ContractError(path, f"expected a JSON object ({what}), got {type(doc).__name__}")
    return doc


def version(path: str | Path, doc: Mapping[str, Any], current: int) -> int:
    """The document's ``schema_version`` (0 when absent: written before its contract)."""
    value = doc.get("schema_version", 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= current:
        raise ContractError(path, f"schema_version: this code reads 0 to {current}, got {value!r}")
    return value


def field(path: str | Path, doc: Mapping[str, Any], key: str, where: str = "") -> Any:
    """``doc[key]``, or a `ContractError` naming ``where.key`` when it is missing."""
    if not isinstance(doc, Mapping):
        raise ContractError(path, f"{where or 'the document'}: expected a JSON object")
    if key not in doc:
        raise ContractError(path, f"{_name(where, key)}: missing")
    return doc[key]


def number(path: str | Path, value: Any, name: str, *, optional: bool = False) -> Any:
    """`value` as a float (None passes when `optional`); else a `ContractError` naming it."""
    if value is None and optional:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ContractError(path, f"{name}: expected a number, got {value!r}")
    return float(value)


def count(path: str | Path, value: Any, name: str, *, optional: bool = False) -> Any:
    """`value` as a whole number >= 0 (None passes when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ContractError(path, f"{name}: expected a whole number >= 0, got {value!r}")
    return int(value)


def text(path: str | Path, value: Any, name: str, *, optional: bool = False) -> Any:
    """`value` as a string (None passes when `optional`)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ContractError(path, f"{name}: expected a string, got {value!r}")
    return value


def pair(path: str | Path, value: Any, name: str) -> tuple[float, float] | None:
    """An interval ``[lo, hi]`` as a tuple, or None (no interval)."""
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ContractError(path, f"{name}: expected [lo, hi] or null, got {value!r}")
    return (number(path, value[0], f"{name}[0]"), number(path, value[1], f"{name}[1]"))


def records(path: str | Path, value: Any, name: str) -> list[Mapping[str, Any]]:
    """A list of JSON objects."""
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ContractError(path, f"{name}: expected a list of JSON objects")
    return value


def mapping(path: str | Path, value: Any, name: str) -> Mapping[str, Any]:
    """A JSON object."""
    if not isinstance(value, Mapping):
        raise ContractError(path, f"{name}: expected a JSON object, got {value!r}")
    return value


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
