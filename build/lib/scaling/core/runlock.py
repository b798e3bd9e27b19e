"""One trainer per run directory, and who a process is (pid + start time).

`RunLock(run_dir)` takes `<run_dir>/.lock`: an flock held for the trainer's lifetime, with
the holder's host, pid, start time and SLURM job id written in the file. A second trainer
finds the lock held and refuses with a message naming the holder. The kernel drops the lock
when its process dies in any way (SIGKILL included), so a lock left by a crashed trainer is
stale by construction: the next trainer takes it over (and logs so), with no manual clean-up
and no guess from timestamps. (On a network file system flock is as good as the file
system's lock support; the holder's host in the file tells a human where to look.)

`process_start(pid)` is the kernel's start time of a process (clock ticks since boot, from
/proc/<pid>/stat): with the pid it names one process even after the pid is reused, which is
how `scaling.status` tells a live local job from a recycled pid.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from scaling.core.cli import RuntimeFailure
from scaling.core.rundir import RunDir

log = logging.getLogger(__name__)


class RunLocked(RuntimeFailure):
    """Another live process holds the run directory's lock."""


def process_start(pid: int | str) -> int | None:
    """Start time of process `pid` in clock ticks since boot; None if there is no such process."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 overall
    except (IndexError, ValueError):
        return None


def same_process(pid: int | str | None, start: int | None) -> bool:
    """Whether (pid, start) still names a live process of this machine."""
    if pid is None:
        return False
    now = process_start(pid)
    return now is not None and (start is None or now == start)


def me() -> dict[str, Any]:
    """This process: host, pid, start time (ticks), SLURM job id, wall time of the claim."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": process_start(os.getpid()),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "since": time.time(),
    }


class RunLock:
    """`with RunLock(run_dir):` -- the exclusive right to train in `run_dir` (see module doc)."""

    def __init__(self, run_dir: str | Path):
        self.path = RunDir(run_dir).lock_file
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its (last) holder; {} if unreadable."""
        try:
            return _parse(self.path.read_bytes())
        except OSError:
            return {}

    def acquire(self) -> None:
        """Take the lock or raise RunLocked naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            h = self.holder()
            raise RunLocked(
                f"{self.path.parent}: another trainer is writing this run directory (host "
                f"{h.get('host', '?')}, pid {h.get('pid', '?')}, started "
                f"{_when(h.get('since'))}"
                + (f", SLURM job {h['slurm_job_id']}" if h.get("slurm_job_id") else "")
                + "); refusing to start a second one. Stop that process first "
                "(its lock is released when it ends)."
            ) from None
        stale = _parse(os.pread(fd, 4096, 0))
        if stale:
            log.warning(
                "%s: taking over a stale lock of host %s pid %s (that process ended "
                "without releasing it)",
                self.path,
                stale.get("host"),
                stale.get("pid"),
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me()) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Empty the file (a clean release) and drop the lock."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode() or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _when(t: Any) -> str:
    if not isinstance(t, (int, float)):
        return "at an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
