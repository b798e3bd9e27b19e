"""Training curves in TensorBoard (and W&B offline): what the trainer writes, read back with
TensorBoard's own reader and checked against metrics.jsonl; logging changes nothing learned;
a resume purges what was logged after the checkpoint; W&B disabled / offline / missing."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import pytest

from scaling.core.config_io import ConfigError
from scaling.core.rundir import RunDir
from scaling.core.tracking import (
    COMPUTE_DIR,
    COMPUTE_PREFIX,
    Tracker,
    TrackingUnavailable,
    WandbConfig,
)
from scaling.training.config import load_run_config
from scaling.training.job import train_run
from scaling.training.trainer import Trainer
from tests.factories import make_token_store, tiny_run_config, write_run

pytestmark = pytest.mark.usefixtures("one_thread")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


def scalars(logdir: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} as TensorBoard reads the event files of one run folder."""
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_event_files_agree_with_metrics_and_change_nothing_learned(store, tmp_path):
    base = tiny_run_config(store, steps=20, eval_points=3)
    on = dataclasses.replace(
        base,
        optim=dataclasses.replace(base.optim, grad_clip=0.0),
        runtime=dataclasses.replace(base.runtime, scalars_every_steps=1),
    )
    off = dataclasses.replace(on, runtime=dataclasses.replace(on.runtime, tensorboard=False))
    run_on, run_off = write_run(tmp_path / "on", on), write_run(tmp_path / "off", off)
    train_run(run_on)
    train_run(run_off)
    # the grad norm was measured at every step (grad_clip 0) without changing the run
    untimed = [
        {k: v for k, v in r.items() if k not in ("wall_s", "eval_s")} for r in metrics(run_on)
    ]
    assert untimed == [
        {k: v for k, v in r.items() if k not in ("wall_s", "eval_s")} for r in metrics(run_off)
    ]
    assert not list(run_off.glob("events.out.tfevents*")) and not (run_off / COMPUTE_DIR).exists()

    tb = scalars(run_on)
    records = metrics(run_on)
    assert sorted(tb["train/loss"]) == list(range(1, 21))  # every step, once
    prev = 0
    for (
        rec
    ) in records:  # metrics.jsonl's train_loss = mean of the per-step losses since the last eval
        window = [tb["train/loss"][s] for s in range(prev + 1, rec["step"] + 1)]
        assert sum(window) / len(window) == pytest.approx(rec["train_loss"], rel=1e-6)
        assert tb["train/lr"][rec["step"]] == pytest.approx(rec["lr"], rel=1e-6)
        for k in ("ce_avg", "ce_last", "err_avg", "err_last"):
            assert tb[f"test/{k}"][rec["step"]] == pytest.approx(rec[k], rel=1e-6)
        for k, pn in enumerate((1, 2, 3)):
            assert tb[f"test/ce_by_scale/s{k + 1:02d}_{pn}x{pn}"][rec["step"]] == pytest.approx(
                rec["ce_by_scale"][k], rel=1e-6
            )
        assert tb["compute/flops"][rec["step"]] == pytest.approx(rec["flops"], rel=1e-6)
        prev = rec["step"]
    assert all(v > 0 for v in tb["train/grad_norm"].values())
    assert tb["train/weight_decay"][1] == pytest.approx(on.optim.weight_decay)
    assert all(v > 0 for v in tb["train/images_per_s"].values())
    # the second x-axis: test metrics against cumulative training compute (MFLOPs)
    by_compute = scalars(run_on / COMPUTE_DIR)
    ce = by_compute[f"{COMPUTE_PREFIX}/test/ce_avg"]
    assert ce == {int(r["flops"] // 1e6): pytest.approx(r["ce_avg"], rel=1e-6) for r in records}


def test_resume_purges_what_was_logged_after_the_checkpoint(store, tmp_path):
    config = tiny_run_config(store, steps=16, eval_points=2)
    config = dataclasses.replace(
        config, runtime=dataclasses.replace(config.runtime, scalars_every_steps=1)
    )
    run_dir = write_run(tmp_path / "run", config)
    run = RunDir(run_dir)
    Trainer(config, run, _dist()).run(max_steps=6)  # checkpoint at step 6
    saved = run.checkpoint.read_bytes()
    Trainer(config, run, _dist()).run(max_steps=5)  # logs steps 7-11, checkpoint at 11 ...
    run.checkpoint.write_bytes(saved)  # ... which is lost: back to step 6
    Trainer(config, run, _dist()).run()
    tb = scalars(run_dir)
    assert sorted(tb["train/loss"]) == list(range(1, 17))  # no step twice, none missing
    reference = write_run(tmp_path / "ref", config)
    Trainer(config, RunDir(reference), _dist()).run()
    ref = scalars(reference)
    for tag in ("train/loss", "train/lr", "test/ce_avg"):
        assert tb[tag] == pytest.approx(ref[tag], rel=1e-6), tag


def _dist():
    from scaling.training.distributed import setup

    return setup("cpu")


def test_wandb_settings_are_checked_where_they_are_written(store, tmp_path):
    import yaml

    path = write_run(tmp_path / "run", tiny_run_config(store)) / "config.yaml"
    data = yaml.safe_load(path.read_text())

    def write(**runtime):
        path.write_text(
            yaml.safe_dump(
                {**data, "runtime": {**data["runtime"], **runtime}},
                default_flow_style=False,
                sort_keys=False,
            )
        )

    write(wandb={"project": "demo", "mode": "offlne"})
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: runtime.wandb.mode: .*'offline'"):
        load_run_config(path)
    write(wandb={"mode": "offline"})
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: runtime.wandb.*project"):
        load_run_config(path)
    write(wandb={"project": "a/b"})
    with pytest.raises(ConfigError, match=r"runtime.wandb.project: must be"):
        load_run_config(path)
    write(scalars_every_steps=0)
    with pytest.raises(
        ConfigError, match=r"config.yaml:\d+: runtime.scalars_every_steps: must be > 0"
    ):
        load_run_config(path)


def test_missing_wandb_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(TrackingUnavailable, match=r"pip install wandb"):
        Tracker(tmp_path, tensorboard=False, wandb=WandbConfig(project="p"))
    # disabled never imports it
    assert not Tracker(
        tmp_path, tensorboard=False, wandb=WandbConfig(project="p", mode="disabled")
    ).enabled


def test_wandb_offline_writes_a_local_run_and_sends_nothing(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: a call would fail
    run_dir = tmp_path / "sweep" / "d2"
    run_dir.mkdir(parents=True)
    tracker = Tracker(
        run_dir,
        tensorboard=False,
        wandb=WandbConfig(project="cockpit-test"),
        name="d2",
        config={"model": {"depth_marker_7": 2}},
    )
    tracker.log({"train/loss": 3.25}, 1, flops=1e9)
    tracker.log({"test/ce_avg_marker": 3.0}, 2, flops=2e9)
    tracker.close()
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((run_dir / "wandb").iterdir())
    log = list(runs[0].glob("*.wandb"))
    assert len(log) == 1 and "sweep-d2" in log[0].name  # one W&B run, id from sweep and run
    names = (b"depth_marker_7", b"train/loss", b"test/ce_avg_marker", b"compute/flops")
    deadline = time.monotonic() + 60  # wandb's service process may still be writing the file
    while True:
        raw = log[0].read_bytes()  # the offline transaction log: its records carry the names
        if all(name in raw for name in names) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for name in names:
        assert name in raw, name
