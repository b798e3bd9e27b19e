"""What one benchmark run measured, and how it is written: the timing table, the check
table and the Markdown report (printed by the CLI, or put between the BENCH markers of a file).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from contracts.atomic import atomic_write_text
from scaling.tools.bench.fast_path import Check, FastPath

COLUMNS = (
    "what",
    "model",
    "batch",
    "path",
    "ms/iter",
    "images/s",
    "tokens/s",
    "TFLOP/s exact",
    "TFLOP/s 6NL",
    "MFU exact",
    "MFU 6NL",
    "peak mem GB",
    "x official",
)
MARKERS = ("<!-- BENCH:START -->", "<!-- BENCH:END -->")


@dataclasses.dataclass
class Row:
    """One timed measurement: `images` per `seconds` (median per iteration)."""

    what: str
    model: str
    batch: int
    path: str
    seconds: float
    images: int
    L: int
    flops_exact: float | None = None  # per image
    flops_6nl: float | None = None  # per image
    peak_gb: float | None = None
    vs_official: float | None = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.images_per_s * self.L

    def tflops(self, which: str) -> float | None:
        """Achieved TFLOP/s by the "exact" or the "6nl" count (None when not counted)."""
        per_image = self.flops_exact if which == "exact" else self.flops_6nl
        return None if per_image is None else per_image * self.images_per_s / 1e12


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _percent(value: float | None, peak: float) -> str:
    return "-" if value is None else f"{100 * value / peak:.1f}%"


def format_table(rows: Sequence[Row], peak_tflops: float) -> str:
    """Markdown table of `rows` (columns: COLUMNS); MFU is against `peak_tflops`."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        te, t6 = r.tflops("exact"), r.tflops("6nl")
        cells = [
            r.what,
            r.model,
            str(r.batch),
            r.path,
            _fmt(1e3 * r.seconds, ".2f"),
            _fmt(r.images_per_s, ".1f"),
            _fmt(r.tokens_per_s, ".0f"),
            _fmt(te, ".3g"),
            _fmt(t6, ".3g"),
            _percent(te, peak_tflops),
            _percent(t6, peak_tflops),
            _fmt(r.peak_gb, ".2f"),
            _fmt(r.vs_official, ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_checks(checks: Sequence[Check]) -> str:
    """Markdown table of the fast-path checks."""
    lines = ["| check | value | tolerance | pass |", "|---|---|---|---|"]
    for c in checks:
        tol = "info" if c.tolerance is None else f"<= {c.tolerance:.0e}"
        ok = "-" if c.passed is None else ("yes" if c.passed else "NO")
        lines.append(f"| {c.name} | {c.value:.3g} | {tol} | {ok} |")
    return "\n".join(lines)


@dataclasses.dataclass
class BenchResult:
    """Everything one benchmark run measured."""

    rows: list[Row]
    checks: list[Check]
    peak_tflops: float
    peak_label: str
    device_name: str
    torch_version: str
    date: str
    command: str
    fast: FastPath
    policies: list[str] = dataclasses.field(default_factory=list)  # "d16: <policy>" per size

    def markdown(self) -> str:
        """The report: header, the runtime policy, the timing table and the check table."""
        return "\n".join(
            [
                f"Measured {self.date} on {self.device_name}, torch {self.torch_version}; "
                f"matmul peak {self.peak_tflops:.4g} TFLOP/s ({self.peak_label}); fast path "
                f"{self.fast.label()}.",
                "",
                f"Command: `{self.command}`",
                "",
                *[f"Runtime policy (scaling.core.runtime) {p}" + "  " for p in self.policies],
                *([""] if self.policies else []),
                format_table(self.rows, self.peak_tflops),
                "",
                "Fast-path correctness (same weights and batch, eval mode):",
                "",
                format_checks(self.checks),
            ]
        )


def write_report(path: Path, result: BenchResult) -> None:
    """Put the result between the BENCH markers of `path` (the rest of the file is kept);
    a file without markers gets them appended; a missing file is created."""
    start, end = MARKERS
    block = f"{start}\n{result.markdown()}\n{end}"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + block + "\n"
    atomic_write_text(path, text)
