"""``<run>/metrics.jsonl``: one line per evaluation of a run, appended by the trainer (test
evaluations) and by the sample-quality stage (``eval: "samples"``); read by the status CLI,
the sample stage and the tidy table (`analysis.results`).

The metric names are declared here once: `METRICS` (test metrics, fittable), `BY_SCALE`
(their per-scale lists), `METRICS_SE` (their standard errors over the test images) and
`SAMPLE_METRICS` (the fittable sample-quality columns, lower is better), with every column of
a sample-quality line in `SAMPLE_FIELDS`.

A line is a `MetricsRecord`: the trainer's columns as typed fields (None: not in the line),
the sample-quality columns in `samples`, anything else (a newer writer's or a hand-made
table's columns) in `extra`, kept and written back unchanged. Lines without
``schema_version`` (written before this contract) are version 0 and read the same.
Policy (`contracts.jsonl`): a torn last line is skipped with a warning; any other unreadable
line, or a known column of the wrong type, is a `ContractError` naming file and line.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.errors import ContractError
from contracts.jsonl import append_jsonl, read_jsonl_lines

SCHEMA_VERSION = 1
FILE = "metrics.jsonl"

# test metrics of one evaluation (scaling.training.evaluate): averaged over all tokens / the
# last scale; the fittable ones
METRICS = ("ce_avg", "ce_last", "err_avg", "err_last")
BY_SCALE = ("ce_by_scale", "err_by_scale")  # the same per scale, coarse to fine
# their standard errors over the test images (written when the evaluator measured them)
METRICS_SE = tuple(f"{m}_se" for m in METRICS)
EVAL_KINDS = ("full", "subset", "samples")  # full test set, part of it, sample quality
# sample quality (scaling.sample_eval): the fittable columns (lower is better) ...
SAMPLE_METRICS = ("fid", "sample_fd", "sample_err")
# ... and every column of a sample-quality line besides the run's compute columns
SAMPLE_FIELDS = (
    "fid",
    "is",
    "is_std",
    "precision",
    "recall",
    "sample_acc",
    "sample_err",
    "sample_fd",
    "sample_count",
    "sample_per_class",
    "sample_classes",
    "sample_cfg",
    "sample_top_k",
    "sample_top_p",
    "sample_seed",
    "sample_features",
    "sample_reference",
    "sample_reference_images",
    "sample_reference_skipped",
    "sample_folder",
    "sample_s",
)

Number = int | float


def _empty() -> Mapping[str, Any]:
    return types.MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class MetricsRecord:
    """One line of metrics.jsonl. Typed fields in the order the trainer writes them."""

    run: str | None = None
    depth: int | None = None
    params: Number | None = None  # N, parameters (buffers excluded)
    width: int | None = None
    batch: int | None = None
    peak_lr: float | None = None
    epochs: float | None = None  # passes over the train split's images in the whole run
    train_images: int | None = None  # distinct images trained on (data.subset: the subset's)
    unique_tokens: Number | None = None  # U = train_images x L (repetition-aware laws)
    views: int | None = None  # stored sequences per image read: views used x 2 with flips
    seed: int | None = None
    step: int | None = None  # optimizer steps done
    images: Number | None = None  # images trained on
    tokens: Number | None = None  # tokens trained on
    flops: Number | None = None  # exact training FLOPs (var_core.counting)
    flops_6nd: Number | None = None  # 6 N D
    wall_s: float | None = None  # training time so far (evaluations and checkpoints excluded)
    train_loss: float | None = None  # mean training loss since the previous evaluation
    lr: float | None = None
    ce_avg: float | None = None
    ce_last: float | None = None
    err_avg: float | None = None
    err_last: float | None = None
    ce_by_scale: tuple[float, ...] | None = None
    err_by_scale: tuple[float, ...] | None = None
    ce_avg_se: float | None = None  # standard errors over the test images (METRICS_SE)
    ce_last_se: float | None = None
    err_avg_se: float | None = None
    err_last_se: float | None = None
    eval: str | None = None  # one of EVAL_KINDS; None (old lines): "full"
    eval_images: int | None = None
    eval_flops: Number | None = None  # all evaluations' forward FLOPs so far
    eval_s: float | None = None
    # SAMPLE_FIELDS of an ``eval: "samples"`` line
    samples: Mapping[str, Any] = dataclasses.field(default_factory=_empty)
    # columns this contract does not name, kept as read
    extra: Mapping[str, Any] = dataclasses.field(default_factory=_empty)
    schema_version: int = SCHEMA_VERSION
    line: int = dataclasses.field(default=0, compare=False)  # where it was read (0: not read)

    def __post_init__(self) -> None:
        # read-only views: a frozen record whose mappings could change would not be frozen
        for name in ("samples", "extra"):
            object.__setattr__(self, name, types.MappingProxyType(dict(getattr(self, name))))
        unknown = [k for k in self.samples if k not in SAMPLE_FIELDS]
        if unknown:  # a new sample column is declared in SAMPLE_FIELDS first
            raise ValueError(f"sample columns not in SAMPLE_FIELDS: {', '.join(unknown)}")

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and deepcopy through the constructor (a mappingproxy does not pickle)
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return (_rebuild, (type(self), {k: _plain(v) for k, v in state.items()}))

    @property
    def kind(self) -> str:
        """The evaluation kind: "full" (also for old lines without one), "subset", "samples"."""
        return self.eval or "full"

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of the line (schema_version first, unset fields left out)."""
        out: dict[str, Any] = {"schema_version": self.schema_version}
        for name in _TYPED:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
        return {**out, **self.samples, **self.extra}

    def columns(self) -> dict[str, Any]:
        """The line's columns without schema_version (a row of the tidy table)."""
        row = self.as_dict()
        del row["schema_version"]
        return row

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | Path = "<record>", line: int = 0):
        """A record from a line's JSON object; a known column of the wrong type is a
        `ContractError` naming `path`, `line` and the column."""
        typed: dict[str, Any] = {}
        samples: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ContractError(path, f"schema_version: expected a count, got {version!r}", line)
        if version > SCHEMA_VERSION:
            raise ContractError(
                path,
                f"schema_version {version} is newer than this code reads ({SCHEMA_VERSION}); "
                "update the code",
                line,
            )
        for key, value in data.items():
            if key == "schema_version":
                continue
            if key in _TYPED:
                typed[key] = _check(key, value, path, line)
            elif key in SAMPLE_FIELDS:
                samples[key] = value
            else:
                extra[key] = value
        if typed.get("eval") is not None and typed["eval"] not in EVAL_KINDS:
            raise ContractError(
                path, f"eval: expected one of {', '.join(EVAL_KINDS)}, got {typed['eval']!r}", line
            )
        return cls(
            **typed,
            samples=samples,
            extra=extra,
            schema_version=version,
            line=line,
        )


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _rebuild(cls: type, state: dict[str, Any]) -> Any:
    return cls(**state)


assert METRICS_SE == ("ce_avg_se", "ce_last_se", "err_avg_se", "err_last_se")  # the fields above

_TYPED = tuple(
    f.name
    for f in dataclasses.fields(MetricsRecord)
    if f.name not in ("samples", "extra", "schema_version", "line")
)
_STRINGS = ("run", "eval")
_LISTS = BY_SCALE


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(key: str, value: Any, path: str | Path, line: int) -> Any:
    """`value` of typed column `key`, checked (lists become tuples); None passes."""
    if value is None:
        return None
    if key in _STRINGS:
        if not isinstance(value, str):
            raise ContractError(path, f"{key}: expected a string, got {value!r}", line)
        return value
    if key in _LISTS:
        if not isinstance(value, list) or not all(v is None or _is_number(v) for v in value):
            raise ContractError(path, f"{key}: expected a list of numbers, got {value!r}", line)
        return tuple(math.nan if v is None else v for v in value)
    if not _is_number(value):
        raise ContractError(path, f"{key}: expected a number, got {value!r}", line)
    return value


def read_metrics(path: str | Path) -> list[MetricsRecord]:
    """Every line of a metrics.jsonl as a `MetricsRecord` ([] when the file does not exist);
    policy in the module docstring."""
    return [MetricsRecord.from_dict(obj, path, n) for n, obj in read_jsonl_lines(path)]


def append_metrics(path: str | Path, record: MetricsRecord) -> None:
    """Append `record` as one line (fsynced; written with this contract's schema version)."""
    append_jsonl(path, dataclasses.replace(record, schema_version=SCHEMA_VERSION).as_dict())
