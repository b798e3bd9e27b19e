"""The token store carries its VQVAE's quantizer: training needs no VQVAE in the loop."""

from __future__ import annotations

import pytest
import torch

from scaling.data.synthetic import generate
from scaling.data.token_store import TokenStore, TokenStoreError, load_quantizer
from scaling.data.tokenize import tokenize
from scaling.training.inputs import split_scales
from var_core import VQVAE, save_model


def test_store_quantizer_gives_the_vqvaes_teacher_forcing_input(tmp_path):
    generate(
        tmp_path / "images",
        num_classes=2,
        train_per_class=3,
        val_per_class=2,
        resolution=32,
        seed=0,
    )
    torch.manual_seed(0)
    vqvae = VQVAE(
        vocab_size=64,
        z_channels=8,
        ch=32,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks=1,
        patch_nums=(1, 2, 4),
    ).eval()
    save_model(tmp_path / "vqvae.pt", vqvae)
    tokenize(
        tmp_path / "images", tmp_path / "vqvae.pt", tmp_path / "store", batch_size=4, device="cpu"
    )
    store = TokenStore(tmp_path / "store")
    quantizer = load_quantizer(store.path)
    assert not quantizer.training and not any(p.requires_grad for p in quantizer.parameters())
    tokens, _ = store.gather("train", torch.arange(6).numpy())
    idx = split_scales(tokens, store.patch_nums)
    with torch.no_grad():
        expected = vqvae.idx_to_var_input(idx)
        got = quantizer.idx_to_var_input(idx)
    assert got.shape == (6, 1 + 4 + 16 - 1, 8)  # [B, L-1, Cvae]
    assert torch.equal(got, expected)


def test_store_without_quantizer_is_refused_with_the_fix(tmp_path):
    (tmp_path / "store").mkdir()
    with pytest.raises(TokenStoreError, match="quantizer.pt is missing .*scaling.tokenize"):
        load_quantizer(tmp_path / "store")
