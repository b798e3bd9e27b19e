"""Training on a seeded subset of the images (`data.subset`) and on some of the stored views
(`data.use_views`), read in a per-image permutation of the views: the same rows for one
process, for two processes (ranks simulated) and after a resume in the middle of an epoch;
budgets and records count the subset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from contracts.metrics import read_metrics
from scaling.core.config_io import InvalidValue
from scaling.core.rundir import RunDir
from scaling.data.token_store import TokenStore, TokenStoreError, load_quantizer, read_meta
from scaling.training.budget import run_budget
from scaling.training.config import DataConfig, LengthConfig
from scaling.training.distributed import DistInfo
from scaling.training.inputs import TrainInputs
from scaling.training.job import train_run
from scaling.training.trainer import Trainer
from tests.factories import make_token_store, tiny_run_config, write_run

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = DistInfo(0, 1, 0, torch.device("cpu"))


def views_store(path: Path, views: int, n_images: int = 48) -> Path:
    """A factory store whose train split is relabelled as `views` views per image, each
    image's rows sharing its first row's label."""
    make_token_store(path, n_train=n_images * views)
    labels = np.load(path / "train" / "labels.npy")
    np.save(path / "train" / "labels.npy", np.repeat(labels[::views], views))
    meta = json.loads((path / "meta.json").read_text())
    meta["splits"]["train"].update(images=n_images, views=views, transform="random_crop")
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def config_for(store: Path, **data):
    return dataclasses.replace(
        tiny_run_config(store, batch=8, eval_points=1),
        data=DataConfig(store=store, **data),
        length=LengthConfig(epochs=7),
    )


def read_rows(config, steps: range, *, world: int = 1, state: dict | None = None) -> list:
    """The train rows each step reads: per step, the ranks' rows concatenated in rank order
    (one TrainInputs per simulated rank, all started from `state`)."""
    store = TokenStore(config.data.store)
    quantizer = load_quantizer(store.path)
    size = run_budget(config, store.meta).train_images
    ranks = []
    for _ in range(world):
        inputs = TrainInputs(config, store, quantizer, None, size, torch.device("cpu"))
        if state is not None:
            inputs.order.load_state_dict(state)
        ranks.append(inputs)
    seen: list = []
    local = config.optim.batch_size // world
    for step in steps:
        rows = []
        for rank, inputs in enumerate(ranks):
            mine = slice(rank * local, (rank + 1) * local)
            # micro-batches of 3: rows in order, whatever the split
            for *_, tokens in inputs.micro_batches(step, mine, 3):
                rows.append(tokens)
        seen.append(torch.cat(rows))
    return seen


def test_one_process_two_processes_and_a_resume_read_the_same_rows(tmp_path):
    store = views_store(tmp_path / "store", views=4)
    config = config_for(store, subset=24, use_views=3)
    steps = run_budget(config, read_meta(store)).steps
    assert steps == 7 * 24 // 8
    one = read_rows(config, range(steps))
    two = read_rows(config, range(steps), world=2)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    # resume after step 4 of 21: the middle of epoch 1 (3 steps per epoch)
    probe = TrainInputs(
        config,
        TokenStore(store),
        load_quantizer(store),
        None,
        24,
        torch.device("cpu"),
    )
    for step in range(4):
        list(probe.micro_batches(step, slice(0, 8), 8))
    state = probe.order.state_dict()
    assert state == {"epoch": 1, "position": 1}
    resumed = read_rows(config, range(4, steps), world=2, state=state)
    assert all(torch.equal(a, b) for a, b in zip(one[4:], resumed, strict=True))


def test_subset_and_views_decide_the_rows_read(tmp_path):
    store = views_store(tmp_path / "store", views=4)
    meta_labels = TokenStore(store).image_labels("train")
    config = config_for(store, subset=24, use_views=3)
    spy_rows = []
    trainer = Trainer(config, RunDir(tmp_path / "run"), CPU)
    orig = trainer.store.gather

    def spy(split, idx):
        if split == "train":
            spy_rows.append(np.asarray(idx).copy())
        return orig(split, idx)

    trainer.store.gather = spy
    for _ in range(trainer.total_steps):
        trainer.train_step()
    rows = np.concatenate(spy_rows)
    images, views = rows // 4, rows % 4
    assert trainer.train_size == 24 and rows.size == 7 * 24
    chosen = np.unique(images)
    assert chosen.size == 24  # the subset, every image of it read
    # class-balanced: the factory's 4 classes give 6 images each when they have them
    per_class = np.bincount(meta_labels[chosen], minlength=4)
    full = np.bincount(meta_labels, minlength=4)
    assert (per_class == np.minimum(full, 6)).all() or per_class.max() - per_class.min() <= 1
    for image in chosen:
        epochs = np.flatnonzero(images == image) // 24
        assert epochs.tolist() == list(range(7))  # once per epoch
        seen = views[images == image]
        assert seen.max() <= 2  # use_views: 3 of the 4 stored views
        # without replacement: epochs 0-2 and 3-5 each read the 3 views once
        assert sorted(seen[:3]) == [0, 1, 2] and sorted(seen[3:6]) == [0, 1, 2]
    # another subset seed, other images; the same seed in another run, the same images
    other = Trainer(
        config_for(store, subset=24, use_views=3, subset_seed=1), RunDir(tmp_path / "o"), CPU
    )
    assert not np.array_equal(other.inputs.images, trainer.inputs.images)
    assert np.array_equal(trainer.inputs.images, chosen)


def test_budget_and_records_count_the_subset(tmp_path):
    store = views_store(tmp_path / "store", views=4)
    meta = read_meta(store)
    budget = run_budget(config_for(store, subset=0.25, use_views=2), meta)
    assert budget.train_images == 12 and budget.split_images == 48  # round(0.25 x 48)
    assert budget.views == 2 and budget.rows_per_image == 2
    assert budget.epochs == pytest.approx(7 * 12 // 8 * 8 / 12)  # images / subset
    assert budget.passes == pytest.approx(budget.epochs / 2)
    assert budget.unique_tokens == 12 * meta["L"]
    whole = run_budget(config_for(store), meta)
    assert (whole.train_images, whole.views, whole.rows_per_image) == (48, 4, 4)
    with pytest.raises(TokenStoreError, match=r"data.subset: 49 images asked, but the train "):
        run_budget(config_for(store, subset=49), meta)
    with pytest.raises(TokenStoreError, match=r"data.use_views: 5 views .* holds 4"):
        run_budget(config_for(store, use_views=5), meta)
    # the run's records say what it trained on
    config = dataclasses.replace(config_for(store, subset=12), length=LengthConfig(steps=3))
    run_dir = write_run(tmp_path / "run", config)
    train_run(run_dir)
    last = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert (last.train_images, last.views) == (12, 4)
    assert last.unique_tokens == 12 * meta["L"]
    assert last.epochs == pytest.approx(3 * 8 / 12)


@pytest.mark.parametrize(
    "value, message",
    [
        (0, "whole number of images >= 1 or a fraction"),
        (-3, "whole number of images >= 1 or a fraction"),
        (2.5, "whole number of images >= 1 or a fraction"),
        (True, "whole number of images >= 1 or a fraction"),
    ],
)
def test_bad_subsets_are_refused(tmp_path, value, message):
    with pytest.raises(InvalidValue, match=message) as e:
        DataConfig(store=tmp_path, subset=value)
    assert e.value.field == "subset"
