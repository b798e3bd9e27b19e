"""The kill soak (scripts/testbed/kill_soak.py): a tiny sweep killed at random moments and
relaunched until done ends with metrics.jsonl equal to an uninterrupted run's line for line
(same steps, values to 1e-6, no evaluation lost or duplicated) and bitwise equal final weights.

CI runs a reduced version (local backend, two runs on one slot, four kills: SIGUSR2 to the
trainer -- it checkpoints and submitit requeues it in place --, SIGKILL of the trainer -- the
relaunch resumes it --, SIGKILL of a job's controller while its trainer trains -- the launcher
adopts the trainer, which finishes and stays done -- and while its trainer starts -- no second
trainer is started; SIGTERM to the launcher is in tests/study/run/test_lifecycle.py). Every
soak also checks that no final state changes and that no more trainers are alive at once
than the sweep's slots (array_parallelism), the jobs of earlier launches included. The full
soak is marked `soak` (deselected by default; run it alone with
`pytest -m soak -s tests/study/run/test_kill_soak.py`): >= 20 kills, on the local backend
(every local kind, one slot) and on the real SLURM cluster (scancel, scontrol requeue,
preemption by USR2, SIGKILL of the trainer). Each prints its counts.
"""

from __future__ import annotations

import pytest

from scripts.testbed.kill_soak import SLURM_KINDS, Soak, reference_runs
from tests.factories import make_token_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_token_store(tmp_path_factory.mktemp("store") / "tokens")


def check(counts, backend: str, kills: int) -> None:
    print(counts.line(backend))
    assert counts.total_kills == kills
    assert counts.lost == 0 and counts.duplicated == 0 and counts.mismatched_lines == 0
    assert counts.weights_equal == counts.runs >= 1
    assert counts.resumes >= 1
    assert counts.final_changed == 0
    assert 1 <= counts.max_alive <= counts.slots


def test_kill_soak_reduced(store, tmp_path, one_thread):
    kinds = (
        "sigusr2-trainer",
        "sigkill-trainer",
        "sigkill-controller",
        "sigkill-controller-starting",
    )
    ref = reference_runs(tmp_path / "ref", store, depths=(1, 2), steps=120)
    soak = Soak(tmp_path / "soak", store, "local", depths=(1, 2), steps=120, seed=0, slots=1)
    counts = soak.run(len(kinds), ref, kinds=kinds)
    check(counts, "local", len(kinds))
    assert counts.kills.get("sigkill-controller") == 1
    assert counts.kills.get("sigkill-controller-starting") == 1


@pytest.mark.soak
@pytest.mark.slow
def test_kill_soak_local_full(store, tmp_path, one_thread):
    ref = reference_runs(tmp_path / "ref", store, steps=300)
    soak = Soak(tmp_path / "soak", store, "local", steps=300, seed=1, slots=1)
    check(soak.run(21, ref), "local", 21)


@pytest.mark.soak
@pytest.mark.slow
def test_kill_soak_slurm_full(slurm_cluster, store, tmp_path, one_thread):
    ref = reference_runs(tmp_path / "ref", store, steps=300)
    soak = Soak(
        tmp_path / "soak",
        store,
        "slurm",
        steps=300,
        seed=2,
        env={"SLURM_CONF": str(slurm_cluster.conf)},
    )
    check(soak.run(2 * len(SLURM_KINDS), ref), "slurm", 2 * len(SLURM_KINDS))
