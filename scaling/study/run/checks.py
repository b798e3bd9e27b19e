"""What a launch checks before it writes anything: the token store opens and holds the runs'
splits, the output is a folder, and no run directory holds another config than the sweep
now gives (a refused launch changes nothing on disk)."""

from __future__ import annotations

import os
from pathlib import Path

from scaling.core.cli import InputError
from scaling.core.config_io import ConfigError
from scaling.data.token_store import TokenStore, TokenStoreError
from scaling.study.sweep.expand import Run
from scaling.study.sweep.sweep import Sweep
from scaling.training.config import load_run_config


class ConfigConflict(InputError):
    """A run directory holds another config than the sweep now gives for that run."""


def check_data(sweep: Sweep) -> None:
    """A sweep on an existing token store: the store must open (found now, not by the jobs)."""
    if sweep.spec.data.tokens is None:
        return
    try:
        store = TokenStore(sweep.spec.data.tokens)
    except TokenStoreError as e:
        raise ConfigError(f"{sweep.source}: data.tokens: {e}") from None
    for run in sweep.runs:
        for key in ("train_split", "eval_split"):
            split = getattr(run.config.data, key)
            if split not in store.splits:
                raise ConfigError(
                    f"{sweep.source}: data.{key}: run {run.run_id} asks for split "
                    f"{split!r}; token store {store.path} has {store.splits}"
                )


def check_output(output: Path) -> None:
    """The sweep's output must be a folder (or not exist yet) that can be made and written:
    its nearest existing folder above is a folder, writable by this user."""
    if output.exists() and not output.is_dir():
        raise ConfigError(output_is_a_file(output))
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"output {output} (the sweep's `output:`): {existing} is a file, not a folder; "
            "give another output path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"output {output} (the sweep's `output:`): {existing} is not writable by this user; "
            "give another output path"
        )


def output_is_a_file(output: Path) -> str:
    """The message when the sweep's output exists as a file."""
    return (
        f"output {output} (the sweep's `output:`) is a file, not a folder; give another output path"
    )


def config_conflict(run: Run, state: str) -> str | None:
    """Why run.config may not be written to its run directory (None: it may).

    A run that was ever submitted keeps its config: a different one would mix two
    experiments in one directory (and resume one from the other's checkpoint).
    """
    path = run.run_dir / "config.yaml"
    if state == "pending" or not path.exists():
        return None
    try:
        same = load_run_config(path) == run.config
    except ConfigError:
        same = False
    if same:
        return None
    hint = (
        "relaunch with --retry-failed --reconfigure to keep the old files in "
        f"{run.run_dir / 'attempts'} and start over with the new config"
        if state in ("failed", "stopped", "orphaned")
        else "restore the sweep (a run that is done, queued or running keeps its config)"
    )
    return (
        f"{path} holds another config than the sweep now gives for run {run.run_id} "
        f"(state {state}); {hint}"
    )
