"""Launch a sweep: `python -m scaling.launch SWEEP.yaml [--dry-run] [--retry-failed] ...`.

Expands the grid, writes every run's resolved `config.yaml`, prints the plan (run, depth, N,
training tokens, estimated training FLOPs and GPU-hours, nodes x GPUs) and submits through
submitit: on SLURM one job array per distinct resource shape (nodes, GPUs, time ...); with
the local backend (or when no `sbatch` is found) submitit's local executor, waiting for the
runs to finish; with the debug backend in this process.

Idempotent: a run that is done, or whose job is still queued or running (asked to SLURM, not
just read from status.json) is not submitted again; a failed run is resubmitted only with
`--retry-failed`; a lock on the output folder keeps two launchers from racing. Preparation
stages (synthetic images, VQVAE training, tokenisation shards, merge) are submitted first and
the training jobs depend on them (`afterok`), so one command runs the whole study. Jobs are
requeued on preemption and time-out by submitit and resume from their checkpoints. Job ids are
recorded the moment each job is submitted; `--retry-failed --reconfigure` sets a changed
failed run aside (attempts/) and starts it over; the exit code is 1 when any run failed
(each failure's first error line is printed), 128+signal when the launcher was stopped
(local jobs stop cleanly: scaling.local_jobs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from scaling.core import provenance
from scaling.core.atomic import atomic_write_text
from scaling.study.attempts import set_aside
from scaling.core.config_io import ConfigError, dump_yaml
from scaling.study.local_jobs import StopFlag, stop_signals, submit_shielded, terminate
from scaling.study.status import Queue, QueueError, format_table, queue_for, run_states
from scaling.study.sweep import (SWEEP_COPY, ClusterSpec, Run, Sweep, gpu_hours, human, load_sweep,
                           load_sweep_or_runs)


# ----------------------------------------------------------------------------- estimates

def store_meta(sweep: Sweep) -> tuple[dict[str, Any], bool]:
    """The token store's meta.json, or the sweep's `data.expect` stand-in; (meta, is_real)."""
    path = sweep.token_store() / "meta.json"
    try:
        return json.loads(path.read_text()), True
    except (OSError, ValueError):
        return sweep.expected_meta(), False


def estimate_run(run: Run, meta: dict[str, Any]) -> dict[str, Any]:
    """params, tokens, flops (exact count from shapes) and flops_6nd of one run."""
    from scaling.training.config import estimate

    return estimate(run.config, meta)


def plan_table(sweep: Sweep, runs: list[Run], states: dict[str, tuple] | None = None) -> str:
    """The launch table: one row per run, and a total line."""
    meta, real = store_meta(sweep)
    rows, total_flops, total_gpuh = [], 0.0, 0.0
    for run in runs:
        est = estimate_run(run, meta)
        res = run.resources
        gpus = res.nodes * res.gpus_per_node
        gh = gpu_hours(est["flops"], res) if gpus else None
        total_flops += est["own_flops"]  # a branch adds its cool-down only
        total_gpuh += gh or 0.0
        row = [("  " + run.run_id) if run.parent else run.run_id, str(run.depth), f"{est['params']:,}", human(est["tokens"]),
               f"{est['flops']:.3g}", f"{gh:,.0f}" if gh is not None else "-",
               f"{res.nodes}x{res.gpus_per_node}" if gpus else f"{res.nodes}x0 (CPU)"]
        if states is not None:
            row.append(states[run.run_id][0])
        rows.append(row)
    header = ["run", "depth", "N", "train tokens", "train FLOPs", "GPU-h", "nodes x GPUs"]
    if states is not None:
        header.append("state")
    notes = [f"{len(runs)} runs; total {total_flops:.3g} training FLOPs (exact (3 x forward, "
             f"from shapes)), "
             f"{total_gpuh:,.0f} GPU-hours at {sweep.spec.cluster.assumed_tflops_per_gpu:g} "
             f"TFLOP/s per GPU (assumed)"]
    if not real:
        notes.append(f"token store {sweep.token_store()} not readable yet: estimates use "
                     "data.expect (or what prepare will make)")
    warning = repeated_data_warning(runs, meta)
    if warning:
        notes.append(warning)
    return format_table(header, rows) + "\n" + "\n".join(notes)


def repeated_data_warning(runs: list[Run], meta: dict[str, Any]) -> str | None:
    """A warning line when some runs would see each stored token sequence more than
    `REPEAT_EPOCHS_OK` times (scaling.training.config.passes_per_sequence), else None."""
    from scaling.training.config import REPEAT_EPOCHS_OK, passes_per_sequence

    hits = []
    for run in runs:
        passes = passes_per_sequence(estimate_run(run, meta), meta, run.config.data.train_split)
        if passes > REPEAT_EPOCHS_OK:
            hits.append(f"{run.run_id} {passes:.3g}")
    if not hits:
        return None
    split = meta["splits"][runs[0].config.data.train_split]
    return (f"warning: repeated data is the likely regime: {len(hits)} of {len(runs)} runs see "
            f"each stored token sequence more than {REPEAT_EPOCHS_OK} times (passes = epochs / "
            f"(views x flips) with {split.get('views', 1)} view(s), flips "
            f"{'on' if split.get('flip') else 'off'}: {', '.join(hits)}). Rule: up to ~4 epochs of "
            f"repeated data cost little, beyond that each repeat is worth less and large models "
            f"overfit (Muennighoff et al. 2023, Scaling Data-Constrained Language Models). "
            f"Remedies: more views (tokenize --views K), fewer epochs, more images; "
            f"see docs/data.md")


# ----------------------------------------------------------------------------- executors

def slurm_available() -> tuple[bool, str]:
    """(usable, why not): `sbatch` is on PATH and the controller answers `sinfo`."""
    if not shutil.which("sbatch"):
        return False, "no `sbatch` found"
    try:
        ok = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True,
                            timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (True, "") if ok else (False, "`sbatch` is installed but the SLURM controller does not answer")


def resolve_backend(requested: str) -> tuple[str, str | None]:
    """(backend, note): 'auto' is SLURM when it is usable here, else local (with a note)."""
    if requested == "auto":
        usable, why = slurm_available()
        if usable:
            return "slurm", None
        return "local", f"{why}: running with submitit's local executor on this machine"
    if requested == "slurm" and not shutil.which("sbatch"):
        raise SystemExit("error: cluster.backend is slurm but no `sbatch` is on PATH")
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


def executor_for(sweep: Sweep, backend: str, res: ClusterSpec, name: str,
                 dependency: list[str] | None = None, script_only: bool = False):
    """A submitit executor for jobs of resource shape `res` (`script_only`: SLURM scripts
    for a dry run, usable without SLURM installed)."""
    import submitit

    folder = sweep.output / "_submitit" / "%j"
    cluster = {"slurm": "slurm", "local": "local", "debug": "debug"}[backend]
    if script_only:
        ex = _script_only_slurm_executor(folder, res.max_requeues)
    else:
        ex = submitit.AutoExecutor(folder=folder, cluster=cluster,
                                   slurm_max_num_timeout=res.max_requeues)
    params: dict[str, Any] = dict(name=name, timeout_min=res.time_min, nodes=res.nodes,
                                  tasks_per_node=res.tasks_per_node,
                                  cpus_per_task=res.cpus_per_task)
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.mem_gb is not None:
        params["mem_gb"] = res.mem_gb
    if backend == "slurm":
        slurm: dict[str, Any] = dict(partition=res.partition, account=res.account, qos=res.qos,
                                     constraint=res.constraint,
                                     array_parallelism=res.array_parallelism,
                                     signal_delay_s=res.signal_delay_s,
                                     setup=list(res.setup) or None)
        extra = dict(res.sbatch)
        if dependency:
            slurm["dependency"] = "afterok:" + ":".join(dependency)
            extra.setdefault("kill-on-invalid-dep", "yes")  # a failed stage cancels training
        if extra:
            slurm["additional_parameters"] = extra
        params.update({f"slurm_{k}": v for k, v in slurm.items() if v is not None})
    elif backend == "local":
        if res.nodes > 1:
            raise SystemExit(f"error: the local backend runs on one node; {name} asks for "
                             f"{res.nodes} (set cluster.nodes: 1 or use SLURM)")
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


# ----------------------------------------------------------------------------- jobs

def train_job() -> Callable:
    """The callable submitted for each run: `scaling.training.job.TrainJob()` (checkpointable)."""
    from scaling.training.job import TrainJob

    return TrainJob()


class PrepareJob:
    """A preparation stage as a job: `PrepareJob()(sweep_file, stage, shard)`.

    Stages: 'synthetic' (scaling.data.synthetic.generate), 'vqvae' (scaling.train_vqvae),
    'tokenize' (one shard of scaling.tokenize, or all when there is one shard), 'merge'
    (assemble the shards), 'classifier' (scaling.classifier: the demo's sample metric). All
    of them resume from what is on disk, so on preemption or time-out the job is simply
    requeued (`checkpoint`).
    """

    def __call__(self, sweep_file: str, stage: str, shard: int | None = None) -> str:
        from scaling.core.rundir import RunDir

        sweep = load_sweep(sweep_file)
        record = RunDir(stage_dir(sweep, stage, shard))
        record.update_status(state="running", force=True, started_at=time.time(), progress=None)
        last = [0.0]

        def relay(progress: dict) -> None:  # status.json, at most every 2 s (the launcher reads it)
            now = time.monotonic()
            if now - last[0] >= 2.0 or progress.get("done") == progress.get("total"):
                last[0] = now
                record.update_status(progress=progress)

        try:
            with stage_policy(sweep, stage).applied():  # threads, TF32; restored after
                out = run_stage(sweep, stage, shard, relay)
        except BaseException as e:
            if not isinstance(e, (KeyboardInterrupt, SystemExit)):
                record.update_status(state="failed", finished_at=time.time(),
                                     error=f"{type(e).__name__}: {e}")
            raise
        record.update_status(state="done", finished_at=time.time(), output=str(out))
        return str(out)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit on preemption/time-out: run the same stage again (it resumes)."""
        import submitit

        return submitit.helpers.DelayedSubmission(PrepareJob(), *args, **kwargs)


def stage_policy(sweep: Sweep, stage: str):
    """The runtime policy (scaling.runtime) of a preparation stage: fp32 on the stage's
    device, TF32 on CUDA, the policy's CPU threads (1: see scaling.runtime on why)."""
    from scaling.core.runtime import resolve

    device = "auto"
    if stage == "vqvae":
        device = (sweep.spec.prepare.vqvae or {}).get("device", "auto")
    return resolve(None, device=device, precision="fp32")


def run_stage(sweep: Sweep, stage: str, shard: int | None,
              report: Callable[[dict], None] | None = None) -> Path:
    """Run one preparation stage of `sweep` in this process; returns its output path.

    `report` receives the stage's progress records (VQVAE: steps, images/s, ETA, PSNR;
    tokenisation: images, images/s, ETA); `PrepareJob` relays them to the stage's status."""
    spec = sweep.spec.prepare
    if stage == "synthetic":
        from scaling.data.synthetic import generate

        s = spec.synthetic
        return generate(sweep.images_dir(), num_classes=s.num_classes,
                        train_per_class=s.train_per_class, val_per_class=s.val_per_class,
                        resolution=s.resolution, seed=s.seed)
    if stage == "vqvae":
        from scaling.data.vqvae_training import VQVAETrainConfig, train_vqvae

        cfg = VQVAETrainConfig(images=sweep.images_dir(), out=sweep.data_dir / "vqvae",
                               **(spec.vqvae or {}))
        return train_vqvae(cfg, report=report)
    if stage in ("tokenize", "merge"):
        from scaling.data.tokenize import tokenize

        n = spec.tokenize.shards
        kwargs: dict[str, Any] = dict(batch_size=spec.tokenize.batch_size, num_shards=n,
                                      views=spec.tokenize.views, flip=spec.tokenize.flip,
                                      view_seed=spec.tokenize.view_seed)
        if stage == "merge":
            kwargs["merge_only"] = True
        elif n > 1:
            kwargs.update(shard=shard, merge=False)
        return tokenize(sweep.images_dir(), sweep.vqvae_path(), sweep.token_store(), report=report,
                        **kwargs)
    if stage == "classifier":
        from scaling.data.classifier import train_classifier

        return train_classifier(sweep.images_dir(), sweep.classifier_path(),
                                **dataclasses.asdict(spec.classifier))
    raise ValueError(f"unknown preparation stage {stage!r}")


def stage_dir(sweep: Sweep, stage: str, shard: int | None = None) -> Path:
    """Where a preparation stage's status.json lives."""
    name = stage if shard is None else f"{stage}-{shard}"
    return sweep.data_dir / "jobs" / name


def stage_done(sweep: Sweep, stage: str) -> bool:
    """Whether a stage's output is complete on disk."""
    if stage == "synthetic":
        from scaling.core.rundir import RunDir

        return RunDir(stage_dir(sweep, stage)).read_status().get("state") == "done"
    if stage == "vqvae":
        return sweep.vqvae_path().is_file()
    if stage == "classifier":
        return sweep.classifier_path().is_file()
    return (sweep.token_store() / "meta.json").is_file()


# ----------------------------------------------------------------------------- launching

@dataclasses.dataclass
class Submitted:
    """What one launch did."""

    submitted: list[str] = dataclasses.field(default_factory=list)  # run ids
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # run id -> why
    stages: list[str] = dataclasses.field(default_factory=list)  # preparation jobs submitted
    jobs: dict[str, Any] = dataclasses.field(default_factory=dict)  # run id -> submitit job
    backend: str = ""
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # run id -> first error line
    stopped: list[str] = dataclasses.field(default_factory=list)  # runs stopped by a signal
    signal: int | None = None  # the signal that stopped the launcher (local backend)


def check_output(output: Path) -> None:
    """The sweep's output must be a folder (or not exist yet)."""
    if output.exists() and not output.is_dir():
        raise SystemExit(f"error: output {output} (the sweep's `output:`) is a file, not a "
                         "folder; give another output path")


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Exclusive lock on the sweep's output folder for the duration of a launch."""
    check_output(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SystemExit(f"error: output {output} (the sweep's `output:`) is a file, not a "
                         "folder; give another output path") from None
    except OSError as e:
        raise SystemExit(f"error: cannot create the output folder {output}: "
                         f"{e.strerror or e}") from None
    with open(output / ".launch.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"error: another launch is running on {output}") from None
        yield


def config_conflict(run: Run, state: str) -> str | None:
    """Why run.config may not be written to its run directory (None: it may).

    A run that was ever submitted keeps its config: a different one would mix two
    experiments in one directory (and resume one from the other's checkpoint).
    """
    path = run.run_dir / "config.yaml"
    if state == "pending" or not path.exists():
        return None
    from scaling.training.config import load_run_config

    try:
        same = load_run_config(path) == run.config
    except ConfigError:
        same = False
    if same:
        return None
    hint = ("relaunch with --retry-failed --reconfigure to keep the old files in "
            f"{run.run_dir / 'attempts'} and start over with the new config"
            if state in ("failed", "stopped", "orphaned") else
            "restore the sweep (a run that is done, queued or running keeps its config)")
    return (f"{path} holds another config than the sweep now gives for run {run.run_id} "
            f"(state {state}); {hint}")


def write_run_config(run: Run) -> None:
    """Write run.config to `<run_dir>/config.yaml` (when it changed), headed by a comment per
    command-line set that changed it (the key, its resolved value, the --set as typed)."""
    path = run.run_dir / "config.yaml"
    text = "".join(f"# {key}: {value!r} from the command line (--set {typed})\n"
                   for key, (value, typed) in run.sets.items()) + dump_yaml(run.config)
    if not path.exists() or path.read_text() != text:
        atomic_write_text(path, text)


def write_fit_defaults(sweep: Sweep) -> Path | None:
    """`<output>/fit.yaml`: the sweep's `fit:` section (the keys it gives), the defaults of
    `python -m scaling.fit <output>`."""
    if not sweep.spec.fit:
        return None
    path = sweep.output / "fit.yaml"
    atomic_write_text(path, dump_yaml(sweep.spec.fit))
    return path


def write_grid(sweep: Sweep, runs: list[Run]) -> Path:
    """`<output>/grid.yaml`: the axes and every run's axis values, for the tidy table's
    ``grid.<axis>`` columns (analysis.results.read_grid), and `<output>/sweep.yaml`, the
    sweep file as launched (so that launch, status and fit accept the output folder).

    Runs of earlier launches are kept (another --set makes other runs in the same folder);
    a command-line set key that changed runs becomes an axis, its value read from each
    run's config.yaml for the runs that did not set it.
    """
    import yaml

    from scaling.core.config_io import to_dict

    path = sweep.output / "grid.yaml"
    old: dict[str, Any] = {}
    if path.exists():
        try:
            old = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            old = {}
    axes = list(dict.fromkeys([*sweep.spec.grid, *(old.get("axes") or []),
                               *(k for r in runs for k in r.sets)]))
    labels = {**(old.get("labels") or {}), **{a: sweep_label(a, sweep) for a in axes}}
    entries: dict[str, dict] = dict(old.get("runs") or {})
    for run in runs:  # this launch's runs: every axis from the resolved config
        entries[run.run_id] = {**{a: _leaf_value(run.data, a) for a in axes}, **run.axes,
                               **{k: v for k, (v, _) in run.sets.items()}}
    for run_id, point in entries.items():  # earlier runs: a new axis from their config.yaml
        for axis in axes:
            if axis not in point:
                point[axis] = _config_value(sweep.output / run_id / "config.yaml", axis)
    doc = {"sweep": sweep.spec.name, "axes": axes, "labels": labels,
           "runs": {k: to_dict(v) for k, v in sorted(entries.items())}}
    sweep.output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))
    source = Path(sweep.source)
    if source.resolve() != (sweep.output / SWEEP_COPY).resolve():
        atomic_write_text(sweep.output / SWEEP_COPY, source.read_text())
    return path


def sweep_label(axis: str, sweep: Sweep) -> str:
    """The run-id label of an axis ('d', 'lr', ...)."""
    from scaling.study.sweep import _label

    return _label(axis, sweep.spec.labels)


def _config_value(config_yaml: Path, axis: str) -> Any:
    try:
        import yaml

        data = yaml.safe_load(config_yaml.read_text())
    except (OSError, ValueError):
        return None
    return _leaf_value(data, axis)


def _leaf_value(data: Any, axis: str) -> Any:
    """The value of a grid axis (or set key) in a run's plain config data; None if absent."""
    from scaling.study.sweep import AXIS_KEYS

    for part in AXIS_KEYS.get(axis, axis).split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def launch(sweep: Sweep, *, only: str | None = None, exclude: str | None = None,
           retry_failed: bool = False, reconfigure: bool = False, backend: str | None = None,
           wait: bool | None = None, queues: dict[str, Queue] | None = None,
           job_factory: Callable[[], Callable] = train_job,
           log: Callable[[str], None] = print) -> Submitted:
    """Submit the runs of `sweep` that need it (see the module docstring).

    `wait`: block until the submitted jobs end (default: yes for local and debug, no for
    SLURM). `reconfigure` (with `retry_failed`): a failed, stopped or orphaned run whose
    config changed is set aside into attempts/ and started over. `queues` and `job_factory`
    replace the scheduler query and the training callable (tests). The result's `failed`
    and `stopped` list the runs that ended so (exit code of `main`).
    """
    backend, note = resolve_backend(backend or sweep.spec.cluster.backend)
    if note:
        log(note)
    wait = backend != "slurm" if wait is None else wait
    flag = StopFlag()
    with stop_signals(flag) if wait and backend != "debug" else contextlib.nullcontext():
        with _reporting(sweep, log, enabled=wait and backend != "debug"):
            return _launch(sweep, backend, wait, only=only, exclude=exclude,
                           retry_failed=retry_failed, reconfigure=reconfigure, queues=queues,
                           job_factory=job_factory, log=log, flag=flag)


def check_data(sweep: Sweep) -> None:
    """A sweep on an existing token store: the store must open (found now, not by the jobs)."""
    if sweep.spec.data.tokens is None:
        return
    from scaling.data.token_store import TokenStore, TokenStoreError

    try:
        store = TokenStore(sweep.spec.data.tokens)
    except TokenStoreError as e:
        raise ConfigError(f"{sweep.source}: data.tokens: {e}") from None
    for run in sweep.runs:
        for key in ("train_split", "eval_split"):
            split = getattr(run.config.data, key)
            if split not in store.splits:
                raise ConfigError(f"{sweep.source}: data.{key}: run {run.run_id} asks for split "
                                  f"{split!r}; token store {store.path} has {store.splits}")


def _launch(sweep: Sweep, backend: str, wait: bool, *, only, exclude, retry_failed, reconfigure,
            queues, job_factory, log, flag: StopFlag) -> Submitted:
    from scaling.core.rundir import RunDir

    out = Submitted(backend=backend)
    runs = sweep.select(only, exclude)
    check_data(sweep)
    with output_lock(sweep.output):
        try:
            states = run_states(runs, queues)
        except QueueError as e:
            raise SystemExit(f"error: cannot ask the scheduler which runs are queued or running "
                             f"({e}); submitting nothing, as that could start a second job on "
                             "a run directory") from None
        conflicts = {r.run_id: c for r in runs
                     if (c := config_conflict(r, states[r.run_id][0]))}
        for run in runs:  # set aside what --retry-failed --reconfigure may replace
            state, _, rec = states[run.run_id]
            if run.run_id in conflicts and retry_failed and reconfigure and \
                    state in ("failed", "stopped", "orphaned"):
                dest = set_aside(run.run_dir, f"--reconfigure: the sweep {sweep.source} now gives "
                                 f"another config (the run was {state})", rec)
                log(f"{run.run_id}: {state} attempt kept in {dest}; starting over with the new config")
                del conflicts[run.run_id]
                states[run.run_id] = ("pending", None, {"state": "pending"})
        if conflicts:
            raise SystemExit("error: " + "\nerror: ".join(conflicts.values()))
        # only now: a refused launch changes nothing already written
        write_fit_defaults(sweep)
        write_grid(sweep, list(sweep.runs))
        todo: list[Run] = []
        for run in runs:
            state, slurm, rec = states[run.run_id]
            if state == "failed" and rec.get("state") in ("queued", "running"):  # job ended
                RunDir(run.run_dir).update_status(
                    state=state, slurm_state=slurm,
                    error=rec.get("error") or f"job {rec.get('job_ids', ['?'])[-1]} ended "
                                              f"{slurm} without finishing the run")
            write_run_config(run)
            if state == "done":
                out.skipped[run.run_id] = "done"
            elif state in ("queued", "running"):
                jobs = rec.get("job_ids") or []
                out.skipped[run.run_id] = f"{state} (job {jobs[-1]})" if jobs and not \
                    rec.get("waiting_in") else f"{state} (in another launcher)"
            elif state == "failed" and not retry_failed:
                out.skipped[run.run_id] = "failed (use --retry-failed)"
                out.failed[run.run_id] = first_line(RunDir(run.run_dir).read_status().get("error"))
            else:  # pending, stopped, orphaned (resume), failed with --retry-failed
                todo.append(run)
        if todo:
            deps = _submit_stages(sweep, backend, out, log)
            plain = [r for r in todo if r.parent is None]
            if plain:
                _submit_runs(sweep, plain, backend, deps, out, job_factory, log, wait, flag)
            branches = [r for r in todo if r.parent is not None]
            if branches and not flag.set:
                _submit_branches(sweep, branches, backend, deps, out, job_factory, log, wait,
                                 flag)
        else:
            log(f"nothing to submit ({len(out.skipped)} runs done, queued, running or failed)")
    if wait and out.jobs and backend != "local":
        _wait(out, log, flag)
    if wait and out.jobs:
        _report(sweep, out, log)
    for run_id, line in out.failed.items():
        if run_id in out.skipped:
            log(f"{run_id}: failed earlier: {line}")
    return out


def first_line(error: Any) -> str:
    """The first line of a recorded error ('?' when none was recorded)."""
    text = str(error or "").strip()
    return text.splitlines()[0] if text else "?"


@contextlib.contextmanager
def _reporting(sweep: Sweep, log, enabled: bool, every_s: float = 15.0):
    """While the launcher blocks on local jobs, print a progress line whenever it changes."""
    if not enabled:
        yield
        return
    stop = threading.Event()
    t0 = time.monotonic()

    def report() -> None:
        last = None
        while not stop.wait(every_s):
            line = progress_line(sweep)
            if line != last:
                minutes, seconds = divmod(int(time.monotonic() - t0), 60)
                log(f"[{minutes:2d}m{seconds:02d}s] {line}")
                last = line

    thread = threading.Thread(target=report, name="launch-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def progress_line(sweep: Sweep) -> str:
    """'prepare: vqvae running [200/500 steps, ..., PSNR 19.8 dB] | d1 done (ce_avg 3.412) |
    d2 57% ETA 1m10s | d3 queued ...'."""
    from scaling.core.rundir import RunDir
    from scaling.study.status import duration, stage_summary

    parts = []
    stages = stage_summary(sweep)
    if stages and any(s in stages for s in ("running", "queued", "pending", "failed")):
        parts.append(f"prepare: {stages}")
    for run in sweep.runs:
        rec = RunDir(run.run_dir).read_status()
        state = rec.get("state", "pending")
        if state == "running" and rec.get("total_steps"):
            eta = f" ETA {duration(rec['eta_s'])}" if isinstance(rec.get("eta_s"), (int, float)) else ""
            parts.append(f"{run.run_id} {100 * rec.get('step', 0) / rec['total_steps']:.0f}%{eta}")
        elif state == "done" and isinstance(rec.get("final", {}).get("ce_avg"), float):
            parts.append(f"{run.run_id} done (ce_avg {rec['final']['ce_avg']:.3f})")
        else:
            parts.append(f"{run.run_id} {state}")
    return " | ".join(parts)


def _submit_stages(sweep: Sweep, backend: str, out: Submitted, log) -> list[str]:
    """Submit the preparation stages not done yet; return the job ids training waits for."""
    from scaling.core.rundir import RunDir

    stages = sweep.stages()
    if not stages:
        return []
    res_spec = sweep.spec.prepare.resources
    res = dataclasses.replace(sweep.spec.cluster, nodes=1, gpus_per_node=res_spec.gpus_per_node,
                              cpus_per_task=res_spec.cpus_per_task, mem_gb=res_spec.mem_gb,
                              time_min=res_spec.time_min)
    shards = sweep.spec.prepare.tokenize.shards
    plan: list[tuple[str, list[int | None]]] = []
    for stage in stages:
        if stage == "tokenize":
            plan.append(("tokenize", list(range(shards)) if shards > 1 else [None]))
            if shards > 1:
                plan.append(("merge", [None]))
        else:
            plan.append((stage, [None]))
    deps: list[str] = []
    queue = queue_for(backend)
    sweep_file = str(Path(sweep.source).resolve())
    for stage, shard_list in plan:
        if stage_done(sweep, "tokenize" if stage == "merge" else stage):
            continue
        live: list[str] = []
        pending: list[int | None] = []
        for shard in shard_list:
            rec = RunDir(stage_dir(sweep, stage, shard)).read_status()
            ids = rec.get("job_ids") or []
            if rec.get("state") == "done":
                continue
            if ids and rec.get("state") in ("queued", "running") and \
                    queue.states([ids[-1]]).get(ids[-1]) in _active():
                live.append(ids[-1])
            else:
                pending.append(shard)
        new_ids: list[str] = []
        if pending:
            ex = executor_for(sweep, backend, res, f"{sweep.spec.name}-{stage}", deps)
            for shard in pending:
                RunDir(stage_dir(sweep, stage, shard)).update_status(state="queued", force=True,
                                                                     error=None)
            if len(pending) > 1 and backend == "slurm":
                jobs = ex.map_array(PrepareJob(), [sweep_file] * len(pending),
                                    [stage] * len(pending), pending)
            else:
                jobs = [ex.submit(PrepareJob(), sweep_file, stage, s) for s in pending]
            for shard, job in zip(pending, jobs):
                _record_submission(RunDir(stage_dir(sweep, stage, shard)), job, backend)
                new_ids.append(str(job.job_id))
                out.stages.append(f"{stage}" + (f"[{shard}]" if shard is not None else ""))
            log(f"submitted {stage}" + (f" ({len(pending)} shards)" if shard_list != [None] else "")
                + f": jobs {', '.join(new_ids)}" + (f" after {', '.join(deps)}" if deps else ""))
            if backend != "slurm":  # no dependencies outside SLURM: finish the stage first
                for shard, job in zip(pending, jobs):
                    try:
                        job.result()
                    except Exception as e:
                        raise SystemExit(f"error: preparation stage {stage}"
                                         + (f" shard {shard}" if shard is not None else "")
                                         + f" failed (log: {job.paths.stderr}): "
                                         + (str(e).strip().splitlines() or ["?"])[-1]) from None
                new_ids = []
        deps = live + new_ids if (live or new_ids) else deps
    return deps


def _active() -> set[str]:
    from scaling.study.status import ACTIVE

    return ACTIVE


def _record_submission(record, job, backend: str, **extra: Any) -> None:
    """Record a job the moment it is submitted: its id (and, locally, the controller's start
    time). The state is not touched: the job may already have written running or failed."""
    from scaling.core.runlock import process_start

    status = record.read_status()
    record.update_status(
        job_ids=list(status.get("job_ids") or []) + [str(job.job_id)],
        job_start=process_start(job.job_id) if backend == "local" else None,
        attempts=int(status.get("attempts") or 0) + 1, submitted_at=time.time(),
        backend=backend, log=str(job.paths.stdout), waiting_in=None, **extra)


def _mark_queued(run: Run, backend: str, waiting: bool) -> None:
    """Before submitting: queued, error cleared (a resubmission may replace a final state)."""
    from scaling.core.rundir import RunDir
    from scaling.core.runlock import me

    RunDir(run.run_dir).update_status(state="queued", force=True, error=None, slurm_state=None,
                                      backend=backend, waiting_in=me() if waiting else None)


def _submit_segmented(sweep: Sweep, run: Run, backend: str, deps: list[str], out: Submitted,
                      job_factory, log) -> None:
    """SLURM: a WSD run with decay branches as a chain of jobs, one per branch point (each
    `afterok` on the one before), so that each branch can wait for its point only."""
    from scaling.core.rundir import RunDir

    record = RunDir(run.run_dir)
    record.update_status(state="queued", force=True, error=None)
    segments: dict[str, str] = {}
    prev = list(deps)
    for until in [*run.config.save_at, None]:
        ex = executor_for(sweep, backend, run.resources, sweep.spec.name, prev)
        job = ex.submit(job_factory(), str(run.run_dir.resolve()), until)
        if until is not None:
            segments[repr(until)] = str(job.job_id)
        prev = [str(job.job_id)]
        _record_submission(record, job, backend, segment_jobs=dict(segments))
    out.submitted.append(run.run_id)
    out.jobs[run.run_id] = job
    log(f"submitted {run.run_id} in {len(segments) + 1} segments (jobs "
        f"{', '.join([*segments.values(), prev[0]])}; branch points {list(run.config.save_at)})"
        + (f" after {', '.join(deps)}" if deps else "") + f" [{backend}]")


def _submit_branches(sweep: Sweep, branches: list[Run], backend: str, deps: list[str],
                     out: Submitted, job_factory, log, wait: bool, flag: StopFlag) -> None:
    """Decay branches: on SLURM each `afterok` on its parent's segment that reaches its
    branch point; elsewhere after the parents of this launch have ended (each branch whose
    parent is done is run)."""
    from scaling.core.rundir import RunDir

    by_id = {r.run_id: r for r in sweep.runs}
    if backend != "slurm":
        for parent in {b.parent for b in branches}:
            job = out.jobs.get(parent)
            if job is not None:
                with contextlib.suppress(Exception):  # the parent's status says why
                    job.result()
    ready: list[tuple[Run, list[str]]] = []
    for run in branches:
        parent = by_id[run.parent]
        rec = RunDir(parent.run_dir).read_status()
        key = repr(run.config.branch.at)
        if backend == "slurm" and rec.get("state") in ("queued", "running"):
            segment = (rec.get("segment_jobs") or {}).get(key)
            if segment is None:  # submitted without segments: wait for the whole run
                segment = (rec.get("job_ids") or [None])[-1]
            live = segment is not None and queue_for(backend).states([segment]).get(segment) in _active()
            ready.append((run, [segment] if live else list(deps)))
        elif rec.get("state") == "done" or (rec.get("step") or 0) > 0 and \
                rec.get("segment_done") is not None and rec["segment_done"] >= run.config.branch.at:
            ready.append((run, []))
        else:
            out.skipped[run.run_id] = f"waiting for its parent {run.parent} ({rec.get('state', 'pending')})"
            log(f"{run.run_id}: not submitted: its parent {run.parent} is {rec.get('state', 'pending')}")
    if backend != "slurm":  # no dependencies: one pool, at most array_parallelism at once
        if ready:
            _submit_runs(sweep, [run for run, _ in ready], backend, [], out, job_factory, log,
                         wait, flag)
        return
    for run, run_deps in ready:
        _submit_runs(sweep, [run], backend, run_deps, out, job_factory, log, wait, flag)


def _submit_runs(sweep: Sweep, todo: list[Run], backend: str, deps: list[str], out: Submitted,
                 job_factory, log, wait: bool, flag: StopFlag) -> None:
    from scaling.core.rundir import RunDir

    meta, _ = store_meta(sweep)
    groups: dict[tuple, list[Run]] = {}
    for run in todo:
        if backend == "slurm" and getattr(run.config, "save_at", ()):
            _submit_segmented(sweep, run, backend, deps, out, job_factory, log)
            continue
        groups.setdefault(run.resources.shape(), []).append(run)
    budgets = {}
    for run in todo:
        try:
            budgets[run.run_id] = estimate_run(run, meta)["tokens"]
        except Exception:  # estimates are informative only
            budgets[run.run_id] = None
    for runs in groups.values():
        res = runs[0].resources
        ex = executor_for(sweep, backend, res, sweep.spec.name, deps)
        shape = f"{res.nodes}x{res.gpus_per_node} GPUs" if res.gpus_per_node else "CPU"
        if backend == "local":
            log(f"submitting {len(runs)} runs ({shape}, {res.time_min} min) as local jobs, "
                f"{res.array_parallelism} at a time")
            _local_pool(ex, job_factory, runs, res.array_parallelism, out, log, flag,
                        budgets, wait)
            continue
        previous = {run.run_id: RunDir(run.run_dir).read_status() for run in runs}
        for run in runs:  # before submitting: the job may start (and write) at once
            _mark_queued(run, backend, waiting=False)
            provenance.record_launch(run.run_dir, sweep.source)
        dirs = [str(run.run_dir.resolve()) for run in runs]
        try:
            if backend == "slurm" and len(runs) > 1:
                jobs = ex.map_array(job_factory(), dirs)
            else:
                jobs = [ex.submit(job_factory(), d) for d in dirs]
        except Exception as e:  # sbatch refused: nothing was queued, say so in every run
            why = first_line(e)
            for run in runs:
                RunDir(run.run_dir).update_status(
                    state=previous[run.run_id].get("state", "pending"), force=True,
                    error=f"submission failed: {why}")
            raise SystemExit(f"error: submitting {len(runs)} runs failed ({why}); they are "
                             "recorded as not submitted, fix the cause and launch again") from None
        for run, job in zip(runs, jobs):
            _record_submission(RunDir(run.run_dir), job, backend,
                               budget_tokens=budgets[run.run_id])
            out.submitted.append(run.run_id)
            out.jobs[run.run_id] = job
        log(f"submitted {len(runs)} runs ({shape}, {res.time_min} min) as "
            + (f"array {jobs[0].job_id.split('_')[0]}" if backend == "slurm" and len(runs) > 1
               else f"jobs {', '.join(j.job_id for j in jobs)}")
            + (f" after {', '.join(deps)}" if deps else "") + f" [{backend}]")


def _local_pool(ex, job_factory, runs: list[Run], parallelism: int, out: Submitted, log,
                flag: StopFlag, budgets: dict, wait: bool) -> None:
    """Local backend: at most `parallelism` runs at once; each job is recorded the moment it
    starts; the others are queued *in this launcher* (status.json `waiting_in`). A stop
    signal (see scaling.local_jobs) terminates the running jobs cleanly and puts the
    waiting runs back to pending."""
    from scaling.core.rundir import RunDir

    waiting = list(runs)
    for run in waiting:
        _mark_queued(run, "local", waiting=True)
    live: dict[str, Any] = {}
    while waiting or (wait and any(not j.done() for j in live.values())):
        if flag.set:
            break
        while waiting and sum(not j.done() for j in live.values()) < parallelism:
            run = waiting.pop(0)
            job = submit_shielded(ex.submit, job_factory(), str(run.run_dir.resolve()))
            _record_submission(RunDir(run.run_dir), job, "local",
                               budget_tokens=budgets[run.run_id])
            live[run.run_id] = out.jobs[run.run_id] = job
            out.submitted.append(run.run_id)
            log(f"{run.run_id}: started as local job {job.job_id}")
        if not wait and not waiting:
            break
        time.sleep(0.2)
    if flag.set:
        name = signal.Signals(flag.signum).name
        out.signal = flag.signum
        for run in waiting:
            RunDir(run.run_dir).update_status(state="pending", force=True, waiting_in=None,
                                              note=f"not started: the launcher got {name}")
        running = {r: j for r, j in live.items() if not j.done()}
        log(f"{name}: stopping {len(running)} running local jobs (each checkpoints at its next "
            f"step and is recorded stopped); {len(waiting)} waiting runs back to pending")
        for job in running.values():
            terminate(job)
        while any(not j.done() for j in running.values()):
            time.sleep(0.2)


def _wait(out: Submitted, log, flag: StopFlag) -> None:
    """Block until every submitted (SLURM or debug) job has ended, or a stop signal (then
    the SLURM jobs go on: `scaling.status` follows them)."""
    for run_id, job in out.jobs.items():
        if out.backend == "debug":
            job.exception()  # runs it here (unlike result(), no debugger on a failure)
            continue
        while not flag.set and not job.done():
            time.sleep(0.5)
        if flag.set:
            out.signal = flag.signum
            log(f"{signal.Signals(flag.signum).name}: no longer waiting; the submitted jobs go "
                "on (python -m scaling.status follows them)")
            return


def _report(sweep: Sweep, out: Submitted, log) -> None:
    """After waiting: one line per run that did not finish (its first error line), counts."""
    from scaling.core.rundir import RunDir

    done = 0
    for run_id, job in out.jobs.items():
        record = RunDir(sweep.output / run_id)
        rec = record.read_status()
        state = rec.get("state")
        if state == "done":
            done += 1
            continue
        if state == "stopped":
            out.stopped.append(run_id)
            log(f"{run_id}: stopped at step {rec.get('step', '?')} (checkpointed; launch again "
                "to resume)")
            continue
        if out.signal is not None and state in ("queued", "running"):
            continue  # SLURM jobs left running
        if state != "failed":  # the job ended without recording why: ask submitit
            why = "the job ended without finishing the run"
            try:
                e = job.exception()
            except Exception as err:  # noqa: BLE001 -- submitit could not read the job's result
                e = err
            if e is not None and str(e).strip():
                why = first_line(str(e).strip().splitlines()[-1])
            rec = record.update_status(state="failed", finished_at=time.time(),
                                       error=f"{why} (log: {job.paths.stderr})")
        out.failed[run_id] = first_line(rec.get("error"))
        log(f"{run_id}: failed: {out.failed[run_id]}")
    log(f"{done} runs finished, {len(out.failed)} failed"
        + (f", {len(out.stopped)} stopped" if out.stopped else ""))


def dry_run(sweep: Sweep, only: str | None, exclude: str | None, backend: str | None,
            log: Callable[[str], None] = print) -> None:
    """Print the plan and, for SLURM, the sbatch script of every job (array); submit nothing."""
    backend, note = resolve_backend_for_dry_run(backend or sweep.spec.cluster.backend)
    runs = sweep.select(only, exclude)
    log(f"sweep {sweep.spec.name}: {len(runs)} runs -> {sweep.output} (backend {backend}"
        + (f"; {note}" if note else "") + ")")
    log(plan_table(sweep, runs))
    stages = sweep.stages()
    if stages:
        log("preparation stages (training waits for them): " + " -> ".join(stages))
    segmented = [r for r in runs if r.parent is None and getattr(r.config, "save_at", ())]
    branches = [r for r in runs if r.parent is not None]
    for run in segmented:
        log(f"{run.run_id}: a chain of {len(run.config.save_at) + 1} jobs, one segment up to each "
            f"branch point {list(run.config.save_at)} then the rest, each afterok on the one before")
    for run in branches:
        log(f"{run.run_id}: one job, afterok on the segment of {run.parent} that reaches "
            f"{run.config.branch.at} of its length")
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if run in branches:
            continue
        groups.setdefault(run.resources.shape(), []).append(run)
    for group in groups.values():
        ex = executor_for(sweep, "slurm", group[0].resources, sweep.spec.name,
                          ["PREPARE_JOB_IDS"] if stages else None, script_only=True)
        log(f"\n# sbatch script for {', '.join(r.run_id for r in group)} "
            f"({'array of ' + str(len(group)) if len(group) > 1 else 'one job'}; each task "
            f"calls scaling.training.job.TrainJob()(<output>/<run_id>))")
        log(sbatch_script(ex, len(group)))


def resolve_backend_for_dry_run(requested: str) -> tuple[str, str | None]:
    """Like resolve_backend, but never fails: a dry run may show a SLURM plan anywhere."""
    if requested in ("auto", "slurm"):
        note = None if shutil.which("sbatch") else "no `sbatch` here: a real launch would " + (
            "run locally" if requested == "auto" else "fail")
        return "slurm", note
    return requested, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaling.launch",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path,
                        help="the sweep file (YAML), or its output folder (runs/NAME: the copy "
                             "of the sweep file the launcher keeps there)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run-config key for every run (repeatable), checked like "
                             "the file; a changed value makes new run ids (e.g. --set "
                             "optim.base_lr=3e-3 --set length.epochs=3)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and the sbatch scripts; submit nothing")
    parser.add_argument("--only", help="comma-separated run-id patterns (globs), e.g. 'd6,d1*'")
    parser.add_argument("--exclude", help="comma-separated run-id patterns to leave out")
    parser.add_argument("--retry-failed", action="store_true", help="resubmit failed runs")
    parser.add_argument("--reconfigure", action="store_true",
                        help="with --retry-failed: a failed (or stopped) run whose config the "
                             "sweep now gives differently is moved into <run>/attempts/<n>/ "
                             "with the reason, and started over with the new config")
    parser.add_argument("--backend", choices=["auto", "slurm", "local", "debug"],
                        help="override cluster.backend")
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument("--wait", dest="wait", action="store_true", default=None,
                      help="wait for the jobs to end (default for local/debug)")
    wait.add_argument("--no-wait", dest="wait", action="store_false",
                      help="return after submitting (default for SLURM)")
    args = parser.parse_args(argv)
    if args.reconfigure and not args.retry_failed:
        parser.error("--reconfigure only goes with --retry-failed")
    from scaling.core.rundir import CorruptStatus

    try:
        sweep = load_sweep_or_runs(args.sweep, args.sets)
        if args.dry_run:
            dry_run(sweep, args.only, args.exclude, args.backend)
            return 0
        runs = sweep.select(args.only, args.exclude)
        if not runs:
            print("error: --only/--exclude leave no runs", file=sys.stderr)
            return 2
        check_data(sweep)
        check_output(sweep.output)
        print(plan_table(sweep, runs, run_states(runs)))
        out = launch(sweep, only=args.only, exclude=args.exclude, retry_failed=args.retry_failed,
                     reconfigure=args.reconfigure, backend=args.backend, wait=args.wait)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except QueueError as e:
        print(f"error: cannot ask the scheduler about running jobs: {e}", file=sys.stderr)
        return 1
    except CorruptStatus as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if out.signal is not None:
        return 128 + out.signal
    if out.failed:
        print(f"error: {len(out.failed)} runs failed: "
              + "; ".join(f"{r}: {line}" for r, line in out.failed.items()), file=sys.stderr)
    if out.stopped:
        print(f"error: {len(out.stopped)} runs were stopped before the end "
              f"({', '.join(out.stopped)}); launch again to resume them", file=sys.stderr)
    return 1 if out.failed or out.stopped else 0


if __name__ == "__main__":
    sys.exit(main())
