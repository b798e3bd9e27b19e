"""Trained models of a run directory, for sampling and analysis (notebooks, scripts)."""

from __future__ import annotations

from pathlib import Path

import torch

from scaling.training.config import load_run_config
from scaling.core.rundir import RunDir
from scaling.data.token_store import TokenStore, TokenStoreError


def load_run_var(run_dir: str | Path, device: str | torch.device = "cpu"):
    """The VAR of a run at its latest checkpoint, in eval mode. Returns (var, config)."""
    from var_core import VAR, load_into

    run = RunDir(run_dir)
    config = load_run_config(run.config)
    if not run.checkpoint.exists():
        raise FileNotFoundError(f"{run.checkpoint}: the run has no checkpoint yet")
    state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    store = TokenStore(config.data.store)
    var = VAR(**config.model.var_kwargs(
        num_classes=store.num_classes, vocab_size=store.vocab_size,
        z_channels=int(store.meta["vqvae_config"]["z_channels"]), patch_nums=tuple(store.patch_nums)))
    load_into(var, state["model"], source=str(run.checkpoint))
    return var.to(device).eval(), config


def load_store_vqvae(store_path: str | Path, device: str | torch.device = "cpu"):
    """The VQVAE that made a token store (from meta.json's vqvae_path, checked by sha256)."""
    from var_core import load_vqvae

    from scaling.core.provenance import sha256_file

    store = TokenStore(store_path)
    path = store.meta.get("vqvae_path")
    if not path or not Path(path).is_file():
        raise TokenStoreError(f"token store {store.path}: its VQVAE checkpoint {path!r} is not "
                              f"available (meta.json vqvae_path); decoding needs it")
    if sha256_file(path) != store.meta["vqvae_sha256"]:
        raise TokenStoreError(f"token store {store.path}: {path} is not the VQVAE that made the "
                              f"store (sha256 differs)")
    return load_vqvae(path).to(device).eval()
