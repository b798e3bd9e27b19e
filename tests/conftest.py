"""Shared fixtures. `slurm_cluster`: a real single-node SLURM cluster for tests marked `slurm`."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

SCRIPT = ROOT / "scripts" / "testbed" / "slurm_cluster.sh"


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    """A running cluster: its config file, the partition to submit to, who started it."""

    conf: Path
    partition: str
    started_here: bool


def _cluster_answers(conf: Path) -> bool:
    env = dict(os.environ, SLURM_CONF=str(conf))
    try:
        return (
            subprocess.run(
                ["scontrol", "ping"], env=env, capture_output=True, timeout=10
            ).returncode
            == 0
            and subprocess.run(
                ["bash", str(SCRIPT), "status"], env=env, capture_output=True, timeout=10
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def slurm_cluster():
    """Use the cluster of scripts/testbed/slurm_cluster.sh (state in $SLURM_DIR), starting it if
    root.

    Skips, with the reason, when no cluster runs and none can be started here. A cluster that
    was already up is left running; one started here is stopped at the end of the session.
    """
    slurm_dir = Path(os.environ.get("SLURM_DIR", "/tmp/var-scaling-slurm"))
    conf = slurm_dir / "slurm.conf"
    partition = os.environ.get("SLURM_PARTITION", "debug")
    started = False
    if not (conf.exists() and shutil.which("scontrol") and _cluster_answers(conf)):
        if os.geteuid() != 0:
            pytest.skip(
                "SLURM tests need a running cluster: none is up in "
                f"{slurm_dir} and starting one needs root "
                "(run `sudo bash scripts/testbed/slurm_cluster.sh up`)"
            )
        proc = subprocess.run(
            ["bash", str(SCRIPT), "up"],
            capture_output=True,
            text=True,
            timeout=900,
            env=dict(os.environ, SLURM_DIR=str(slurm_dir)),
        )
        if proc.returncode != 0 or not _cluster_answers(conf):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            pytest.skip(
                f"SLURM could not be started by scripts/testbed/slurm_cluster.sh up: {tail}"
            )
        started = True
    with pytest.MonkeyPatch.context() as mp:
        # submitit calls sbatch/squeue/sacct as subprocesses: they read SLURM_CONF
        mp.setenv("SLURM_CONF", str(conf))
        yield SlurmCluster(conf=conf, partition=partition, started_here=started)
    if started:
        subprocess.run(
            ["bash", str(SCRIPT), "down"],
            capture_output=True,
            timeout=120,
            env=dict(os.environ, SLURM_DIR=str(slurm_dir)),
        )


@dataclasses.dataclass(frozen=True)
class SlurmNodes:
    """A running multi-node cluster (scripts/testbed/slurm_cluster.sh up --nodes N): its config
    file, partition, node names and the script's folder of state and logs."""

    conf: Path
    partition: str
    nodes: tuple[str, ...]
    state_dir: Path
    started_here: bool

    def env(self) -> dict[str, str]:
        """This process's environment, pointed at this cluster (for subprocesses)."""
        return dict(os.environ, SLURM_CONF=str(self.conf), SLURM_NODES_DIR=str(self.state_dir))

    def script(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run scripts/testbed/slurm_cluster.sh with `args` on this cluster."""
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
        )


MULTINODE_NODES = 3  # two for a job, one more for a job that lost a node to be requeued on


@pytest.fixture(scope="session")
def slurm_nodes():
    """The multi-node cluster of scripts/testbed/slurm_cluster.sh (`up --nodes 3`, state in
    $SLURM_NODES_DIR), started here if none answers; stopped at the end if started here.

    Skips, with the reason, where it cannot be started (not root, no network namespaces).
    SLURM_CONF is not changed for the session (the single-node cluster's tests may run in
    it): tests point their commands at `conf` themselves (e.g. with `env()`).
    """
    state_dir = Path(os.environ.get("SLURM_NODES_DIR", "/tmp/var-scaling-slurm-nodes"))
    conf = state_dir / "slurm.conf"
    partition = os.environ.get("SLURM_PARTITION", "debug")
    nodes = tuple(f"vsnode{k}" for k in range(1, MULTINODE_NODES + 1))
    cluster = SlurmNodes(conf, partition, nodes, state_dir, started_here=False)
    if not shutil.which("scontrol"):
        pytest.skip(
            "multi-node SLURM tests need SLURM installed (scripts/testbed/slurm_cluster.sh)"
        )
    status = cluster.script("status", "--nodes", str(MULTINODE_NODES), timeout=30)
    if status.returncode != 0:
        if os.geteuid() != 0:
            pytest.skip(
                "multi-node SLURM tests need a running multi-node cluster: none is up in "
                f"{state_dir} and making one (network namespaces) needs root "
                f"(run `sudo bash scripts/testbed/slurm_cluster.sh up --nodes {MULTINODE_NODES}`)"
            )
        proc = cluster.script("up", "--nodes", str(MULTINODE_NODES), timeout=900)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            cluster.script("down", "--nodes", str(MULTINODE_NODES), timeout=120)
            pytest.skip(f"the multi-node cluster could not be made here: {tail}")
        cluster = dataclasses.replace(cluster, started_here=True)
    yield cluster
    if cluster.started_here:
        cluster.script("down", "--nodes", str(MULTINODE_NODES), timeout=180)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tiny convs on a loaded 2-core machine run ~10x
    slower on two threads than on one."""
    import torch  # here, not at the top: most test modules need no torch at collection

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _torch_state(torch) -> tuple:
    return (
        torch.get_num_threads(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_default_dtype(),
        torch.get_float32_matmul_precision(),
    )


@pytest.fixture(autouse=True)
def _restore_process_state():
    """Every test leaves the process as it found it: cwd, environment and, when torch is
    loaded, its threads, TF32 flags, default dtype and float32 matmul precision. (Reads only:
    torch is not imported here, so torch-free test modules stay torch-free.)"""
    cwd, env = os.getcwd(), dict(os.environ)
    torch = sys.modules.get("torch")
    saved = _torch_state(torch) if torch is not None else None
    yield
    if os.getcwd() != cwd:
        os.chdir(cwd)
    if dict(os.environ) != env:
        os.environ.clear()
        os.environ.update(env)
    if saved is not None and _torch_state(torch) != saved:
        threads, matmul_tf32, cudnn_tf32, dtype, precision = saved
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.set_default_dtype(dtype)
        torch.set_float32_matmul_precision(precision)
