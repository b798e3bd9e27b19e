"""The fit joins each run's tokenizer quality through its token store, and only a file
measured on that store's VQVAE."""

from __future__ import annotations

import json

import pandas as pd

from analysis.tokenizer import join_quality
from contracts.tokenizer import ScaleQuality, TokenizerQuality, write_quality
from scaling.core.provenance import sha256_file
from scaling.study.laws.fit import tokenizer_quality
from tests.factories import make_token_store


def _store(tmp_path, name: str, psnr: float, stale: bool = False, elsewhere: bool = False):
    store = make_token_store(tmp_path / name / "tokens", patch_nums=(1, 2), n_train=8, n_val=4)
    # a trained VQVAE beside the store; a checkpoint elsewhere is measured into vqvae/ there
    vqvae = tmp_path / name / ("ckpt" if elsewhere else "vqvae") / "vqvae.pt"
    vqvae.parent.mkdir(parents=True)
    vqvae.write_bytes(name.encode())
    meta = json.loads((store / "meta.json").read_text())
    meta["vqvae_path"], meta["vqvae_sha256"] = str(vqvae), sha256_file(vqvae)
    (store / "meta.json").write_text(json.dumps(meta))
    scales = [ScaleQuality(pn, pn * pn * 4, 3, 3 / 32, 1.0, 1.0 / 0.6931, 0.1) for pn in (1, 2)]
    write_quality(
        tmp_path / name / "vqvae" / "tokenizer_quality.json",
        TokenizerQuality(
            vqvae_sha256="0" * 64 if stale else sha256_file(vqvae),
            vqvae_path=str(vqvae),
            vocab_size=32,
            patch_nums=(1, 2),
            split="val",
            images=4,
            psnr=psnr,
            psnr_mean_colour=10.0,
            scales=tuple(scales),
        ),
    )
    return str(store)


def test_quality_is_joined_per_store_and_a_stale_file_is_not(tmp_path):
    a, b = _store(tmp_path, "a", 21.0), _store(tmp_path, "b", 25.0)
    stale = _store(tmp_path, "c", 30.0, stale=True)
    ckpt = _store(tmp_path, "d", 27.0, elsewhere=True)
    runs = ["r1", "r2", "r3", "r4", "r5"]
    raw = pd.DataFrame({"run": runs, "data.store": [a, b, a, stale, ckpt]})
    found = tokenizer_quality(raw)
    assert set(found) == {a, b, ckpt}  # the stale one measured another checkpoint
    joined = join_quality(raw, found)
    assert joined["tok_psnr"].tolist()[:3] == [21.0, 25.0, 21.0]
    assert pd.isna(joined["tok_psnr"].iloc[3]) and joined["tok_psnr"].iloc[4] == 27.0
    assert joined["tok_L"].iloc[0] == 5 and joined["run"].tolist() == runs
