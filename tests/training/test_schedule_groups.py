"""Hand-computed checks of the trainer's pieces: lr / wd schedules, the no-decay rule, the
trainer's class dropout and the run-directory conflict refusal.

The schedule numbers follow tests/fixtures/official_var_train.md (the official recipe,
written out independently of scaling.schedule); each expected value shows its arithmetic.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from scaling.training import schedule
from scaling.training.config import OptimConfig

# the official probe: T = 12 steps, wp = 0.25 -> W = round(0.25 * 12) = 3, wp0 = 0.005,
# hold 0.05 of the post-warm-up steps, wpe = 0.1
PROBE = OptimConfig(
    warmup_frac=0.25,
    warmup_start=0.005,
    hold_frac=0.05,
    final_lr_frac=0.1,
    weight_decay=0.05,
    weight_decay_end=0.1,
)


def test_lr_warmup_hold_and_linear_decay_to_the_final_factor():
    expected = {
        0: 0.005,  # wp0
        1: 0.005 + 0.995 * 1 / 3,  # = 0.33667
        2: 0.005 + 0.995 * 2 / 3,  # = 0.66833, never 1 inside the warm-up
        3: 1.0,  # p = (3-3)/(11-3) = 0 < 0.05: hold
        4: 0.1 + 0.9 * (1 - 1 / 8) / 0.95,  # p = 1/8: 0.92895 (README)
        7: 0.1 + 0.9 * (1 - 4 / 8) / 0.95,  # p = 1/2: 0.57368
        11: 0.1,  # p = 1: wpe, the last lr is 0.1 x peak
    }
    assert expected[1] == pytest.approx(0.33667, abs=1e-5)
    assert expected[2] == pytest.approx(0.66833, abs=1e-5)
    assert expected[4] == pytest.approx(0.92895, abs=1e-5)
    for step, value in expected.items():
        assert schedule.lr_factor(step, 12, PROBE) == pytest.approx(value, rel=1e-12), step


def test_lr_hold_lasts_hold_frac_of_the_post_warmup_steps():
    # T = 102, W = round(0.02 * 102) = 2; p = (g - 2) / 99: p < 0.2 for g - 2 < 19.8
    optim = OptimConfig(warmup_frac=0.02, hold_frac=0.2, final_lr_frac=0.01)
    assert [schedule.lr_factor(g, 102, optim) for g in (2, 21)] == [1.0, 1.0]
    # g = 22: p = 20/99 > 0.2 -> 0.01 + 0.99 * (1 - 20/99) / 0.8 = 0.98750
    assert schedule.lr_factor(22, 102, optim) == pytest.approx(0.01 + 0.99 * (79 / 99) / 0.8)
    assert schedule.lr_factor(101, 102, optim) == pytest.approx(0.01)


def test_warmup_length_rounds_half_to_even_as_the_official_code():
    # wp * T = 0.25 * 10 = 2.5 -> W = 2 (Python round): step 2 is already past the warm-up
    optim = dataclasses.replace(PROBE, hold_frac=0.0)
    assert schedule.lr_factor(1, 10, optim) == pytest.approx(0.005 + 0.995 / 2)
    assert schedule.lr_factor(2, 10, optim) == pytest.approx(1.0)


def test_weight_decay_is_cosine_from_start_to_end_over_the_whole_run():
    # T = 5: q = g / 4; wd = 0.1 + (0.05 - 0.1) * (0.5 + 0.5 cos(pi q))
    expected = [
        0.05,
        0.1 - 0.05 * (0.5 + 0.5 * math.sqrt(0.5)),  # cos(pi/4) = 0.70711: 0.057322
        0.075,  # cos(pi/2) = 0: the midpoint
        0.1 - 0.05 * (0.5 - 0.5 * math.sqrt(0.5)),  # 0.092678
        0.1,
    ]
    assert expected[1] == pytest.approx(0.057322, abs=1e-6)
    assert [schedule.weight_decay(g, 5, PROBE) for g in range(5)] == pytest.approx(
        expected, rel=1e-12
    )
    # the official probe: 0.05 at step 0, 0.1 at step 11 (it increases there)
    assert schedule.weight_decay(0, 12, PROBE) == pytest.approx(0.05)
    assert schedule.weight_decay(11, 12, PROBE) == pytest.approx(0.1)
    constant = dataclasses.replace(PROBE, weight_decay_end=None)
    assert {schedule.weight_decay(g, 12, constant) for g in range(12)} == {0.05}


def test_param_groups_follow_the_official_no_decay_rule_by_name():
    import torch
    from torch import nn

    from scaling.training.model import param_groups

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 4)  # weight decayed, bias not
            self.class_emb = nn.Embedding(5, 4)  # 2-D, no key: decayed
            self.pos_1LC = nn.Parameter(torch.zeros(1, 3, 4))  # key pos_1LC
            self.lvl_embed = nn.Embedding(3, 4)  # key lvl_embed, although 2-D
            self.ada_gss = nn.Parameter(torch.zeros(1, 1, 2, 4))  # key ada_gss
            self.scale_mul_1H11 = nn.Parameter(torch.zeros(1, 2, 1, 1))  # key scale_mul
            self.gamma_mat = nn.Parameter(torch.zeros(4, 4))  # key gamma
            self.ln = nn.LayerNorm(4)  # 1-D weight and bias
            self.frozen = nn.Parameter(torch.zeros(4, 4), requires_grad=False)

    model = Toy()
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model)
    assert (decay["wd_scale"], no_decay["wd_scale"]) == (1.0, 0.0)
    assert sorted(names[id(p)] for p in decay["params"]) == ["class_emb.weight", "head.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == sorted(
        [
            "head.bias",
            "pos_1LC",
            "lvl_embed.weight",
            "ada_gss",
            "scale_mul_1H11",
            "gamma_mat",
            "ln.weight",
            "ln.bias",
        ]
    )  # `frozen` is in neither


def test_param_groups_of_var_decay_the_fourteen_matrices_of_the_official_probe():
    # README: depth 2 decays 14 matrices: word_embed, class_emb, head_nm.ada_lin, head, and per
    # block mat_qkv, proj, fc1, fc2, ada_lin (4 + 2 x 5)
    from scaling.training.model import param_groups
    from var_core import VAR

    model = VAR(
        depth=2, width=32, heads=2, num_classes=4, vocab_size=32, z_channels=8, patch_nums=(1, 2, 3)
    )
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = param_groups(model)
    decayed = sorted(names[id(p)] for p in decay["params"])
    assert len(decayed) == 14 and all(n.endswith("weight") for n in decayed), decayed
    for part in ("word_embed", "class_emb", "mat_qkv", "proj", "fc1", "fc2", "ada_lin", "head"):
        assert any(part in n for n in decayed), part
    assert not any(n.endswith("bias") or "pos_" in n or "lvl_embed" in n for n in decayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from tests.factories import make_token_store

    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


def test_trainer_class_dropout_is_on_in_training_and_off_at_evaluation(store, tmp_path, one_thread):
    import torch

    from scaling.core.rundir import RunDir
    from scaling.training.distributed import DistInfo
    from scaling.training.trainer import Trainer
    from tests.factories import tiny_run_config

    config = tiny_run_config(store, steps=8)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, cond_drop=0.5))
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    trainer = Trainer(config, run, DistInfo(0, 1, 0, torch.device("cpu")))
    seen: list[tuple[bool, torch.Tensor]] = []
    trainer.model.register_forward_pre_hook(
        lambda m, args: seen.append((m.training, args[0].clone()))
    )
    null = trainer.store.num_classes  # 4 classes: the null class is label 4
    for _ in range(8):
        trainer.train_step()
    train_labels = torch.cat([labels for training, labels in seen if training])
    assert len(train_labels) == 8 * 16 and all(training for training, _ in seen)
    dropped = int((train_labels == null).sum())
    # p = 0.5 on 128 labels: mean 64, sd 5.7. A second drop inside the model (0.75: 96) or
    # none (0) would fall far outside [44, 84]
    assert 44 <= dropped <= 84, dropped
    seen.clear()
    trainer.evaluate("full")
    eval_labels = torch.cat([labels for training, labels in seen])
    assert seen and not any(training for training, _ in seen)
    assert int((eval_labels == null).sum()) == 0 and len(eval_labels) == 64

    off = dataclasses.replace(config, model=dataclasses.replace(config.model, cond_drop=0.0))
    run2 = RunDir(tmp_path / "run2")
    run2.path.mkdir()
    trainer = Trainer(off, run2, DistInfo(0, 1, 0, torch.device("cpu")))
    seen.clear()
    trainer.model.register_forward_pre_hook(
        lambda m, args: seen.append((m.training, args[0].clone()))
    )
    trainer.train_step()
    assert int((seen[0][1] == null).sum()) == 0


def test_prepare_run_dir_refuses_another_config_and_changes_nothing(store, tmp_path):
    from scaling.core.config_io import ConfigError, dump_yaml
    from scaling.training.job import prepare_run_dir
    from tests.factories import tiny_run_config, write_run

    run_dir = write_run(tmp_path / "run", tiny_run_config(store, steps=8))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    other = tmp_path / "other.yaml"
    other.write_text(dump_yaml(tiny_run_config(store, steps=9)))
    with pytest.raises(
        ConfigError,
        match=r"run/config.yaml already holds another config; give "
        r"another --run-dir or remove that run",
    ):
        prepare_run_dir(other, run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    # the same config again is accepted (a resume), and a fresh folder gets the config copied in
    same = tmp_path / "same.yaml"
    same.write_text(dump_yaml(tiny_run_config(store, steps=8)))
    assert prepare_run_dir(same, run_dir) == run_dir
    fresh = prepare_run_dir(other, tmp_path / "fresh")
    assert (fresh / "config.yaml").read_text() == other.read_text()


def test_train_run_sets_threads_for_the_run_only(store, tmp_path, monkeypatch):
    import torch

    import scaling.training.job as job
    from scaling.training.trainer import Trainer
    from tests.factories import tiny_run_config, write_run

    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    config = tiny_run_config(store, steps=2, eval_points=1)
    config = dataclasses.replace(
        config, runtime=dataclasses.replace(config.runtime, num_threads=wanted)
    )
    run_dir = write_run(tmp_path / "run", config)
    seen = []
    real = Trainer.train_step

    def spy(self):
        seen.append(torch.get_num_threads())
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", spy)
    job.train_run(run_dir)
    assert seen == [wanted, wanted]  # runtime.num_threads holds during the run
    assert torch.get_num_threads() == before  # and the caller's setting is back after it


def test_runtime_policy_tf32_switch_restores_the_callers_flags():
    """The policy the tokenizer, trainer and bench apply: TF32 on for its block, then back."""
    import torch

    from scaling.core.runtime import Policy

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        cuda = Policy(
            device=torch.device("cuda"), precision="fp32", tf32=True, compile=False, threads=None
        )
        with cuda.applied():
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        cpu = Policy(
            device=torch.device("cpu"), precision="fp32", tf32=True, compile=False, threads=None
        )
        with cpu.applied():  # CPU: the flags are left alone
            assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
