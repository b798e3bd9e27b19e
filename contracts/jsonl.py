"""Append-only JSON-lines logs: one JSON object per line, appended and flushed.

The policy of every such log (metrics.jsonl, vqvae_metrics.jsonl): a crash can cut short only
the line being appended, so only the last line may be torn. The reader skips a torn last line
with a `ContractWarning`; any other line that is not a JSON object is a `ContractError`
naming the file and the line. The writer first cuts a torn tail left by a crash, so that the
line it appends never follows half a line (which would make a torn line a middle one).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.atomic import write_error
from contracts.errors import ContractError, ContractWarning


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it (a crash loses at most this line); a torn tail left
    by an earlier crash is cut first (with a warning naming it), a complete last line without
    its newline gets one."""
    append_jsonl_lines(path, [record])


def append_jsonl_lines(
    path: str | Path, records: Sequence[dict[str, Any]], *, sort_keys: bool = False
) -> None:
    """Append `records`, one JSON line each, in one write and one fsync (as `append_jsonl`:
    a torn tail is cut first). `sort_keys`: the keys of each line sorted."""
    if not records:
        return
    text = "".join(
        json.dumps(r, separators=(",", ":"), sort_keys=sort_keys) + "\n" for r in records
    )
    try:
        with open(path, "ab+") as f:
            _cut_torn_tail(f, Path(path))
            f.write(text.encode())
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # a full disk says so, naming the file
        raise write_error(path, e) from None


def _cut_torn_tail(f: Any, path: Path) -> None:
    """Make `f` (opened "ab+") end in a newline: a complete last line without one gets it,
    a torn one (not JSON) is truncated away."""
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return
    f.seek(end - 1)
    if f.read(1) == b"\n":
        return
    start = max(0, end - (1 << 20))  # a line is far below 1 MiB; look no further back
    f.seek(start)
    tail = f.read(end - start)
    cut = start + tail.rfind(b"\n") + 1 if b"\n" in tail else start
    try:
        json.loads(tail[cut - start :])
    except ValueError:
        warnings.warn(
            f"{path}: cut a torn last line ({end - cut} bytes) left by an interrupted write",
            ContractWarning,
            stacklevel=3,
        )
        f.truncate(cut)
    else:
        f.write(b"\n")


def read_jsonl_lines(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of every line of an append-only log; [] when there is none.

    Blank lines are skipped. A torn last line is skipped with a `ContractWarning`; a
    line before it that is not a JSON object raises `ContractError` (file:line).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ContractError(path, f"cannot read it ({e.strerror or e})") from None
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if i == last:
                warnings.warn(
                    f"{path}:{i + 1}: skipped a torn last line ({e.msg}): a write cut short",
                    ContractWarning,
                    stacklevel=2,
                )
                continue
            raise ContractError(
                path,
                f"unreadable line ({e.msg}); only the last line of an append-only log can be "
                "torn by a crash, so this file was edited or damaged: repair or delete that line",
                line=i + 1,
            ) from None
        if not isinstance(record, dict):
            raise ContractError(path, f"not a JSON object but {type(record).__name__}", line=i + 1)
        out.append((i + 1, record))
    return out


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The objects of an append-only log, in order (policy: `read_jsonl_lines`)."""
    return [record for _, record in read_jsonl_lines(path)]
