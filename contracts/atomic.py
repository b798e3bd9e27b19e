"""Writes that never leave a half-written file (temp, fsync, rename) or folder (staged, swapped).

The one home of atomic writes (every stage imports it from here); the
append-only JSONL log is `contracts.jsonl`.

The temp file is `.<name>.<host>.<pid>.<random>.tmp` beside the target. A write killed
before its rename (SIGKILL, power loss) leaves one behind; the next write of the same file
removes those whose process (on this host) is gone, so they do not pile up. The result gets
the mode a plain `open()` would give (0666 minus the umask, or the mode of the file it
replaces), not the 0600 of a temp file: a team on a shared cluster can read it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def write_error(path: str | Path, e: BaseException) -> BaseException:
    """The OSError to raise for a write of `path` that failed with `e`, naming the path: a
    full disk (ENOSPC, or a library's own error, e.g. torch's "unexpected pos", while the
    file system has no room left) becomes OSError(ENOSPC) on `path`; another OSError gets
    `path` as its file name; anything else is returned as it is (a bug keeps its type)."""
    if isinstance(e, OSError):
        if e.filename is None:
            return OSError(e.errno, e.strerror or str(e), str(path))
        return e
    if isinstance(e, (RuntimeError, ValueError)) and _full(Path(path).parent):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return e


def _full(directory: Path) -> bool:
    """Whether the file system of `directory` has (almost) no room left for this user."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_BYTES


FULL_BYTES = 1 << 20  # under 1 MiB free: a failed write there is the disk being full


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], object]) -> None:
    """Call `write(f)` on a temp file beside `path`, fsync it, then rename it over `path`.

    A failed write leaves `path` as it was; its OSError names `path` (`write_error`: a full
    disk says ENOSPC even when the library writing raised its own error)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path.parent, e) from None
    host = socket.gethostname().replace(".", "_")
    _remove_stale_temps(path, host)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{host}.{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        mapped = write_error(path, e)
        if mapped is e:
            raise
        raise mapped from None
    _fsync_dir(path.parent)


def _umask() -> int:
    """This process's umask, read without changing it (Linux: /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _remove_stale_temps(path: Path, host: str) -> None:
    """Delete temp files of earlier writes of `path` whose process (on this host) is gone."""
    prefix = f".{path.name}.{host}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.unlink(path.parent / name)
            except OSError:
                pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically replace `path` with `text` (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically replace `path` with `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def replacing_folder(folder: str | Path) -> Iterator[Path]:
    """Write a whole output folder, then swap it in: a rerun replaces only its own folder.

    Yields a staging folder `.<name>.<host>.<pid>.new` beside `folder`; when the block ends
    without an exception, the staging folder takes `folder`'s place (the previous contents,
    files a new run no longer writes included, are removed after the swap). On an exception
    `folder` keeps what it held and the staging folder is removed: nothing written before is
    lost. Stale staging folders of dead processes (this host) are removed first.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().replace(".", "_")
    prefix = f".{folder.name}.{host}."
    for old in folder.parent.glob(prefix + "*"):
        pid = old.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}") and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    stage = folder.parent / f"{prefix}{os.getpid()}.new"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    retired = folder.parent / f"{prefix}{os.getpid()}.old"
    if folder.exists():
        os.replace(folder, retired)
    os.replace(stage, folder)
    _fsync_dir(folder.parent)
    shutil.rmtree(retired, ignore_errors=True)
