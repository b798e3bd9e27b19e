"""A run's budget (scaling.training.budget): against counts made by hand from the formulas, and
against what finished runs record (the last metrics.jsonl line equals the budget)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from scaling.data.token_store import TokenStoreError
from scaling.training.budget import ImageCounts, progress, run_budget, var_kwargs_from_store
from scaling.training.config import (
    BranchConfig,
    DataConfig,
    EvalConfig,
    LengthConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
)
from scaling.training.job import train_run
from tests.factories import make_token_store, tiny_run_config, write_run

META = {
    "num_classes": 4,
    "vocab_size": 32,
    "patch_nums": [1, 2, 3],
    "vqvae_config": {"z_channels": 16},
    "splits": {"train": {"count": 256, "images": 256}, "val": {"count": 64}},
}

# By hand, from var_core/counting.py's docstring, for depth 2, width C = 32, 2 heads,
# F = 4 C = 128, vocab V = 32, code width Cv = 8, scales (1, 2, 3): L = 1 + 4 + 9 = 14,
# P = 1 x 1 + 4 x 5 + 9 x 14 = 147 (query, key) pairs.
#   word_embed  2 (L - 1) Cv C              =   6,656
#   per block   2 L C 3C + 4 P C + 2 L C^2 + 4 L C F
#             = 86,016 + 18,816 + 28,672 + 229,376 = 362,880; two blocks = 725,760
#   ada_lin     2 x (2 C 6C)                =  24,576
#   head_nm     2 C 2C                      =   4,096
#   head        2 L C V                     =  28,672
#   forward per image                       = 789,760; training = 3 x = 2,369,280
# N: word_embed 288 + class_emb 160 + positions 576 + 2 blocks x 18,882 + head_nm 2,112
#    + head 1,056 = 41,956
HAND_FORWARD = 789_760
HAND_PARAMS = 41_956
TINY_META = {**META, "vqvae_config": {"z_channels": 8}}


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
    counts = ImageCounts(params=100, tokens=14, forward_flops=7, train_flops=21)
    assert progress(10, 16, counts).columns() == dict(
        step=10, images=160, tokens=2240, flops=3360, flops_6nd=6 * 100 * 2240
    )


def test_budget_by_hand():
    b = run_budget(_config(steps=10), TINY_META)
    assert (b.params, b.counts.tokens, b.counts.forward_flops) == (HAND_PARAMS, 14, HAND_FORWARD)
    assert (b.steps, b.start_step, b.images, b.tokens) == (10, 0, 160, 2_240)
    assert b.flops == b.own_flops == 379_084_800  # 160 images x 2,369,280
    assert b.flops_6nd == 563_888_640  # 6 x 41,956 x 2,240
    assert b.epochs == 0.625  # 160 images of 256
    # 2 full evaluations log-spaced from max(1, 0.01 x 10) to 10: steps 1 and 10, 64 images each
    assert b.evals == {1: "full", 10: "full"}
    assert b.eval_flops == 101_089_280  # 789,760 x 128
    assert b.gpu_hours(1e-6) == pytest.approx((379_084_800 + 101_089_280) / 1e6 / 3600)


def test_branch_budget_by_hand():
    """At 0.25 of a 40-step WSD parent: starts after 10 steps, cools down 10 * 0.5 / 0.5 = 10."""
    config = dataclasses.replace(
        _config(steps=40),
        optim=OptimConfig(batch_size=16, schedule="wsd", warmup_steps=2, cooldown_frac=0.25),
        branch=BranchConfig(parent="p", at=0.25, cooldown=0.5),
    )
    b = run_budget(config, TINY_META)
    assert (b.start_step, b.steps, b.own_steps) == (10, 20, 10)
    assert b.flops == 320 * 3 * HAND_FORWARD and b.own_flops == 160 * 3 * HAND_FORWARD
    assert (b.tokens, b.own_tokens) == (320 * 14, 160 * 14)
    # its own evaluations only: 2 points from max(1, 0.2) to 20 are steps 1 and 20; 1 <= 10
    assert b.evals == {20: "full"} and b.eval_flops == 64 * HAND_FORWARD


def test_passes_count_stored_sequences():
    meta = json.loads(json.dumps(META))
    meta["splits"]["train"].update(count=256 * 3 * 2, views=3, flip=True)
    b = run_budget(_config(epochs=12), meta)
    assert b.steps == 12 * 256 // 16 and b.epochs == 12.0 and b.passes == 12.0 / 6


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
        run_budget(_config(steps=10), meta)


def test_a_meta_without_the_train_split_is_an_error_naming_it():
    meta = {**META, "splits": {"val": {"count": 64}}}
    with pytest.raises(TokenStoreError, match="no split 'train'"):
        run_budget(_config(steps=10), meta)


def test_budget_counts_the_stores_code_width():
    """z_channels enters only word_embed: 2 (L - n_1) z C forward FLOPs per image, x3 to train."""
    z16 = run_budget(_config(steps=10), META)
    z32 = run_budget(_config(steps=10), {**META, "vqvae_config": {"z_channels": 32}})
    L, C, images = 14, 32, 10 * 16
    assert z32.flops - z16.flops == 3 * 2 * (L - 1) * (32 - 16) * C * images
    assert z32.params - z16.params == (32 - 16) * C  # word_embed's weight
    assert z16.tokens == images * L and z16.epochs == images / 256


# ----------------------------------------------------------- finished runs equal their budget


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


def _records(run_dir) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_last_record_is_the_budget(records: list[dict], budget) -> None:
    last = records[-1]
    assert (last["step"], last["images"], last["tokens"]) == (
        budget.steps,
        budget.images,
        budget.tokens,
    )
    assert (last["flops"], last["flops_6nd"], last["params"]) == (
        budget.flops,
        budget.flops_6nd,
        budget.params,
    )
    assert last["epochs"] == budget.epochs
    # the run evaluated exactly where its budget says, and nowhere else
    assert [(r["step"], r["eval"]) for r in records] == list(budget.evals.items())


def test_an_official_schedule_run_ends_at_its_budget(store, tmp_path, one_thread):
    config = tiny_run_config(store, steps=12, eval_points=3)
    assert config.optim.schedule == "lin0"
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, subset_points=2))
    run_dir = write_run(tmp_path / "run", config)
    train_run(run_dir)
    budget = run_budget(config, json.loads((store / "meta.json").read_text()))
    records = _records(run_dir)
    _assert_last_record_is_the_budget(records, budget)
    assert records[-1]["eval_flops"] == budget.eval_flops
    # by hand: 12 steps x 16 images x 14 tokens; forward FLOPs of this VAR on 64-image evals
    assert budget.tokens == 2_688 and budget.flops == 12 * 16 * 3 * HAND_FORWARD
    kinds = list(budget.evals.values())
    assert budget.eval_flops == HAND_FORWARD * 64 * len(kinds)  # subset_images > 64 val rows


def test_a_wsd_decay_branch_ends_at_its_budget(store, tmp_path, one_thread):
    base = tiny_run_config(store, steps=40, eval_points=3)
    optim = dataclasses.replace(
        base.optim, schedule="wsd", warmup_steps=2, cooldown_frac=0.25, weight_decay_end=None
    )
    parent = dataclasses.replace(base, run_id="p", optim=optim, save_at=(0.25,))
    out = tmp_path / "runs"
    write_run(out / "p", parent)
    train_run(out / "p", until=0.25)  # the parent's segment up to the branch point
    branch = dataclasses.replace(
        parent, run_id="p-b0.25", save_at=(), branch=BranchConfig(parent="p", at=0.25, cooldown=0.5)
    )
    write_run(out / "p-b0.25", branch)
    train_run(out / "p-b0.25")
    budget = run_budget(branch, json.loads((store / "meta.json").read_text()))
    assert (budget.start_step, budget.steps) == (10, 20)
    records = _records(out / "p-b0.25")
    _assert_last_record_is_the_budget(records, budget)
    # its compute counts the parent's 10 steps; by hand: 20 steps x 16 images
    assert records[-1]["flops"] == 20 * 16 * 3 * HAND_FORWARD
    assert budget.own_flops == 10 * 16 * 3 * HAND_FORWARD
    # its own evaluations cost eval_flops on top of what the parent had spent before step 10
    inherited = max((r for r in _records(out / "p") if r["step"] < 10), key=lambda r: r["step"])
    assert records[-1]["eval_flops"] - inherited["eval_flops"] == budget.eval_flops
