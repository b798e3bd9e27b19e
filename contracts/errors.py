"""The one error and the one warning of the stage contracts."""

from __future__ import annotations

from pathlib import Path


class ContractError(ValueError):
    """A stage file cannot be read as its contract says; the message names the file and, for a
    line-based file, the line (``path:line: what is wrong``). Bad input: exit status 2."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path, self.line = Path(path), line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class ContractWarning(UserWarning):
    """Something of a stage file was skipped (a torn last line of an append-only log)."""
