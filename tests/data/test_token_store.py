"""Token store reading, mismatch refusal, TrainOrder and eval_batches (no model needed)."""

import json

import numpy as np
import pytest
import torch

from scaling.data.token_store import (
    FORMAT,
    ShardWriter,
    TokenStore,
    TokenStoreError,
    TokenStoreMismatch,
    TrainOrder,
    eval_batches,
    merge_split,
    shard_range,
    store_identity,
    write_meta,
)

PN = (1, 2, 3)
L = 14


def _make_store(path, n_train=10, n_val=7, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", n_train), ("val", n_val)):
        (path / split).mkdir(parents=True)
        tok = rng.integers(0, 300, (n, L)).astype(np.uint16)
        lab = rng.integers(0, 3, n).astype(np.int32)
        np.save(path / split / "tokens.npy", tok)
        np.save(path / split / "labels.npy", lab)
        data[split] = (tok, lab)
    identity = store_identity(
        vqvae_sha256="ab" * 32,
        vqvae_config={},
        vocab_size=300,
        patch_nums=PN,
        image_size=24,
        classes=["x", "y", "z"],
    )
    meta = write_meta(
        path,
        identity,
        {"train": {"count": n_train, "flip": False}, "val": {"count": n_val, "flip": False}},
    )
    assert meta["format"] == FORMAT and meta["L"] == L and meta["num_classes"] == 3
    return data


def test_open_gather_and_properties(tmp_path):
    data = _make_store(tmp_path)
    s = TokenStore(tmp_path)
    assert (s.vocab_size, s.patch_nums, s.L, s.num_classes) == (300, PN, L, 3)
    assert s.split_size("train") == 10 and s.split_size("val") == 7
    idx = np.array([7, 2, 2, 9])
    tok, lab = s.gather("train", idx)
    assert tok.dtype == torch.int64 and tok.shape == (4, L) and lab.dtype == torch.int64
    assert np.array_equal(tok.numpy(), data["train"][0][idx].astype(np.int64))
    assert np.array_equal(lab.numpy(), data["train"][1][idx])
    with pytest.raises(IndexError):
        s.gather("train", np.array([10]))
    with pytest.raises(TokenStoreError, match="no split 'test'"):
        s.split_size("test")


def test_mismatch_messages(tmp_path):
    _make_store(tmp_path)
    s = TokenStore(tmp_path)
    s.check_matches(vocab_size=300, patch_nums=[1, 2, 3], vqvae_sha256="ab" * 32)
    with pytest.raises(TokenStoreMismatch) as e:
        s.check_matches(vocab_size=4096, patch_nums=PN, source="run config")
    msg = str(e.value)
    assert (
        str(tmp_path) in msg
        and "vocab_size" in msg
        and "300" in msg
        and "4096" in msg
        and "run config" in msg
    )
    with pytest.raises(TokenStoreMismatch, match=r"patch_nums is \[1, 2, 3\] .* \[1, 2, 3, 4\]"):
        s.check_matches(vocab_size=300, patch_nums=(1, 2, 3, 4))
    with pytest.raises(TokenStoreMismatch, match="vqvae_sha256"):
        s.check_matches(vocab_size=300, patch_nums=PN, vqvae_sha256="cd" * 32)
    assert isinstance(e.value, ValueError)


def test_corrupt_or_missing_store(tmp_path):
    with pytest.raises(TokenStoreError, match="does not exist"):
        TokenStore(tmp_path / "none")
    _make_store(tmp_path)
    np.save(tmp_path / "val" / "tokens.npy", np.zeros((6, L), np.uint16))  # one row short
    with pytest.raises(
        TokenStoreError, match=r"val/tokens.npy: expected uint16 \[7, 14\], found uint16 \[6, 14\]"
    ):
        TokenStore(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(TokenStoreError, match="not valid JSON"):
        TokenStore(tmp_path)
    (tmp_path / "meta.json").unlink()
    with pytest.raises(TokenStoreError, match="meta.json is missing"):
        TokenStore(tmp_path)


def test_train_order_epochs_and_resume():
    o = TrainOrder(10, 3, seed=5)
    batches = [o.next() for _ in range(7)]  # 3 per epoch, tail of 1 dropped
    for e in range(2):
        perm = np.random.default_rng(5 + e).permutation(10)
        assert np.array_equal(np.concatenate(batches[3 * e : 3 * e + 3]), perm[:9])
    assert np.array_equal(batches[6], np.random.default_rng(7).permutation(10)[:3])
    # resume mid-stream continues exactly
    a = TrainOrder(10, 3, seed=5)
    for _ in range(4):
        a.next()
    state = a.state_dict()
    assert state == {"epoch": 1, "position": 1}
    b = TrainOrder(10, 3, seed=5)
    b.load_state_dict(json.loads(json.dumps(state)))
    assert all(np.array_equal(a.next(), b.next()) for _ in range(6))
    with pytest.raises(ValueError, match="cannot fill"):
        TrainOrder(2, 3, seed=0)


def test_eval_batches_cover_each_item_once(tmp_path):
    data = _make_store(tmp_path)
    s = TokenStore(tmp_path)
    seen = []
    for rank in range(3):
        for tok, _ in eval_batches(s, "val", 2, rank=rank, world_size=3):
            assert tok.shape[0] <= 2
            seen.append(tok)
    assert np.array_equal(torch.cat(seen).numpy(), data["val"][0].astype(np.int64))
    limited = torch.cat([t for t, _ in eval_batches(s, "val", 4, limit=5)])
    assert limited.shape[0] == 5


def test_shard_writer_resume_and_merge(tmp_path):
    total, rpi = 11, 2
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 500, (total * rpi, L)).astype(np.uint16)
    labels = np.repeat(np.arange(total, dtype=np.int32), rpi)
    for shard in range(2):
        start, end = shard_range(total, shard, 2)
        w = ShardWriter(
            tmp_path, "train", shard, 2, num_inputs=end - start, rows_per_input=rpi, L=L
        )
        pos = start
        while pos < end:
            k = min(2, end - pos)
            w.commit(rows[pos * rpi : (pos + k) * rpi], labels[pos * rpi : (pos + k) * rpi], k, [])
            pos += k
            if shard == 0 and pos == start + 2:
                # simulate a crash: reopen from disk and continue where the progress says
                w = ShardWriter(
                    tmp_path, "train", shard, 2, num_inputs=end - start, rows_per_input=rpi, L=L
                )
                assert w.inputs_done == 2 and w.rows == 4
        w.finish()
    out = merge_split(tmp_path, "train", 2, num_inputs=total, rows_per_input=rpi, L=L)
    assert out == {"count": total * rpi, "skipped": []}
    assert np.array_equal(np.load(tmp_path / "train" / "tokens.npy"), rows)
    assert np.array_equal(np.load(tmp_path / "train" / "labels.npy"), labels)
    assert not (tmp_path / "train" / "shards").exists()


def test_merge_refuses_unfinished_shards(tmp_path):
    w = ShardWriter(tmp_path, "val", 0, 2, num_inputs=3, rows_per_input=1, L=L)
    w.commit(np.zeros((3, L), np.uint16), np.zeros(3, np.int32), 3, [])
    w.finish()
    with pytest.raises(TokenStoreError, match=r"shards \[1\] of 2 are not finished"):
        merge_split(tmp_path, "val", 2, num_inputs=6, rows_per_input=1, L=L)
