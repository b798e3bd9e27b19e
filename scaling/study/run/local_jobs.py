"""Local jobs (submitit's local executor) that a user can stop the way they expect.

Decision (issue 13): Ctrl-C, SIGTERM or SIGHUP (a closed terminal) to a launcher that runs
local jobs *stops them cleanly*: the launcher sends SIGTERM to each running job, submitit's
local controller forwards it to the trainer, whose handler (scaling.training.job.TrainJob) finishes
the current step, writes checkpoint.pt and records the run `stopped`; runs still waiting for
a slot go back to `pending`. The launcher waits for that and exits 130 (SIGINT), 143
(SIGTERM) or 129 (SIGHUP). The next `launch` resumes every stopped run from its checkpoint.

For this, the jobs must not see the terminal's Ctrl-C themselves (a terminal sends SIGINT to
the whole foreground process group; the controller would kill the trainer without a
checkpoint): `submit_shielded` starts each job with SIGINT and SIGHUP ignored, a disposition
that a child process inherits; only the launcher acts on them. A launcher that is SIGKILLed
cannot stop anything: its jobs go on, recorded with their pid and start time, and the next
`launch`/`status` sees them as running (scaling.study.run.states.LocalQueue) and starts no
duplicate;
the run-directory lock (scaling.core.runlock) guarantees it even if they were missed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopFlag:
    """Set by the launcher's signal handler; polled by its loops (never raises mid-write)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: Any = None) -> None:
        self.signum = signum

    @property
    def set(self) -> bool:
        return self.signum is not None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT/SIGTERM/SIGHUP to `flag` while the block runs (main thread only)."""
    if not _main_thread():
        yield flag
        return
    old = {s: signal.signal(s, flag) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def submit_shielded(submit: Callable[..., Any], *args: Any) -> Any:
    """`submit(*args)` with SIGINT and SIGHUP ignored, so the job started inherits that."""
    if not _main_thread():
        return submit(*args)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGHUP)}
    try:
        return submit(*args)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def terminate(job: Any) -> bool:
    """Send SIGTERM to a local job's controller (it forwards it to the trainer)."""
    try:
        os.kill(int(job.job_id), signal.SIGTERM)
        return True
    except (OSError, ValueError):
        return False
