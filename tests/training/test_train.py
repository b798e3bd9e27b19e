"""The training job: learning, metrics contract, compute counts, exact resume, failures, DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scaling.core.rundir import RunDir
from scaling.data.token_store import TokenStoreMismatch
from scaling.training.config import LengthConfig, RunConfig
from scaling.training.job import train_run
from scaling.training.step import NonFiniteLoss
from scaling.training.trainer import Trainer
from tests.factories import make_token_store, tiny_run_config, write_run
from tests.paths import ROOT

REQUIRED_FIELDS = {
    "run",
    "params",
    "step",
    "images",
    "tokens",
    "flops",
    "flops_6nd",
    "wall_s",
    "train_loss",
    "ce_avg",
    "ce_last",
    "err_avg",
    "err_last",
    "ce_by_scale",
    "err_by_scale",
    "eval",
    "eval_images",
    "eval_flops",
}
TIMING_FIELDS = {"wall_s", "eval_s"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


def _no_drop_path(config: RunConfig) -> RunConfig:
    """Drop-path masks come from each process's RNG; comparisons across process or
    micro-batch layouts switch it off (class dropout is drawn per global batch)."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, drop_path=0.0))


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def test_tiny_model_learns_and_writes_the_metrics_contract(store, tmp_path):
    config = tiny_run_config(store, steps=40, eval_points=5)
    run_dir = write_run(tmp_path / "run", config)
    train_run(run_dir)
    records = _metrics(run_dir)
    # 5 points log-spaced from 0.2 x 40 = 8 to 40: 8 x 5^(k/4) = 8, 11.96, 17.89, 26.75, 40
    assert [r["step"] for r in records] == [8, 12, 18, 27, 40]
    for r in records:
        assert REQUIRED_FIELDS <= r.keys()
        assert len(r["ce_by_scale"]) == len(r["err_by_scale"]) == 3
        assert r["eval_images"] == 64
    first, last = records[0], records[-1]
    # chance level is ln(32) = 3.47; the store's structure makes most tokens predictable
    assert first["ce_avg"] > 3.0
    assert last["ce_avg"] < first["ce_avg"] - 0.5
    assert last["err_avg"] < first["err_avg"] - 0.1
    # averages are token-weighted means of the per-scale values (1, 4, 9 tokens)
    for r in records:
        weighted = sum(n * v for n, v in zip((1, 4, 9), r["ce_by_scale"])) / 14
        assert r["ce_avg"] == pytest.approx(weighted, rel=1e-9)
        assert r["ce_last"] == pytest.approx(r["ce_by_scale"][-1], rel=1e-12)
    status = RunDir(run_dir).read_status()
    assert status["state"] == "done" and status["final"]["ce_avg"] == last["ce_avg"]


def test_flops_are_steps_times_per_step_count(store, tmp_path):
    from scaling.training.budget import run_budget
    from var_core import VAR, counting

    config = tiny_run_config(store, steps=10, eval_points=3)
    run_dir = write_run(tmp_path / "run", config)
    train_run(run_dir)
    # the independent source: the run's budget, the pre-run count from the store's meta.json
    # (the launcher's path, which never builds a model); per image = total / (10 x 16)
    budget = run_budget(config, json.loads((store / "meta.json").read_text()))
    assert budget.steps == 10 and budget.images == 10 * 16 and budget.tokens == 10 * 16 * 14
    per_image = budget.flops / budget.images
    records = _metrics(run_dir)
    assert [r["step"] for r in records] == [
        2,
        4,
        10,
    ]  # 0.2 x 10 = 2 to 10: 2, 2 x 5^(1/2) = 4.47, 10
    for r in records:
        assert r["images"] == r["step"] * 16
        assert r["tokens"] == r["images"] * (1 + 4 + 9)
        assert r["flops"] == r["step"] * 16 * per_image
        assert r["flops_6nd"] == 6 * budget.params * r["tokens"]
        assert r["params"] == budget.params
    assert records[-1]["flops"] == budget.flops and records[-1]["flops_6nd"] == budget.flops_6nd
    # and training is 3 x the forward pass of the same shapes (var_core.counting's convention)
    kwargs = config.model.var_kwargs(
        num_classes=4, vocab_size=32, z_channels=8, patch_nums=(1, 2, 3)
    )
    assert per_image == 3 * counting.forward_flops(**kwargs)
    assert budget.params == sum(p.numel() for p in VAR(**kwargs).parameters())


def test_length_in_epochs_images_tokens_and_flops(store):
    from scaling.training.budget import ImageCounts, length_steps

    counts = ImageCounts(params=100, tokens=14, forward_flops=333, train_flops=1000)
    kwargs = dict(train_images=256, batch_size=16, counts=counts)
    assert length_steps(LengthConfig(epochs=2), **kwargs) == 32
    assert length_steps(LengthConfig(images=100), **kwargs) == 7
    assert length_steps(LengthConfig(tokens=14 * 160), **kwargs) == 10
    assert length_steps(LengthConfig(flops=1000 * 16 * 5.5), **kwargs) == 5


def test_resume_is_exact_after_clean_stops_and_after_a_crash(store, tmp_path, monkeypatch):
    config = tiny_run_config(store, steps=24, eval_points=6, checkpoint_every_steps=4)
    reference = write_run(tmp_path / "ref", config)
    train_run(reference)

    # stopped cleanly (checkpoint at the stop) after 5, then 7 more steps, then the rest
    pieces = write_run(tmp_path / "pieces", config)
    train_run(pieces, max_steps=5)
    train_run(pieces, max_steps=7)
    train_run(pieces)

    # a crash at step 11: the last checkpoint is step 8, evaluations after it are redone
    crashed = write_run(tmp_path / "crash", config)
    real_step = Trainer.train_step

    def crash_at_11(self):
        if self.step == 10:
            raise RuntimeError("simulated node failure")
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", crash_at_11)
    with pytest.raises(RuntimeError, match="simulated node failure"):
        train_run(crashed)
    assert RunDir(crashed).read_status()["state"] == "failed"
    monkeypatch.setattr(Trainer, "train_step", real_step)
    train_run(crashed)

    ref_state = torch.load(reference / "checkpoint.pt", weights_only=True)
    for other in (pieces, crashed):
        state = torch.load(other / "checkpoint.pt", weights_only=True)
        assert state["step"] == 24
        for key, value in ref_state["model"].items():
            assert torch.equal(value, state["model"][key]), key
        assert _untimed(_metrics(other)) == _untimed(_metrics(reference))
        assert RunDir(other).read_status()["state"] == "done"


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    store, tmp_path, monkeypatch
):
    config = tiny_run_config(store, steps=20, checkpoint_every_steps=3)
    run_dir = write_run(tmp_path / "run", config)
    real_step = Trainer.train_step

    def poison_at_7(self):
        if self.step == 6:
            with torch.no_grad():
                self.model.head.weight.fill_(float("nan"))
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", poison_at_7)
    with pytest.raises(NonFiniteLoss, match="at step 7 of run tiny"):
        train_run(run_dir)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == 6
    # the last good weights (the mask buffer holds -inf by design)
    assert torch.isfinite(state["model"]["head.weight"]).all()
    assert all(torch.isfinite(v).all() for k, v in state["model"].items() if "attn_bias" not in k)
    status = RunDir(run_dir).read_status()
    assert status["state"] == "failed" and "at step 7" in status["error"]


def test_mismatched_store_is_refused_before_training(store, tmp_path):
    config = tiny_run_config(store)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, vocab_size=4096))
    run_dir = write_run(tmp_path / "run", config)
    with pytest.raises(TokenStoreMismatch, match="vocab_size") as e:
        train_run(run_dir)
    assert "4096" in str(e.value) and "32" in str(e.value)
    assert not (run_dir / "checkpoint.pt").exists() and not (run_dir / "metrics.jsonl").exists()


def test_cli_reports_a_located_config_error(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text("run_id: x\ndata:\n  store: s\noptim:\n  batch_size: -4\n")
    result = subprocess.run(
        [sys.executable, "-m", "scaling.train", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 2  # an input error (scaling.core.cli)
    assert f"{bad}:5: optim.batch_size: must be > 0, got -4" in result.stderr


def _ddp_worker(rank: int, world_size: int, run_dir: str, port: int, max_steps=None) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    train_run(run_dir, max_steps=max_steps)


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(store, tmp_path):
    import torch.multiprocessing as mp

    config = _no_drop_path(tiny_run_config(store, steps=8, eval_points=2))
    assert config.model.cond_drop > 0
    single = write_run(tmp_path / "single", config)
    train_run(single)
    double = write_run(tmp_path / "ddp", config)
    port = 29500 + os.getpid() % 1000
    mp.start_processes(_ddp_worker, args=(2, str(double), port), nprocs=2, start_method="fork")
    a = torch.load(single / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(double / "checkpoint.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    for ra, rb in zip(_metrics(single), _metrics(double)):
        assert ra["step"] == rb["step"] and ra["eval_images"] == rb["eval_images"]
        assert rb["ce_avg"] == pytest.approx(ra["ce_avg"], rel=1e-5)
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)


def test_fsdp_over_two_gloo_processes_equals_one_process_and_resumes(store, tmp_path):
    import torch.multiprocessing as mp

    def config(**runtime):
        return _no_drop_path(
            tiny_run_config(store, steps=8, eval_points=2, checkpoint_every_steps=4, **runtime)
        )

    single = write_run(tmp_path / "single", config())
    train_run(single)
    sharded = write_run(tmp_path / "fsdp", config(fsdp=True, micro_batch=4))
    port = 30500 + os.getpid() % 1000
    mp.start_processes(_ddp_worker, args=(2, str(sharded), port, 5), nprocs=2, start_method="fork")
    assert torch.load(sharded / "checkpoint.pt", weights_only=True)["step"] == 5
    mp.start_processes(_ddp_worker, args=(2, str(sharded), port + 1), nprocs=2, start_method="fork")
    a = torch.load(single / "checkpoint.pt", weights_only=True)
    b = torch.load(sharded / "checkpoint.pt", weights_only=True)
    assert b["step"] == 8
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-5, atol=1e-6, msg=key)
    for ra, rb in zip(_metrics(single), _metrics(sharded)):
        assert rb["ce_avg"] == pytest.approx(ra["ce_avg"], rel=1e-5)


def test_micro_batches_accumulate_to_the_same_step(store, tmp_path):
    def config(**runtime):
        return _no_drop_path(tiny_run_config(store, steps=6, eval_points=1, **runtime))

    full = write_run(tmp_path / "full", config())
    micro = write_run(tmp_path / "micro", config(micro_batch=4))
    train_run(full)
    train_run(micro)
    a = torch.load(full / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(micro / "checkpoint.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)


def test_sigterm_checkpoints_and_the_rerun_finishes_like_an_uninterrupted_run(store, tmp_path):
    config = tiny_run_config(store, steps=400, eval_points=3, batch=8)
    reference = write_run(tmp_path / "ref", config)
    train_run(reference)
    run_dir = write_run(tmp_path / "run", config)
    cmd = [sys.executable, "-m", "scaling.train", str(run_dir / "config.yaml")]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while time.time() < deadline and RunDir(run_dir).read_status().get("state") != "running":
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    status = RunDir(run_dir).read_status()
    if status["state"] == "done":
        pytest.skip("the run finished before SIGTERM arrived (machine too fast for this test)")
    assert proc.returncode != 0
    assert "stopped by SIGTERM at step" in err and status["state"] == "stopped"
    assert status["stopped_by"] == "SIGTERM"
    stopped_at = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < stopped_at < 400
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    assert RunDir(run_dir).read_status()["state"] == "done"
    assert _untimed(_metrics(run_dir)) == _untimed(_metrics(reference))


def test_activation_checkpointing_trains_to_the_same_weights(store, tmp_path):
    plain = write_run(tmp_path / "plain", tiny_run_config(store, steps=5, eval_points=1))
    recomputed = write_run(
        tmp_path / "ckpt",
        tiny_run_config(store, steps=5, eval_points=1, activation_checkpointing=True),
    )
    train_run(plain)
    train_run(recomputed)
    a = torch.load(plain / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(recomputed / "checkpoint.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-7, msg=key)
