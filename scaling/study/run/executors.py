"""submitit executors for the three backends (SLURM, local processes, in-process debug) and
the sbatch scripts of a dry run.

`resolve_backend('auto')` is SLURM when `sbatch` is found and the controller answers, else
submitit's local executor. One task per GPU (`ClusterSpec.processes_per_node`); on SLURM a
dependency list becomes `afterok` (with kill-on-invalid-dep, so a failed preparation stage
cancels the training that waits for it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from scaling.core.config_io import ConfigError
from scaling.study.sweep.spec import ClusterSpec
from scaling.study.sweep.sweep import Sweep


def slurm_available() -> tuple[bool, str]:
    """(usable, why not): `sbatch` is on PATH and the controller answers `sinfo`."""
    if not shutil.which("sbatch"):
        return False, "no `sbatch` found"
    try:
        ok = (
            subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, timeout=20).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (
        (True, "")
        if ok
        else (False, "`sbatch` is installed but the SLURM controller does not answer")
    )


def resolve_backend(requested: str) -> tuple[str, str | None]:
    """(backend, note): 'auto' is SLURM when it is usable here, else local (with a note)."""
    if requested == "auto":
        usable, why = slurm_available()
        if usable:
            return "slurm", None
        return "local", f"{why}: running with submitit's local executor on this machine"
    if requested == "slurm" and not shutil.which("sbatch"):
        raise ConfigError(
            "cluster.backend is slurm but no `sbatch` is on PATH (give --backend "
            "local, or run where SLURM is installed)"
        )
    return requested, None


def _script_only_slurm_executor(folder: Path, max_num_timeout: int):
    """An AutoExecutor whose SLURM executor only renders sbatch scripts (dry runs).

    submitit's SlurmExecutor refuses to be built where `srun` is missing; a dry run submits
    nothing, so it must work on a laptop: this subclass skips that one check.
    """
    import submitit
    from submitit.slurm.slurm import SlurmExecutor

    class ScriptOnly(SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:
            return 1

    ex = submitit.AutoExecutor(folder=folder, cluster="debug")
    ex._executor = ScriptOnly(folder, max_num_timeout=max_num_timeout)
    ex.cluster = "slurm"
    return ex


def executor_for(
    sweep: Sweep,
    backend: str,
    res: ClusterSpec,
    name: str,
    dependency: list[str] | None = None,
    script_only: bool = False,
    single_task: bool = False,
):
    """A submitit executor for jobs of resource shape `res` (`script_only`: SLURM scripts
    for a dry run, usable without SLURM installed; `single_task`: one process per job
    whatever the GPUs, for the preparation stages, which are not distributed)."""
    import submitit

    folder = sweep.output / "_submitit" / "%j"
    cluster = {"slurm": "slurm", "local": "local", "debug": "debug"}[backend]
    if script_only:
        ex = _script_only_slurm_executor(folder, res.max_requeues)
    else:
        ex = submitit.AutoExecutor(
            folder=folder, cluster=cluster, slurm_max_num_timeout=res.max_requeues
        )
    params: dict[str, Any] = dict(
        name=name,
        timeout_min=res.time_min,
        nodes=res.nodes,
        tasks_per_node=1 if single_task else res.processes_per_node,
        cpus_per_task=res.cpus_per_task,
    )
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.mem_gb is not None:
        params["mem_gb"] = res.mem_gb
    if backend == "slurm":
        slurm: dict[str, Any] = dict(
            partition=res.partition,
            account=res.account,
            qos=res.qos,
            constraint=res.constraint,
            array_parallelism=res.array_parallelism,
            signal_delay_s=res.signal_delay_s,
            setup=list(res.setup) or None,
        )
        if res.processes > 1 and not single_task:
            # a rank that exits with an error ends the whole step at once, instead of leaving
            # the others blocked in a collective until its timeout
            slurm["srun_args"] = ["--kill-on-bad-exit=1"]
        extra = dict(res.sbatch)
        if dependency:
            slurm["dependency"] = "afterok:" + ":".join(dependency)
            extra.setdefault("kill-on-invalid-dep", "yes")  # a failed stage cancels training
        if extra:
            slurm["additional_parameters"] = extra
        params.update({f"slurm_{k}": v for k, v in slurm.items() if v is not None})
    elif backend == "local":
        if res.nodes > 1:
            raise ConfigError(
                f"the local backend runs on one node; {name} asks for "
                f"{res.nodes} (set cluster.nodes: 1 or use SLURM)"
            )
    ex.update_parameters(**params)
    return ex


def sbatch_script(ex, count: int) -> str:
    """The sbatch script submitit writes for `count` jobs (an array when count > 1)."""
    from submitit.slurm.slurm import _make_sbatch_string

    inner = ex._executor  # the SlurmExecutor behind AutoExecutor
    params = dict(inner.parameters)
    if count > 1:
        params["map_count"] = count
    return _make_sbatch_string(command=inner._submitit_command_str, folder=inner.folder, **params)


def resolve_backend_for_dry_run(requested: str) -> tuple[str, str | None, bool]:
    """(backend, note, show SLURM scripts): the backend a real launch would use, found by the
    launch's own check (`resolve_backend`: `auto` asks whether SLURM answers), but never
    failing: a dry run may show a SLURM plan anywhere."""
    if requested == "auto":
        backend, note = resolve_backend("auto")
        return backend, note, True
    if requested == "slurm":
        if shutil.which("sbatch"):
            return "slurm", None, True
        return "slurm", "no `sbatch` here: a real launch would fail (give --backend local)", True
    return requested, None, False
