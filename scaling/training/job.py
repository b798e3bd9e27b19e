"""The training job: a run directory trained to the end, resumable, under a lock.

    python -m scaling.train runs/demo/d4/config.yaml       # by hand (`main`)
    TrainJob()(run_dir)                                     # what the launcher submits

It writes the run directory (scaling.core.rundir): status.json, metrics.jsonl (one line per
evaluation, appended and fsynced) and checkpoint.pt (atomic). A job that is preempted,
times out, crashes or is killed resumes from its last checkpoint and ends with the same
weights and metrics as an uninterrupted run (bit for bit on CPU): the data order, RNG states,
optimizer and the metrics file offset are part of the checkpoint (scaling.training.checkpoint).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from contracts.atomic import atomic_write_text
from contracts.metrics import MetricsRecord
from scaling.core import provenance
from scaling.core.cli import RuntimeFailure, run_cli, setup_logging
from scaling.core.config_io import ConfigError, dump_yaml
from scaling.core.rundir import RunDir
from scaling.core.runlock import RunLock, me
from scaling.core.runtime import collective_timeout_s
from scaling.core.runtime import resolve as resolve_policy
from scaling.training import records
from scaling.training.config import RunConfig, load_run_config
from scaling.training.distributed import DistInfo, teardown
from scaling.training.distributed import setup as setup_distributed
from scaling.training.sample_eval import evaluate_run, has_samples_line
from scaling.training.trainer import StopRequest, Trainer

log = logging.getLogger(__name__)


class RunStopped(RuntimeFailure):
    """A signal stopped the run after a checkpoint; launching it again resumes it."""


def train_run(
    run_dir: str | Path,
    *,
    max_steps: int | None = None,
    stop: StopRequest | None = None,
    requeue=None,
    until: float | None = None,
) -> MetricsRecord | None:
    """Train the run in `run_dir` (its config.yaml) to the end, resuming if it can; returns
    the last metrics record of this call (None: no evaluation in it).

    `until`: stop after step round(until * total steps) instead (a segment of a WSD run that
    decay branches wait for, `save_at`); the run is then left "queued" for its next segment.

    Holds the run directory's lock (scaling.core.runlock) throughout: a second trainer on the
    same directory raises RunLocked and changes nothing. When `stop` is set by a signal, the
    run checkpoints; then, for SIGUSR2 with a `requeue` (submitit's handler), it is recorded
    queued and requeued; otherwise it is recorded `stopped` and RunStopped says how to resume.
    """
    run = RunDir(run_dir)
    config = load_run_config(run.config)
    dist = setup_distributed(config.runtime.device, collective_timeout_s(config.runtime))
    if dist.enabled:  # each rank's log says where it runs (rank-to-node mix-ups show here)
        log.info(
            "[%s] rank %d of %d (local rank %d) on host %s, device %s",
            config.run_id,
            dist.rank,
            dist.world_size,
            dist.local_rank,
            socket.gethostname(),
            dist.device,
        )
    lock = RunLock(run.path)
    try:
        # the runtime policy's process-wide settings (threads, TF32), restored on return
        with resolve_policy(config.runtime, device=dist.device).applied():
            if dist.is_main:
                lock.acquire()  # before any write: a refused trainer leaves the directory alone
            try:
                return _train_locked(
                    run, config, dist, max_steps=max_steps, stop=stop, requeue=requeue, until=until
                )
            finally:
                lock.release()
    except BaseException as e:
        if dist.enabled and not isinstance(e, (KeyboardInterrupt, SystemExit, RunStopped)):
            # every rank says why it failed: rank 0's own error is often only the echo of
            # another rank's crash (a closed connection, a collective timeout)
            attempt = (
                f"{os.environ.get('SLURM_JOB_ID', os.getpid())}:"
                f"{os.environ.get('SLURM_RESTART_COUNT', '0')}"
            )
            with contextlib.suppress(OSError):
                run.record_rank_error(
                    dist.rank, socket.gethostname(), f"{type(e).__name__}: {e}", attempt
                )
        raise
    finally:
        teardown()


def _train_locked(
    run: RunDir, config: RunConfig, dist: DistInfo, *, max_steps, stop, requeue, until
) -> MetricsRecord | None:
    """`train_run` once the lock is held: status.json around `Trainer.run`."""
    try:  # checks before any write: config, data, model, checkpoint
        trainer = Trainer(config, run, dist)
        resumed = trainer.load_checkpoint()
    except BaseException as e:
        # a queued run records why it could not start; a run already done, failed or
        # stopped keeps its record (a bad file given by hand changes nothing written)
        if (
            dist.is_main
            and not isinstance(e, (KeyboardInterrupt, SystemExit))
            and run.status().state not in ("done", "failed", "stopped")
        ):
            run.update_status(
                state="failed", finished_at=time.time(), error=f"{type(e).__name__}: {e}"
            )
        raise
    try:
        if dist.is_main:
            provenance.record_job(run.path, world_size=dist.world_size, device=str(dist.device))
            status = run.read_status()
            run.update_status(
                state="running",
                force=True,
                started_at=time.time(),
                host=os.uname().nodename,
                trainer=me(),
                slurm_job_id=os.environ.get("SLURM_JOB_ID"),
                error=None,
                restarts=int(status.get("restarts", -1)) + 1,
                total_steps=trainer.total_steps,
                params=trainer.params,
                **(
                    {"branch_of": config.branch.parent, "branch_step": trainer.plan.start_step}
                    if config.branch
                    else {}
                ),
            )
        until_step = None if until is None else round(until * trainer.total_steps)
        last = trainer.run(max_steps=max_steps, until_step=until_step, stop=stop, resumed=resumed)
        stopped = stop is not None and stop.signum is not None
        if (
            until_step is not None
            and until_step <= trainer.step < trainer.total_steps
            and not stopped
        ):
            if dist.is_main:
                run.update_status(state="queued", force=True, step=trainer.step, segment_done=until)
        elif trainer.step >= trainer.total_steps:
            if dist.is_main:
                written = run.read_metrics() if last is None else []
                final = records.summary(last or (written[-1] if written else None))
                # force: the trainer holds the run lock, so its "done" is the truth even
                # over a launcher's "failed" written after its job's controller died
                online = trainer.online
                run.update_status(
                    state="done",
                    force=True,
                    # the image skip policy's count when views are cropped from the images
                    **({"skipped_images": len(online.ds.skipped)} if online is not None else {}),
                    finished_at=time.time(),
                    step=trainer.step,
                    final=final,
                )
        elif stopped:
            name = signal.Signals(stop.signum).name
            if requeue is not None and stop.signum == signal.SIGUSR2:
                if not dist.is_main:
                    # rank 0 requeues the whole job (submitit's handler) after the common
                    # checkpoint; an error exit here could end the step before it does
                    return last
                run.update_status(state="queued", force=True, step=trainer.step, requeued_by=name)
                requeue(stop.signum)
            message = (
                f"stopped by {name} at step {trainer.step}/{trainer.total_steps} after "
                f"a checkpoint; launch again to resume"
            )
            if dist.is_main:
                run.update_status(
                    state="stopped",
                    force=True,
                    step=trainer.step,
                    stopped_by=name,
                    finished_at=time.time(),
                    note=message,
                )
            raise RunStopped(message)
        return last
    except BaseException as e:
        if dist.is_main and not isinstance(e, (KeyboardInterrupt, SystemExit, RunStopped)):
            run.update_status(
                state="failed",
                force=True,
                finished_at=time.time(),
                error=f"{type(e).__name__}: {e}",
                traceback=traceback.format_exc()[-4000:],
            )
        raise
    finally:
        trainer.tracker.close()


def samples_after_training(run_dir: str | Path) -> None:
    """The stage the launcher adds after training when the config sets
    `samples.after_training`: `scaling.sample_eval` on the finished run (rank 0 only, once).
    A failure is recorded in status.json (`samples_error`) without failing the trained run;
    `python -m scaling.sample_eval RUN_DIR` redoes it (the samples already drawn are kept)."""
    run = RunDir(run_dir)
    if (
        int(os.environ.get("RANK", "0")) != 0
        or run.status().state != "done"
        or not load_run_config(run.config).samples.after_training
    ):
        return
    # the metrics file, not status.json, says whether it is done: resuming a finished run
    # truncates metrics.jsonl to its last checkpoint, which drops a sample line written after it
    if has_samples_line(run.path):
        return
    try:
        evaluate_run(run.path)  # records samples: done in status.json
    except Exception as e:  # noqa: BLE001 - recorded, the training result stays valid
        log.exception("%s: sample evaluation failed", run.path)
        run.update_status(samples="failed", samples_error=f"{type(e).__name__}: {e}")


class TrainJob:
    """What the launcher submits: `TrainJob()(run_dir)`; requeued on preemption/time-out.

    Signals, working with submitit's handlers rather than around them:
    - SIGUSR2 (SLURM's `--signal` before the time limit or on preemption; submitit's local
      controller near its time-out): our handler lets the current step finish and saves
      checkpoint.pt, so the state on disk is a step boundary; then it calls submitit's own
      USR2 handler, which calls `checkpoint()` and requeues the job (it resumes).
    - SIGTERM on SLURM: left to submitit, which ignores it ("Bypassing signal SIGTERM"):
      SLURM sends it on scancel and ahead of USR2 on preemption, and the USR2 path above saves.
    - SIGTERM under submitit's *local* executor (what `kill <job id>` sends: the local
      controller forwards it to the trainer; also what a stopped local launcher sends): our
      handler replaces submitit's bypass; the run checkpoints and is recorded `stopped`,
      and the next `launch` resumes it. (SIGUSR2 must go to the trainer's own pid,
      status.json `trainer.pid`: the local controller does not forward it.)
    - A plain process (`python -m scaling.train`): SIGTERM and SIGUSR2 both checkpoint and stop.
    """

    def __call__(self, run_dir: str, until: float | None = None) -> dict[str, Any]:
        setup_logging()  # the job's own process: progress lines go to its log
        submitit_handler = signal.getsignal(signal.SIGUSR2)
        under_submitit = callable(submitit_handler)
        requeue = None
        if callable(submitit_handler):
            handler = submitit_handler
            requeue = lambda signum: handler(signum, None)
        stop = StopRequest()
        signal.signal(signal.SIGUSR2, stop)
        if not under_submitit or os.environ.get("SUBMITIT_EXECUTOR") == "local":
            signal.signal(signal.SIGTERM, stop)
        last = train_run(run_dir, stop=stop, requeue=requeue, until=until)
        if until is None:  # a segment of a WSD parent is not the end of the run
            samples_after_training(run_dir)
        return last.columns() if last is not None else {}  # a plain dict: the job's result

    def checkpoint(self, run_dir: str, until: float | None = None):
        """submitit: the same job again; it resumes from checkpoint.pt."""
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(), run_dir, until)


def prepare_run_dir(config_path: Path, run_dir: Path | None) -> Path:
    """The run directory for a config given on the command line; copies the config in.
    Raises ConfigError (and changes nothing) when the directory holds another config."""
    config = load_run_config(config_path)
    if run_dir is None:
        run_dir = (
            config_path.parent
            if config_path.name == "config.yaml"
            else Path("runs") / config.run_id
        )
    run = RunDir(run_dir)
    if run.config.exists():
        if load_run_config(run.config) != config:
            raise ConfigError(
                f"{run.config} already holds another config; give another "
                f"--run-dir or remove that run"
            )
    else:
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config, dump_yaml(config))
    return run.path


def main(argv: list[str] | None = None) -> int:
    """`python -m scaling.train CONFIG [--run-dir DIR]`: exit 0 done, 1 the run failed or was
    stopped, 2 a bad config, store or checkpoint (scaling.core.cli)."""
    parser = argparse.ArgumentParser(
        prog="python -m scaling.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("config", type=Path, help="a run config (a run directory's config.yaml)")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="run directory (default: the config's folder when it is config.yaml)",
    )
    args = parser.parse_args(argv)
    setup_logging()

    def body() -> int:
        run_dir = prepare_run_dir(args.config, args.run_dir)
        last = TrainJob()(str(run_dir))
        if last:
            print(
                f"done: ce_avg {last['ce_avg']:.4f}  ce_last {last['ce_last']:.4f}  "
                f"err_avg {last['err_avg']:.4f}  err_last {last['err_last']:.4f}  ({run_dir})"
            )
        return 0

    return run_cli(body)
