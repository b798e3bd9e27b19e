"""Reading checkpoints: tensors only, errors that name the file, never a suggestion to unpickle.

`load_checkpoint_file(path, what)` is torch.load(weights_only=True) with the failure modes
turned into `CheckpointError` naming the file and what it should have been: missing, empty,
truncated or not a torch file, and a file that holds other objects than tensors and plain
data (a pickle that would run code when unpickled: it is refused, and nothing in it runs).
torch's own message on that last case advises `weights_only=False`; this toolkit never does.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from scaling.core.cli import InputError


class CheckpointError(InputError):
    """A checkpoint file cannot be used; the message names it."""


def load_checkpoint_file(path: str | Path, what: str = "checkpoint") -> Any:
    """torch.load(path, map_location='cpu', weights_only=True), with located errors."""
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if size == 0:
        raise CheckpointError(
            f"{path}: the {what} is empty (0 bytes; a copy or write that did not finish?)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        detail = next((ln for ln in first if "Unsupported global" in ln or "GLOBAL" in ln), "")
        raise CheckpointError(
            f"{path}: refusing to load the {what}: it holds Python objects other than tensors "
            f"and plain data, which could run code when unpickled; nothing in it was run"
            + (f" ({detail.strip()[:160]})" if detail else "")
            + ". Use a checkpoint written by "
            "this toolkit."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointError(
            f"{path}: not a readable {what} (truncated or not a torch file: {reason})"
        ) from None
