"""The run directory: one per grid point, the contract between launcher, job and analysis.

    <output>/<run_id>/
      config.yaml     fully resolved RunConfig
      status.json     state (pending|queued|running|done|failed), job ids, attempts, times
      metrics.jsonl   one JSON object per evaluation, appended and flushed
      checkpoint.pt   latest training state, written atomically
      logs/           job logs (submitit's stdout/stderr are linked from status.json)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from scaling.atomic import atomic_write_json

STATES = ("pending", "queued", "running", "done", "failed")


class RunDir:
    """Paths and status of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def read_status(self) -> dict[str, Any]:
        """The status record; {'state': 'pending'} when none was written yet."""
        try:
            return json.loads(self.status_file.read_text())
        except FileNotFoundError:
            return {"state": "pending"}
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.status_file}: corrupt status file ({e})") from None

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json atomically and return the new record."""
        state = fields.get("state")
        if state is not None and state not in STATES:
            raise ValueError(f"unknown run state {state!r}; expected one of {STATES}")
        status = self.read_status()
        status.update(fields)
        status["updated_at"] = time.time()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.status_file, status)
        return status

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete metrics lines (a torn last line from a crash is ignored)."""
        if not self.metrics.exists():
            return []
        records = []
        for line in self.metrics.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records
