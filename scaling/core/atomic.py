"""Atomic writes and the append-only JSONL log, for the study's code: their one home is
`contracts.atomic` and `contracts.jsonl` (torch-free, shared with `analysis`); this module keeps
the import path the study's modules use."""

from contracts.atomic import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    replacing_folder,
    write_error,
)
from contracts.jsonl import append_jsonl

__all__ = [
    "append_jsonl",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "replacing_folder",
    "write_error",
]
