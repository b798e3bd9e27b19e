"""What a launch checks before it writes anything: the token store opens and holds the runs'
splits, the output is a folder, the SLURM partitions have the nodes and GPUs the runs ask
for (`sinfo`), and no run directory holds another config than the sweep now gives (a refused
launch changes nothing on disk and submits nothing)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from scaling.core.cli import InputError, RuntimeFailure
from scaling.core.config_io import ConfigError, Located, load_yaml
from scaling.data.token_store import TokenStore, TokenStoreError
from scaling.study.sweep.expand import Run
from scaling.study.sweep.sweep import Sweep
from scaling.training.config import load_run_config


class ConfigConflict(InputError):
    """A run directory holds another config than the sweep now gives for that run."""


def check_data(sweep: Sweep) -> None:
    """A sweep on an existing token store: the store must open; a tokenizer variant's
    existing VQVAE must be there (found now, not by the jobs)."""
    for t in sweep.tokenizers():
        if t.name is not None and t.checkpoint is not None and not t.checkpoint.is_file():
            where = _locate(sweep).where(("tokenizers", t.name, "checkpoint"))
            raise ConfigError(
                f"{where}: tokenizers.{t.name}.checkpoint: no VQVAE checkpoint at {t.checkpoint}"
            )
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


def partitions() -> dict[str, tuple[int, int]]:
    """{partition: (nodes, most GPUs on one of its nodes)} as `sinfo` reports them; the
    default partition is also under the key ''. Raises RuntimeFailure when sinfo fails."""
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%P|%N|%G"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeFailure(f"`sinfo` failed ({e}): cannot check the partitions") from None
    if proc.returncode != 0:
        raise RuntimeFailure(f"`sinfo` failed: {proc.stderr.strip()}: cannot check the partitions")
    nodes: dict[str, set[str]] = {}
    gpus: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        part, node, gres = (line.split("|") + ["", ""])[:3]
        names = [part.rstrip("*")] + ([""] if part.endswith("*") else [])
        count = sum(int(n) for n in re.findall(r"gpu(?::[^:,(]+)?:(\d+)", gres))
        for name in names:
            nodes.setdefault(name, set()).add(node)
            gpus[name] = max(gpus.get(name, 0), count)
    return {name: (len(nodes[name]), gpus[name]) for name in nodes}


def check_partitions(sweep: Sweep, runs: list[Run], offered: dict | None = None) -> None:
    """Before submitting to SLURM: every run's partition exists and has as many nodes as it
    asks for, with at least its `gpus_per_node` GPUs (`offered`: `partitions()`'s answer, read
    here when None). Raises ConfigError located at the sweep's cluster key."""
    offered = partitions() if offered is None else offered
    loc = _locate(sweep)
    for run in runs:
        res = run.resources
        part = res.partition or ""
        name = res.partition or "the default partition"
        if part not in offered:
            known = sorted(p for p in offered if p)
            raise ConfigError(
                f"{loc.where(('cluster', 'partition'))}: cluster.partition: run {run.run_id} "
                f"asks for partition {part!r}; sinfo knows {known}"
            )
        have_nodes, have_gpus = offered[part]
        if res.nodes > have_nodes:
            raise ConfigError(
                f"{loc.where(('cluster', 'nodes'))}: cluster.nodes: run {run.run_id} asks for "
                f"{res.nodes} nodes; {name} has {have_nodes} (sinfo)"
            )
        if res.gpus_per_node > have_gpus:
            raise ConfigError(
                f"{loc.where(('cluster', 'gpus_per_node'))}: cluster.gpus_per_node: run "
                f"{run.run_id} asks for {res.gpus_per_node} GPUs per node; the nodes of {name} "
                f"have at most {have_gpus} (sinfo)"
            )


def _locate(sweep: Sweep) -> Located:
    """Line locations of the sweep file (its name alone when it cannot be read again)."""
    try:
        return load_yaml(sweep.source)[1]
    except (OSError, ConfigError):
        return Located(str(sweep.source))
