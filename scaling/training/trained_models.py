"""Trained models of a run directory, for sampling and analysis (notebooks, scripts)."""

from __future__ import annotations

from pathlib import Path

import torch

from scaling.core.provenance import sha256_file
from scaling.core.rundir import RunDir
from scaling.core.safe_load import CheckpointError, load_checkpoint_file
from scaling.data.token_store import TokenStore, TokenStoreError
from scaling.training.budget import var_kwargs_from_store
from scaling.training.config import load_run_config
from var_core import VAR, load_into, load_vqvae


class NoCheckpoint(CheckpointError, FileNotFoundError):
    """The run has no checkpoint.pt yet (an input error for the CLIs: exit 2)."""


def load_run_var(run_dir: str | Path, device: str | torch.device = "cpu"):
    """The VAR of a run at its latest checkpoint, in eval mode. Returns (var, config)."""
    run = RunDir(run_dir)
    config = load_run_config(run.config)
    if not run.checkpoint.exists():
        raise NoCheckpoint(f"{run.checkpoint}: the run has no checkpoint yet")
    state = load_checkpoint_file(run.checkpoint, "training checkpoint")
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{run.checkpoint}: not a training checkpoint (no model state)")
    store = TokenStore(config.data.store)
    var = VAR(**var_kwargs_from_store(config.model, store.meta))
    load_into(var, state["model"], source=str(run.checkpoint))
    return var.to(device).eval(), config


def load_store_vqvae(store_path: str | Path, device: str | torch.device = "cpu"):
    """The VQVAE that made a token store (from meta.json's vqvae_path, checked by sha256)."""
    store = TokenStore(store_path)
    path = store.meta.get("vqvae_path")
    if not path or not Path(path).is_file():
        raise TokenStoreError(
            f"token store {store.path}: its VQVAE checkpoint {path!r} is not "
            f"available (meta.json vqvae_path); decoding needs it"
        )
    if sha256_file(path) != store.meta["vqvae_sha256"]:
        raise TokenStoreError(
            f"token store {store.path}: {path} is not the VQVAE that made the "
            f"store (sha256 differs)"
        )
    return load_vqvae(path).to(device).eval()
