"""Augmented views in the token store: the official training transform, stored K times per
image, drawn once per image per epoch; budgets count images, never views."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import scaling.data.tokenize as tk
import scaling.study.run.launch as launch_mod
from scaling.core.config_io import ConfigError, InvalidValue
from scaling.core.rundir import RunDir
from scaling.data.images import ImageFolder, load_rgb, resize_shorter, to_tensor_pm1
from scaling.data.synthetic import generate
from scaling.data.token_store import TokenStore, TokenStoreError, TokenStoreMismatch, draw_views
from scaling.training.budget import run_budget
from scaling.training.config import (
    DataConfig,
    LengthConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
)
from tests.factories import line_of, make_token_store, tiny_run_config, write_sweep
from tests.paths import ROOT
from var_core import VQVAE, load_vqvae, save_model

TINY = dict(
    vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 1), num_res_blocks=1, patch_nums=(1, 2, 4)
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    # 12 px images for a 8 px VQVAE: the 1.125x resize gives 9 px, so crops have 2x2 offsets
    images = generate(
        root / "images", num_classes=3, train_per_class=4, val_per_class=2, resolution=12, seed=0
    )
    torch.manual_seed(0)
    ckpt = root / "vqvae.pt"
    save_model(ckpt, VQVAE(**TINY))
    return images, ckpt


def test_views_are_the_training_transform_seeded_and_shard_independent(data, tmp_path):
    images, ckpt = data
    out = tk.tokenize(
        images, ckpt, tmp_path / "k3", views=3, view_seed=7, batch_size=5, device="cpu"
    )
    store = TokenStore(out)
    train = store.meta["splits"]["train"]
    assert {
        k: train[k] for k in ("count", "images", "views", "flip", "transform", "view_seed")
    } == {
        "count": 36,
        "images": 12,
        "views": 3,
        "flip": False,
        "transform": "random_crop",
        "view_seed": 7,
    }
    assert "random crop" in train["transform_text"]
    val = store.meta["splits"]["val"]
    assert (val["views"], val["count"], val["transform"]) == (1, 6, "center_crop")
    # rows 3j..3j+2 are img_to_idx of three random crops of the 9 px resize, drawn from (7, j, v)
    model = load_vqvae(ckpt)
    ds = ImageFolder(images / "train", model.image_size, train=True)
    tok, lab = store.gather("train", np.arange(36))
    offsets = set()
    for j in range(12):
        img = resize_shorter(load_rgb(ds.samples[j][0]), 9)
        for v in range(3):
            rng = np.random.default_rng([7, j, v])
            top, left = (
                int(rng.integers(0, img.size[1] - 8 + 1)),
                int(rng.integers(0, img.size[0] - 8 + 1)),
            )
            offsets.add((top, left))
            x = to_tensor_pm1(img.crop((left, top, left + 8, top + 8)))[None]
            assert torch.equal(tok[3 * j + v], torch.cat(model.img_to_idx(x), dim=1)[0]), (j, v)
            assert lab[3 * j + v] == ds.samples[j][1]
    assert len(offsets) > 1  # the crops really move
    # sharded (out of order) and merged: the very same bytes
    sharded = tmp_path / "sharded"
    for i in (1, 0):
        tk.tokenize(
            images,
            ckpt,
            sharded,
            views=3,
            view_seed=7,
            shard=i,
            num_shards=2,
            batch_size=2,
            device="cpu",
        )
    tk.tokenize(
        images, ckpt, sharded, views=3, view_seed=7, merge_only=True, num_shards=2, device="cpu"
    )
    assert (sharded / "train" / "tokens.npy").read_bytes() == (
        out / "train" / "tokens.npy"
    ).read_bytes()


def test_bad_views_are_clear_errors(data, tmp_path):
    images, ckpt = data
    for bad in (0, -2):
        with pytest.raises(
            ValueError, match=r"--views must be a whole number >= 1.*got " + str(bad)
        ):
            tk.tokenize(images, ckpt, tmp_path / "s", views=bad, device="cpu")
    with pytest.raises(ValueError, match=r"apply to the train split only.*\['val'\]"):
        tk.tokenize(images, ckpt, tmp_path / "s", views=2, splits=["val"], device="cpu")
    assert (
        tk.main(
            [
                "--images",
                str(images),
                "--vqvae",
                str(ckpt),
                "--out",
                str(tmp_path / "s"),
                "--views",
                "0",
            ]
        )
        == 2
    )
    # a store being made with 2 views cannot be continued with 3
    tk.tokenize(images, ckpt, tmp_path / "p", views=2, shard=0, num_shards=2, device="cpu")
    with pytest.raises(TokenStoreMismatch, match=r"splits.train.views is 2 .* expects 3"):
        tk.tokenize(images, ckpt, tmp_path / "p", views=3, shard=1, num_shards=2, device="cpu")
    assert not (tmp_path / "s").exists() or not (tmp_path / "s" / "meta.json").exists()


def test_draw_views_is_a_uniform_function_of_seed_epoch_image():
    images = np.arange(20000)
    a = draw_views(3, 5, images, 4)
    assert a.dtype == np.int64 and a.min() == 0 and a.max() == 3
    # the same (seed, epoch, image) gives the same view whatever batch it comes in
    perm = np.random.default_rng(0).permutation(images)
    assert np.array_equal(draw_views(3, 5, perm, 4), a[perm])
    counts = np.bincount(a, minlength=4) / len(a)
    assert np.abs(counts - 0.25).max() < 0.015  # 4.5 sigma at n = 20000
    assert (draw_views(3, 6, images, 4) != a).mean() == pytest.approx(0.75, abs=0.02)
    assert (draw_views(4, 5, images, 4) != a).mean() == pytest.approx(0.75, abs=0.02)
    # over epochs, one image visits every view about equally often
    per_image = np.array([draw_views(0, e, np.array([17]), 3)[0] for e in range(3000)])
    assert np.abs(np.bincount(per_image, minlength=3) / 3000 - 1 / 3).max() < 0.04


def _views_store(path: Path, views: int, flip: bool = False, n_images: int = 64) -> Path:
    """A factory store whose train split is relabelled as `views` views (x2 flips) per image."""
    R = views * (2 if flip else 1)
    make_token_store(path, n_train=n_images * R)
    meta = json.loads((path / "meta.json").read_text())
    meta["splits"]["train"].update(
        images=n_images,
        views=views,
        flip=flip,
        transform="center_crop" if views == 1 else "random_crop",
    )
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def test_trainer_draws_one_view_per_image_and_counts_images(tmp_path):
    from scaling.training.distributed import DistInfo
    from scaling.training.trainer import Trainer

    store = _views_store(tmp_path / "store", views=4)
    config = dataclasses.replace(
        tiny_run_config(store, batch=32, eval_points=1),
        length=LengthConfig(epochs=3),
        data=DataConfig(store=store, views=4),
    )
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    for draw in ("independent", "permutation"):
        config = dataclasses.replace(
            config,
            data=DataConfig(store=store, views=4, view_draw=draw),
            length=LengthConfig(epochs=4),
        )
        trainer = Trainer(config, run, DistInfo(0, 1, 0, torch.device("cpu")))
        assert trainer.train_size == 64 and trainer.total_steps == 4 * 64 // 32  # images, not rows
        seen = []
        orig = trainer.store.gather

        def spy(split, idx, orig=orig, seen=seen):
            if split == "train":
                seen.append(np.asarray(idx).copy())
            return orig(split, idx)

        trainer.store.gather = spy
        for _ in range(trainer.total_steps):
            trainer.train_step()
        rows = np.concatenate(seen)
        views = np.zeros((64, 4), dtype=int)  # image -> the view it read in each epoch
        for epoch in range(4):
            block = rows[epoch * 64 : (epoch + 1) * 64]
            assert sorted(block // 4) == list(range(64))  # every image exactly once per epoch
            views[block // 4, epoch] = block % 4
        if draw == "independent":
            # the counter-based draw of (seed, epoch, image)
            for epoch in range(4):
                assert np.array_equal(
                    views[:, epoch], draw_views(config.seed, epoch, np.arange(64), 4)
                )
            # with replacement: some image reads a view twice in 4 epochs (1 - 4!/4^4 each)
            assert any(len(set(v)) < 4 for v in views.tolist())
        else:  # without replacement: 4 epochs read each image's 4 views once each
            assert all(sorted(v) == [0, 1, 2, 3] for v in views.tolist())


def test_store_views_flips_and_transform_are_checked_against_the_run(tmp_path):
    from scaling.training.distributed import DistInfo
    from scaling.training.trainer import Trainer

    store = _views_store(tmp_path / "store", views=4)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    dist = DistInfo(0, 1, 0, torch.device("cpu"))
    for field, kwargs, stored, wanted in (
        ("views", dict(views=2), "4", "2"),
        ("flip", dict(flip=True), "False", "True"),
        ("transform", dict(transform="center_crop"), "'random_crop'", "'center_crop'"),
    ):
        config = dataclasses.replace(tiny_run_config(store), data=DataConfig(store=store, **kwargs))
        with pytest.raises(
            TokenStoreMismatch,
            match=rf"splits.train.{field} is {stored} but .* "
            rf"expects {wanted}",
        ):
            Trainer(config, run, dist)
    # an evaluation split holding views is refused
    bad = _views_store(tmp_path / "bad", views=1)
    meta = json.loads((bad / "meta.json").read_text())
    meta["splits"]["val"].update(views=2, images=32)
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TokenStoreError, match="evaluation split 'val' holds 2 rows per image"):
        Trainer(tiny_run_config(bad), run, dist)
    with pytest.raises(InvalidValue, match="whole number >= 1") as e:
        DataConfig(store=store, views=0)
    assert e.value.field == "views"
    from scaling.training.config import load_run_config

    path = tmp_path / "config.yaml"
    path.write_text(f"run_id: r\ndata:\n  store: {store}\n  views: -3\n")
    with pytest.raises(ConfigError, match=r"config.yaml:4.*data.views.*got -3"):
        load_run_config(path)


D16_TOKENS = 174_238_586_880  # round(200 x 1,281,167 / 768) = 333,637 steps x 768 images x 680


def test_budgets_count_images_not_views():
    expect = {
        "num_classes": 1000,
        "vocab_size": 4096,
        "patch_nums": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16],
        "vqvae_config": {"z_channels": 32},
        "splits": {"train": {"count": 1_281_167}},
    }
    store = json.loads(json.dumps(expect))
    store["splits"]["train"] = {
        "count": 1_281_167 * 8 * 2,
        "images": 1_281_167,
        "views": 8,
        "flip": True,
    }
    legacy_flip = json.loads(json.dumps(expect))
    legacy_flip["splits"]["train"] = {"count": 2 * 1_281_167, "flip": True}  # before views existed
    config = RunConfig(
        run_id="d16",
        data=DataConfig(store=Path("/x")),
        model=ModelConfig(depth=16),
        optim=OptimConfig(batch_size=768),
        length=LengthConfig(epochs=200),
    )
    a, b, c = (run_budget(config, m) for m in (expect, store, legacy_flip))
    counted = [(x.steps, x.images, x.tokens, x.flops, x.epochs, x.train_images) for x in (a, b, c)]
    assert counted[0] == counted[1] == counted[2]
    assert a.tokens == D16_TOKENS == round(200 * 1_281_167 / 768) * 768 * 680
    assert a.tokens == pytest.approx(200 * 1_281_167 * 680, rel=1e-5)  # the paper's 174.2B
    # passes count stored sequences: 8 views x 2 flips, 2 flip copies, 1 sequence per image
    assert (a.passes, b.passes, c.passes) == (a.epochs, a.epochs / 16, a.epochs / 2)


def _dry_run_rows(argv, capsys) -> dict[str, list[str]]:
    assert launch_mod.main(argv) == 0
    printed = capsys.readouterr()
    text = printed.out + printed.err  # the table on stdout, its warning on stderr
    return {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line.split() and line.split()[0][:1] == "d" and line.split()[0][1:].isdigit()
    }, text


def test_dry_run_prints_the_same_budgets_before_and_after_the_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    grid = (ROOT / "sweeps" / "depth_grid.yaml").read_text()
    store = tmp_path / "tokens"
    sweep = tmp_path / "grid.yaml"
    sweep.write_text(grid.replace("tokens: /datasets/imagenet256-var-tokens", f"tokens: {store}"))
    before, _ = _dry_run_rows([str(sweep), "--dry-run"], capsys)
    store.mkdir()
    meta = {
        "format": "var-token-store/1",
        "num_classes": 1000,
        "vocab_size": 4096,
        "patch_nums": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16],
        "vqvae_config": {"z_channels": 32},
        "splits": {
            "train": {"count": 1_281_167 * 88, "images": 1_281_167, "views": 88, "flip": False},
            "val": {"count": 50_000},
        },
    }
    (store / "meta.json").write_text(json.dumps(meta))
    after, text = _dry_run_rows([str(sweep), "--dry-run"], capsys)
    assert before == after and len(before) == 12
    assert before["d16"][3] == "174G" and before["d30"][3] == "305G"
    assert "not made yet" not in text and "repeated data" not in text  # 350 / 88 <= 4
    # one centre crop per image: 200-350 passes over the same tokens, which the launcher says
    meta["splits"]["train"].update(count=1_281_167, views=1)
    (store / "meta.json").write_text(json.dumps(meta))
    again, text = _dry_run_rows([str(sweep), "--dry-run"], capsys)
    assert again == before
    assert "repeated data is the likely regime: 12 of 12 runs" in text and "d16 200" in text
    assert "Muennighoff" in text
    # D'/D under the language R* = 15.4, by hand: 200 epochs of one view, R = 199,
    # D' = U (1 + 15.4 (1 - e^(-199 / 15.4))) = 16.4 U, D = 200 U
    assert "d16 200 (D'/D 0.08)" in text and "d30 350 (D'/D 0.05)" in text


def test_online_views_encode_a_fresh_official_crop_in_the_loop(data, tmp_path):
    """data.views: online on CPU with a tiny VQVAE: the crop of (seed, epoch, image) is encoded
    inside the step; budgets count the folder's images; a foreign VQVAE is refused."""
    from scaling.training.distributed import DistInfo
    from scaling.training.trainer import Trainer

    images, ckpt = data
    store = tk.tokenize(images, ckpt, tmp_path / "store", batch_size=8, device="cpu")
    config = dataclasses.replace(
        tiny_run_config(store, batch=4, eval_points=1),
        length=LengthConfig(epochs=2),
        seed=3,
        data=DataConfig(store=store, views="online", images=images),
    )
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    trainer = Trainer(config, run, DistInfo(0, 1, 0, torch.device("cpu")))
    assert trainer.train_size == 12 and trainer.total_steps == 6
    model = load_vqvae(ckpt)
    for epoch, image in ((0, 0), (1, 0), (1, 7)):
        img = resize_shorter(load_rgb(trainer.online.ds.samples[image][0]), 9)
        rng = np.random.default_rng([3, epoch, image, 0])
        top, left = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        x = to_tensor_pm1(img.crop((left, top, left + 8, top + 8)))[None]
        tokens, labels = trainer.online.batch(np.array([image]), epoch)
        assert torch.equal(tokens[0], torch.cat(model.img_to_idx(x), dim=1)[0])
        assert labels[0] == trainer.online.ds.samples[image][1]
    e0, _ = trainer.online.batch(np.arange(12), 0)
    e1, _ = trainer.online.batch(np.arange(12), 1)
    assert (e0 != e1).any(dim=1).any()  # other epochs, other crops
    losses = [trainer.train_step() for _ in range(trainer.total_steps)]
    assert all(np.isfinite(losses))
    with pytest.raises(InvalidValue, match="needs data.images"):
        DataConfig(store=store, views="online")
    other = tmp_path / "other.pt"
    torch.manual_seed(1)
    save_model(other, VQVAE(**TINY))
    bad = dataclasses.replace(
        config, data=DataConfig(store=store, views="online", images=images, vqvae=other)
    )
    with pytest.raises(TokenStoreMismatch, match="vqvae_sha256"):
        Trainer(bad, run, DistInfo(0, 1, 0, torch.device("cpu")))


@pytest.mark.parametrize(
    "sections, key, needle",
    [
        (
            {
                "data": {"tokens": None},
                "prepare": {"synthetic": {"num_classes": 4}, "vqvae": {}, "tokenize": {"views": 0}},
            },
            "prepare.tokenize.views",
            "views: 0",
        ),
        ({"data": {"expect": {"views": -1}}}, "data.expect.views", "views: -1"),
        ({"base": {"data": {"views": 0}}}, "views", None),
        ({"base": {"eval": {"precision": "fp16"}}}, "eval.precision", None),
    ],
)
def test_bad_view_and_precision_settings_are_located_errors(
    tmp_path, capsys, sections, key, needle
):
    """`needle`: the text on the line the error must name (None: the key is enough)."""
    path = write_sweep(tmp_path / "bad.yaml", tmp_path / "o", depths=(1,), **sections)
    assert launch_mod.main([str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
    if needle is not None:
        assert f"{path}:{line_of(path.read_text(), needle)}:" in err, err
