"""Tokenising a tiny synthetic set with a tiny VQVAE: exactness, shards, mismatch, resume."""

import json

import numpy as np
import pytest
import torch

import scaling.data.token_store as ts
import scaling.data.tokenize as tk
from scaling.core.provenance import sha256_file
from scaling.data.images import ImageFolder
from scaling.data.synthetic import generate
from scaling.data.token_store import TokenStore, TokenStoreError, TokenStoreMismatch
from tests.paths import FIXTURES
from var_core import VQVAE, load_vqvae, save_model

TINY = dict(
    vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 1), num_res_blocks=1, patch_nums=(1, 2, 4)
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    images = generate(
        root / "images", num_classes=3, train_per_class=5, val_per_class=2, resolution=8, seed=0
    )
    torch.manual_seed(0)
    ckpt = root / "vqvae.pt"
    save_model(ckpt, VQVAE(**TINY))
    other = root / "other.pt"
    save_model(other, VQVAE(**{**TINY, "patch_nums": (1, 2, 3, 4)}))
    return images, ckpt, other


def _expected(images, ckpt, split, flip):
    model = load_vqvae(ckpt)
    ds = ImageFolder(images / split, model.image_size, train=False)
    rows, labels = [], []
    for j in range(len(ds)):
        views = [ds.load(j), ds.load(j, flip=True)] if flip else [ds.load(j)]
        for x in views:
            rows.append(torch.cat(model.img_to_idx(x[None]), dim=1)[0])
            labels.append(ds.samples[j][1])
    return torch.stack(rows).numpy(), np.array(labels)


def test_store_equals_img_to_idx(data, tmp_path):
    images, ckpt, _ = data
    reports = []
    out = tk.tokenize(
        images,
        ckpt,
        tmp_path / "store",
        flip=True,
        batch_size=4,
        device="cpu",
        report=reports.append,
    )
    # progress after every batch, per split: images done of the split, images/s, ETA
    assert [(r["what"], r["done"], r["total"]) for r in reports] == [
        ("train shard 0-of-1", n, 15) for n in (4, 8, 12, 15)
    ] + [("val shard 0-of-1", n, 6) for n in (4, 6)]
    assert all(r["rate"] > 0 for r in reports) and reports[-1]["eta_s"] == 0
    store = TokenStore(out)
    assert store.patch_nums == (1, 2, 4) and store.L == 21 and store.vocab_size == 64
    assert store.classes == ["class_000", "class_001", "class_002"]
    assert store.meta["vqvae_sha256"] == sha256_file(ckpt)
    center = ts.TRANSFORM_TEXT["center_crop"]
    assert store.meta["splits"]["train"] == {
        "count": 30,
        "images": 15,
        "views": 1,
        "flip": True,
        "transform": "center_crop",
        "transform_text": center,
        "view_seed": 0,
        "skipped": 0,
    }
    assert store.meta["splits"]["val"] == {
        "count": 6,
        "images": 6,
        "views": 1,
        "flip": False,
        "transform": "center_crop",
        "transform_text": center,
        "view_seed": 0,
        "skipped": 0,
    }
    assert store.split_images("train") == 15 and store.rows_per_image("train") == 2
    for split, flip in (("train", True), ("val", False)):
        rows, labels = _expected(images, ckpt, split, flip)
        tok, lab = store.gather(split, np.arange(store.split_size(split)))
        assert np.array_equal(tok.numpy(), rows) and np.array_equal(lab.numpy(), labels)
    # rows 2j and 2j+1 (image and mirror) differ somewhere: the flip copies are real
    tok, _ = store.gather("train", np.arange(30))
    assert (tok[0::2] != tok[1::2]).any()
    # a second run is a no-op that keeps the store
    before = (out / "train" / "tokens.npy").read_bytes()
    tk.tokenize(images, ckpt, out, flip=True, batch_size=4, device="cpu")
    assert (out / "train" / "tokens.npy").read_bytes() == before


def test_shards_then_merge_equal_one_shot(data, tmp_path, monkeypatch):
    images, ckpt, _ = data
    one = tk.tokenize(images, ckpt, tmp_path / "one", batch_size=3, device="cpu")
    sharded = tmp_path / "sharded"
    for i in (2, 0):  # out of order, one shard missing
        tk.tokenize(images, ckpt, sharded, shard=i, num_shards=3, batch_size=3, device="cpu")
    with pytest.raises(TokenStoreError, match=r"shards \[1\] of 3 are not finished"):
        tk.tokenize(images, ckpt, sharded, merge_only=True, num_shards=3, device="cpu")
    with pytest.raises(TokenStoreError, match="meta.json is missing"):
        TokenStore(sharded)
    tk.tokenize(images, ckpt, sharded, shard=1, num_shards=3, batch_size=3, device="cpu")

    def no_encode(model, x):
        raise AssertionError("a finished shard was encoded again")

    with monkeypatch.context() as m:  # re-running finished shards encodes nothing
        m.setattr(tk, "encode", no_encode)
        tk.tokenize(images, ckpt, sharded, shard=0, num_shards=3, batch_size=3, device="cpu")
    tk.tokenize(images, ckpt, sharded, merge_only=True, num_shards=3, device="cpu")
    for split in ("train", "val"):
        for name in ("tokens.npy", "labels.npy"):
            assert np.array_equal(np.load(one / split / name), np.load(sharded / split / name))
    assert json.loads((one / "meta.json").read_text()) == json.loads(
        (sharded / "meta.json").read_text()
    )


def test_mismatched_store_refused(data, tmp_path):
    images, ckpt, other = data
    out = tk.tokenize(images, ckpt, tmp_path / "s", splits=["val"], device="cpu")
    with pytest.raises(
        TokenStoreMismatch,
        match=r"patch_nums is \[1, 2, 4\] but the VQVAE .*other.pt expects \[1, 2, 3, 4\]",
    ):
        tk.tokenize(images, other, out, splits=["val"], device="cpu")
    # a shard run into a store being written with another shard count is refused too
    tk.tokenize(images, ckpt, tmp_path / "p", splits=["val"], shard=0, num_shards=2, device="cpu")
    with pytest.raises(TokenStoreMismatch, match="splits.val.num_shards is 2 .* expects 3"):
        tk.tokenize(
            images, ckpt, tmp_path / "p", splits=["val"], shard=0, num_shards=3, device="cpu"
        )
    # the reader side: the trainer's check names the field and both values
    with pytest.raises(TokenStoreMismatch, match="vocab_size is 64 but the config expects 4096"):
        TokenStore(out).check_matches(vocab_size=4096, patch_nums=(1, 2, 4))


def test_interrupted_tokenisation_resumes(data, tmp_path, monkeypatch):
    images, ckpt, _ = data
    ref = tk.tokenize(images, ckpt, tmp_path / "ref", flip=True, batch_size=2, device="cpu")
    out = tmp_path / "int"
    real_encode, calls = tk.encode, {"n": 0}

    def dying_encode(model, x):  # crash while encoding the 4th batch
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated kill")
        return real_encode(model, x)

    monkeypatch.setattr(tk, "encode", dying_encode)
    with pytest.raises(KeyboardInterrupt):
        tk.tokenize(images, ckpt, out, flip=True, batch_size=2, device="cpu")
    prog = json.loads((out / "train" / "shards" / "0-of-1" / "progress.json").read_text())
    assert prog == {"inputs_done": 6, "rows": 12, "skipped": []}

    # crash after the rows were flushed but before progress.json was replaced
    real_write, writes = ts.atomic_write_json, {"n": 0}

    def dying_write(path, obj):
        if path.name == "progress.json":
            writes["n"] += 1
            if writes["n"] == 2:
                raise KeyboardInterrupt("simulated kill")
        return real_write(path, obj)

    monkeypatch.setattr(tk, "encode", real_encode)
    monkeypatch.setattr(ts, "atomic_write_json", dying_write)
    with pytest.raises(KeyboardInterrupt):
        tk.tokenize(images, ckpt, out, flip=True, batch_size=2, device="cpu")
    prog = json.loads((out / "train" / "shards" / "0-of-1" / "progress.json").read_text())
    assert (
        prog["inputs_done"] == 8
    )  # one chunk committed, the next one's rows are on disk but not counted

    monkeypatch.setattr(ts, "atomic_write_json", real_write)
    tk.tokenize(images, ckpt, out, flip=True, batch_size=2, device="cpu")
    for split in ("train", "val"):
        for name in ("tokens.npy", "labels.npy"):
            assert np.array_equal(np.load(ref / split / name), np.load(out / split / name))


def test_corrupt_image_skipped_and_counted(data, tmp_path):
    images, ckpt, _ = data
    import shutil

    copy = tmp_path / "images"
    shutil.copytree(images, copy)
    bad = copy / "val" / "class_001" / "000000.png"
    bad.write_bytes(bad.read_bytes()[:40])
    out = tk.tokenize(copy, ckpt, tmp_path / "s", splits=["val"], device="cpu")
    store = TokenStore(out)
    assert {k: store.meta["splits"]["val"][k] for k in ("count", "images", "flip", "skipped")} == {
        "count": 5,
        "images": 5,
        "flip": False,
        "skipped": 1,
    }
    assert store.gather("val", np.arange(5))[1].tolist() == [0, 0, 1, 2, 2]


def test_official_flat_checkpoint(tmp_path):
    """An official-layout (flat state dict) VQVAE file tokenises; tokens = the official code's."""

    from PIL import Image

    fx = torch.load(FIXTURES / "official_var_tiny.pt", weights_only=True)
    ckpt = tmp_path / "vae_tiny.pth"
    torch.save(fx["vqvae_state_dict"], ckpt)  # the official release is a flat state dict
    model = load_vqvae(ckpt)
    # the encode path used by the tokenizer reproduces the official indices (test vectors)
    official = torch.cat([t.reshape(2, -1) for t in fx["idx"]], dim=1)
    assert torch.equal(tk.encode(model, fx["images"].float()), official)
    # and a store made from a file on disk matches img_to_idx of the same loaded image
    (tmp_path / "img" / "val" / "n0").mkdir(parents=True)
    arr = (
        ((fx["images"][0].permute(1, 2, 0).numpy() + 1) * 127.5)
        .round()
        .clip(0, 255)
        .astype(np.uint8)
    )
    Image.fromarray(arr).save(tmp_path / "img" / "val" / "n0" / "a.png")
    out = tk.tokenize(tmp_path / "img", ckpt, tmp_path / "store", splits=["val"], device="cpu")
    store = TokenStore(out)
    assert store.L == 680 and store.vocab_size == 512 and store.meta["image_size"] == 256
    x = ImageFolder(tmp_path / "img" / "val", 256, train=False).load(0)
    assert torch.equal(store.gather("val", np.array([0]))[0][0], tk.encode(model, x[None])[0])


def test_vocab_too_large_for_uint16_refused(data, tmp_path):
    images, _, _ = data
    big = tmp_path / "big.pt"
    save_model(big, VQVAE(**{**TINY, "vocab_size": 65537}))
    with pytest.raises(ValueError, match="vocab_size 65537 does not fit the store's uint16 tokens"):
        tk.tokenize(images, big, tmp_path / "s", device="cpu")
