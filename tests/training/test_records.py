"""The metrics record's compute columns and the VAR kwargs of a store, against hand counts
(torch-free: these are what the launcher's estimates use)."""

from __future__ import annotations

import pytest

from scaling.data.token_store import TokenStoreError
from scaling.training import records
from scaling.training.config import (
    DataConfig,
    EvalConfig,
    LengthConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    estimate,
    var_kwargs_from_store,
)

META = {
    "num_classes": 4,
    "vocab_size": 32,
    "patch_nums": [1, 2, 3],
    "vqvae_config": {"z_channels": 16},
    "splits": {"train": {"count": 256, "images": 256}, "val": {"count": 64}},
}


def _config(**length) -> RunConfig:
    return RunConfig(
        run_id="r",
        data=DataConfig(store="s"),
        model=ModelConfig(depth=2, width=32, heads=2),
        optim=OptimConfig(batch_size=16),
        length=LengthConfig(**length),
        eval=EvalConfig(points=2),
    )


def test_progress_by_hand():
    counts = records.ImageCounts(params=100, tokens=14, forward_flops=7, train_flops=21)
    assert records.progress(10, 16, counts) == dict(
        step=10, images=160, tokens=2240, flops=3360, flops_6nd=6 * 100 * 2240
    )
    assert records.epochs(total_steps=32, batch_size=16, train_images=256) == 2.0


def test_var_kwargs_come_from_the_store_meta():
    kw = var_kwargs_from_store(ModelConfig(depth=2, width=32, heads=2), META)
    assert (kw["num_classes"], kw["vocab_size"], kw["z_channels"], kw["patch_nums"]) == (
        4,
        32,
        16,
        (1, 2, 3),
    )


@pytest.mark.parametrize("drop", ["vqvae_config", "z_channels", "num_classes"])
def test_a_meta_without_a_model_key_is_an_error_naming_it(drop):
    meta = {k: v for k, v in META.items() if k != drop}
    if drop == "z_channels":
        meta["vqvae_config"] = {}
    name = "num_classes" if drop == "num_classes" else "vqvae_config.z_channels"
    with pytest.raises(TokenStoreError, match=f"meta.json lacks {name}"):
        var_kwargs_from_store(ModelConfig(depth=2), meta)
    with pytest.raises(TokenStoreError, match=f"meta.json lacks {name}"):  # no silent default
        estimate(_config(steps=10), meta)


def test_estimate_counts_the_stores_code_width():
    """z_channels enters only word_embed: 2 (L - n_1) z C forward FLOPs per image, x3 to train."""
    z16 = estimate(_config(steps=10), META)
    z32 = estimate(_config(steps=10), {**META, "vqvae_config": {"z_channels": 32}})
    L, C, images = 14, 32, 10 * 16
    assert z32["flops"] - z16["flops"] == 3 * 2 * (L - 1) * (32 - 16) * C * images
    assert z32["params"] - z16["params"] == (32 - 16) * C  # word_embed's weight
    assert z16["tokens"] == images * L and z16["epochs"] == images / 256
