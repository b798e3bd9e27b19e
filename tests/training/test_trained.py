"""Loading a run's trained model and its store's VQVAE (what the samples notebook uses)."""

from __future__ import annotations

import json

import pytest
import torch

from scaling.data.token_store import TokenStoreError
from scaling.training.job import train_run
from scaling.training.trained_models import load_run_var, load_store_vqvae
from tests.factories import make_token_store, tiny_run_config, write_run


def test_trained_var_is_the_checkpointed_one(tmp_path):
    store = make_token_store(tmp_path / "store")
    run_dir = write_run(tmp_path / "run", tiny_run_config(store, steps=4, eval_points=1))
    with pytest.raises(FileNotFoundError, match="checkpoint.pt: the run has no checkpoint yet"):
        load_run_var(run_dir)
    train_run(run_dir)
    var, config = load_run_var(run_dir)
    assert not var.training and config.run_id == "tiny"
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in var.state_dict().items())


def test_store_vqvae_must_exist_and_match_the_store(tmp_path):
    store = make_token_store(tmp_path / "store")  # its meta names no VQVAE file
    with pytest.raises(TokenStoreError, match="its VQVAE checkpoint None is not available"):
        load_store_vqvae(store)
    other = tmp_path / "other.pt"
    other.write_bytes(b"not the VQVAE that made the store")
    meta = json.loads((store / "meta.json").read_text())
    (store / "meta.json").write_text(json.dumps({**meta, "vqvae_path": str(other)}))
    with pytest.raises(TokenStoreError, match="is not the VQVAE that made the store"):
        load_store_vqvae(store)
