"""The run directory: one per grid point, the contract between launcher, job and analysis.

    <output>/<run_id>/
      config.yaml     fully resolved RunConfig
      status.json     state (see STATES), job ids, attempts, times, error (contracts.status)
      metrics.jsonl   one JSON object per evaluation, appended and flushed (contracts.metrics)
      checkpoint.pt   latest training state, written atomically
      provenance.json the code, versions and machine that produced it (scaling.core.provenance)
      .lock           held by the one trainer writing here (scaling.core.runlock)
      attempts/       earlier attempts moved aside by `launch --retry-failed --reconfigure`
      rank_errors/    with several processes: each rank's error when it failed (rank<k>.json),
                      so the first failure is known even when rank 0 only saw its echo

The job logs (stdout, stderr) are submitit's, under `<output>/_submitit/<job id>/`; status.json's
`log` names the latest one.

States, as recorded in status.json: pending (never submitted), queued (submitted: a job id,
or waiting for a slot of the local launcher), running (a trainer started), done, failed (with
`error`), stopped (asked to stop; checkpointed, resumes on the next launch). `scaling.status`
adds `orphaned`: recorded queued/running, but the job is gone and left no final state.

Updates are read-modify-write under a file lock, so the launcher and the job never lose each
other's fields; and a recorded final state (done, failed, stopped) is never replaced by
another state unless the writer is the run's own trainer or resubmits it (`force=True`): a
launcher's late "failed" (its job's controller died while the trainer went on and finished)
cannot hide a `done` the trainer already recorded, nor a late "queued" a failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contracts import ContractError
from contracts import metrics as metrics_file
from contracts import rank_errors as rank_errors_file
from contracts import status as status_file
from contracts.metrics import MetricsRecord
from contracts.rank_errors import RankError
from contracts.status import FINAL, STATES, RunStatus
from scaling.core.cli import RuntimeFailure

__all__ = ["FINAL", "OUTCOME_FIELDS", "STATES", "CorruptStatus", "RunDir"]

# what a write that changes the state means by it: dropped with the state when a final one wins
OUTCOME_FIELDS = ("state", "error", "finished_at", "slurm_state", "traceback")


class CorruptStatus(RuntimeFailure):
    """status.json cannot be read as a status record (the message names the file)."""


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
    def lock_file(self) -> Path:
        return self.path / ".lock"

    @property
    def attempts(self) -> Path:
        return self.path / "attempts"

    def status(self) -> RunStatus:
        """The typed status record (`contracts.status`, the one reader); a pending one when
        none was written yet.

        Raises CorruptStatus (naming the file) when it is not a JSON object with a known state.
        """
        try:
            return status_file.read_status(self.status_file)
        except ContractError as e:
            raise CorruptStatus(str(e)) from None

    def read_status(self) -> dict[str, Any]:
        """`status()` as a dict, for the bookkeeping it keeps untyped ({'state': 'pending'}
        when none was written yet)."""
        return self.status().as_dict()

    @contextlib.contextmanager
    def _status_lock(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".status.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def update_status(self, *, force: bool = False, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json atomically and return the new record.

        A recorded final state (done, failed, stopped) wins over any other state `fields`
        would set (the state and its outcome fields, `OUTCOME_FIELDS`, are dropped; the rest
        is merged), unless `force`: the launcher resubmitting the run, or its trainer (which
        holds the run lock, so its word is the truth) starting or ending it.
        """
        state = fields.get("state")
        if state is not None and state not in STATES:
            raise ValueError(f"unknown run state {state!r}; expected one of {STATES}")
        with self._status_lock():
            status = self.read_status()
            recorded = status.get("state")
            if not force and state is not None and recorded in FINAL and state != recorded:
                fields = {k: v for k, v in fields.items() if k not in OUTCOME_FIELDS}
            status.update(fields)
            status["updated_at"] = time.time()
            status_file.write_status(
                self.status_file, RunStatus.from_dict(status, self.status_file)
            )
        return status

    @property
    def rank_errors(self) -> Path:
        return self.path / rank_errors_file.FOLDER

    def record_rank_error(self, rank: int, host: str, error: str, attempt: str) -> None:
        """Write rank `rank`'s failure (its own file: ranks never share one). `attempt` names
        the job attempt (SLURM job id and restart count), so a later attempt's errors are
        told apart from an earlier one's."""
        rank_errors_file.write_rank_error(
            self.rank_errors, RankError(rank, host, time.time(), attempt, error)
        )

    def first_rank_error(self) -> RankError | None:
        """The earliest rank error of the latest attempt that recorded any (None: none);
        a file that is not a rank error record is a `ContractError` (contracts.rank_errors)."""
        return rank_errors_file.first_rank_error(self.rank_errors)

    def clear_rank_errors(self) -> None:
        """Forget the rank errors of earlier jobs (before a new submission)."""
        if self.rank_errors.is_dir():
            for f in self.rank_errors.glob("rank*.json"):
                f.unlink(missing_ok=True)

    def read_metrics(self) -> list[MetricsRecord]:
        """Every metrics line (`contracts.metrics`: a torn last line from a crash is skipped
        with a warning; any other unreadable line is a located `ContractError`)."""
        return metrics_file.read_metrics(self.metrics)

    def append_metrics(self, record: MetricsRecord) -> None:
        """Append one line to metrics.jsonl (`contracts.metrics.append_metrics`)."""
        metrics_file.append_metrics(self.metrics, record)
