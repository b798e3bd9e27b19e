"""Plain-text tables and the number and duration formats the study's reports share
(the launch table, `scaling.status`, the planner)."""

from __future__ import annotations

import math


def format_table(header: list[str], table: list[list[str]]) -> str:
    """Plain aligned text table: a header line, then one line per row (trailing spaces cut)."""
    widths = [
        max(len(h), *(len(r[i]) for r in table)) if table else len(h) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    return "\n".join(line.rstrip() for line in lines)


def human(n: float) -> str:
    """1234567 -> '1.23M' (K, M, G, T, P, E suffixes)."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}" if not math.isclose(n, round(n)) else str(int(round(n)))


def duration(seconds: float) -> str:
    """75 -> '1m15s', 3700 -> '1h01m', 9 -> '9s'."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
