"""Earlier attempts of a run, kept: `launch --retry-failed --reconfigure`.

A failed run whose config the sweep now gives differently (the README's NaN advice: lower the
learning rate and retry) cannot resume from its checkpoint: the weights, schedule and metrics
belong to another experiment. `set_aside(run_dir, reason)` moves everything the run wrote
(config.yaml, status.json, metrics.jsonl, checkpoint.pt, provenance.json, event files) into
`<run_dir>/attempts/<n>/`, with `reason.json` saying why and when, and what the old
status said (its error); the run then starts over with the new config. Nothing is deleted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from contracts.atomic import atomic_write_text
from scaling.core.rundir import RunDir

KEEP_IN_PLACE = ("attempts", ".lock", ".status.lock")


def set_aside(run_dir: str | Path, reason: str, status: dict[str, Any]) -> Path:
    """Move the run's files into attempts/<n>/ (n = 1, 2, ...); return that folder."""
    run_dir = Path(run_dir)
    root = RunDir(run_dir).attempts
    root.mkdir(exist_ok=True)
    n = 1 + max([int(p.name) for p in root.iterdir() if p.name.isdigit()] or [0])
    dest = root / str(n)
    dest.mkdir()
    atomic_write_text(
        dest / "reason.json",
        json.dumps(
            {
                "reason": reason,
                "set_aside_at": time.time(),
                "state": status.get("state"),
                "error": status.get("error"),
                "job_ids": status.get("job_ids") or [],
            },
            indent=2,
        )
        + "\n",
    )
    for item in sorted(run_dir.iterdir()):
        if item.name not in KEEP_IN_PLACE:
            item.rename(dest / item.name)
    return dest
