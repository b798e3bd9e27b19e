"""Refused before anything is submitted: a batch the processes cannot share, FSDP on one
process (when the sweep loads), more nodes or GPUs per node than SLURM's partition has (at
launch, from `sinfo`). Each error names the sweep file, line and key."""

from __future__ import annotations

import subprocess

import pytest

from scaling.core.config_io import ConfigError
from scaling.study.run import checks
from scaling.study.sweep.sweep import load_sweep
from tests.factories import write_sweep


def write(tmp_path, batch=16, fsdp=False, partition="debug", nodes=2, tasks=2, gpus=0):
    """The tests' sweep (tests.factories) of one d2 run on a SLURM partition."""
    return write_sweep(
        tmp_path / "s.yaml",
        tmp_path / "out",
        name="s",
        depths=(2,),
        base={
            "model": {"init_adaln_gamma": None},
            "optim": {"batch_size": batch, "base_lr": None, "final_lr_frac": None},
            "length": {"steps": 40},
            "runtime": {"fsdp": fsdp, "num_threads": None, "checkpoint_every_steps": None},
        },
        eval=None,
        cluster={
            "backend": "slurm",
            "partition": partition,
            "nodes": nodes,
            "tasks_per_node": tasks,
            "gpus_per_node": gpus,
            "cpus_per_task": None,
        },
    )


def line(path, key: str) -> int:
    """The 1-based line of the file where `key:` is written (each key below is written once)."""
    lines = path.read_text().splitlines()
    found = [i for i, text in enumerate(lines, 1) if text.strip().startswith(f"{key}:")]
    assert len(found) == 1, (key, found)
    return found[0]


def test_a_batch_the_processes_cannot_share_is_refused_at_load(tmp_path):
    path = write(tmp_path, batch=18, nodes=2, tasks=4)  # 8 processes
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    where = line(path, "batch_size")
    assert str(e.value).startswith(f"{path}:{where}: base.optim.batch_size: 18 is not divisible")
    assert "8 processes (2 node(s) x 4 process(es))" in str(e.value)


def test_fsdp_on_one_process_is_refused_at_load(tmp_path):
    path = write(tmp_path, fsdp=True, nodes=1, tasks=0)
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    where = line(path, "fsdp")
    assert str(e.value).startswith(f"{path}:{where}: base.runtime.fsdp: FSDP shards the model")
    load_sweep(write(tmp_path, fsdp=True, nodes=1, tasks=2))  # two processes: fine


def test_tasks_per_node_must_be_one_per_gpu(tmp_path):
    path = write(tmp_path, gpus=4, tasks=2)
    where = line(path, "tasks_per_node")
    with pytest.raises(ConfigError, match=rf"s.yaml:{where}: cluster.tasks_per_node: 2 tasks on"):
        load_sweep(path)
    assert load_sweep(write(tmp_path, gpus=4, tasks=0)).runs[0].resources.processes == 8


SINFO = """\
debug*|n1|(null)
debug*|n2|(null)
gpu|g1|gpu:a100:4(S:0-1)
gpu|g2|gpu:8,shard:2
gpu|n2|(null)
"""


def test_partitions_read_from_sinfo(monkeypatch):
    def fake_run(cmd, **kw):
        assert cmd[0] == "sinfo"
        return subprocess.CompletedProcess(cmd, 0, SINFO, "")

    monkeypatch.setattr(checks.subprocess, "run", fake_run)
    assert checks.partitions() == {"debug": (2, 0), "": (2, 0), "gpu": (3, 8)}


@pytest.mark.parametrize(
    "kw, key, words",
    [
        (
            dict(nodes=3, batch=12),
            "nodes",
            "cluster.nodes: run d2 asks for 3 nodes; debug has 2 (sinfo)",
        ),
        (
            dict(gpus=1, tasks=0),
            "gpus_per_node",
            "cluster.gpus_per_node: run d2 asks for 1 GPUs per node; the nodes of debug have at "
            "most 0 (sinfo)",
        ),
        (dict(partition="big"), "partition", "cluster.partition: run d2 asks for partition 'big'"),
    ],
)
def test_more_than_the_partition_offers_is_refused(tmp_path, kw, key, words):
    path = write(tmp_path, **kw)
    where = line(path, key)
    sweep = load_sweep(path)
    with pytest.raises(ConfigError) as e:
        checks.check_partitions(sweep, list(sweep.runs), {"debug": (2, 0), "": (2, 0)})
    assert str(e.value).startswith(f"{path}:{where}: {words}")


def test_what_the_partition_offers_passes(tmp_path):
    sweep = load_sweep(write(tmp_path, gpus=4, tasks=0))
    checks.check_partitions(sweep, list(sweep.runs), {"debug": (2, 8), "": (2, 8)})
