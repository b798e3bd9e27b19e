"""Training curves for the tools researchers already use: TensorBoard, and W&B (offline).

A `Tracker` writes one run's scalars. TensorBoard (on by default; `runtime.tensorboard: false`
turns it off) writes event files *into the run directory*, so `tensorboard --logdir
runs/<sweep>` shows every grid point as one run named by its run id; a second writer in
`<run_dir>/by_compute/` holds the same test metrics (and the training loss) with the
cumulative training FLOPs as the x-axis (TensorBoard steps are integers: the step is the
compute in MFLOPs, 1e6 FLOPs, which the tag names). On resume both writers purge what was
logged after the checkpoint (TensorBoard's `purge_step`), so curves never fold back.

W&B (`runtime.wandb: {project: NAME, mode: offline}`) is an optional extra (`pip install
wandb` or the `wandb` extra of this package); a missing package is a `TrackingUnavailable`
error saying so. Its default mode is `offline` (files under `<run_dir>/wandb/`, nothing is
sent; `wandb sync` uploads them later); `disabled` makes every call a no-op; `online` is
the user's explicit choice. One W&B run per grid point: name = run id, group = sweep (the
output folder's name), the run config attached, `compute/flops` logged with every point so it
can be picked as the x-axis.

This module imports neither torch nor wandb until a Tracker is opened.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from contracts.metrics import BY_SCALE, METRICS, METRICS_SE, MetricsRecord
from scaling.core.config_io import InvalidValue

log = logging.getLogger(__name__)

COMPUTE_DIR = "by_compute"  # the writer whose x-axis is cumulative training compute
COMPUTE_UNIT = 1e6  # TensorBoard step = FLOPs / COMPUTE_UNIT (MFLOPs)
COMPUTE_PREFIX = "vs_compute_MFLOPs"


class TrackingUnavailable(RuntimeError):
    """A tracking backend was asked for but its package is not installed."""


@dataclasses.dataclass(frozen=True)
class WandbConfig:
    """`runtime.wandb`: log to Weights & Biases as well (optional extra `wandb`)."""

    project: str  # W&B project name
    mode: Literal["offline", "online", "disabled"] = (
        "offline"  # offline: nothing leaves the machine
    )
    entity: str | None = None  # W&B entity (team)
    group: str | None = None  # None: the sweep (the run directory's parent folder name)
    tags: tuple[str, ...] = ()  # W&B run tags

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", self.project):
            raise InvalidValue(
                "project", f"must be 1-128 letters, digits, '_', '-' or '.'; got {self.project!r}"
            )


def _tensorboard_writer(logdir: Path, purge_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch raises this when the tensorboard package is missing
        raise TrackingUnavailable(
            f"TensorBoard logging is on (runtime.tensorboard: true) but it cannot be imported "
            f"({e}); `pip install tensorboard`, or set runtime.tensorboard: false"
        ) from None
    return SummaryWriter(log_dir=str(logdir), purge_step=purge_step, flush_secs=30)


def _wandb_run(cfg: WandbConfig, run_dir: Path, name: str, config: dict[str, Any], job_type: str):
    try:
        import wandb
    except ImportError:
        raise TrackingUnavailable(
            f"runtime.wandb is set (project {cfg.project!r}) but the wandb package is not "
            f"installed: `pip install wandb` (or this package's `wandb` extra), or remove "
            f"runtime.wandb"
        ) from None
    group = cfg.group or run_dir.resolve().parent.name
    run_id = re.sub(r"[^A-Za-z0-9_\-]", "-", f"{group}-{name}-{job_type}")[:128]
    (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=cfg.project,
        entity=cfg.entity,
        mode=cfg.mode,
        dir=str(run_dir),
        id=run_id,
        name=name,
        group=group,
        job_type=job_type,
        tags=list(cfg.tags),
        config=config,
        resume="allow",
        reinit="create_new",
    )


class Tracker:
    """Scalars of one run to TensorBoard and/or W&B; a Tracker with neither does nothing.

    run_dir: where the event files go; resume_step / resume_flops: the checkpoint's step and
    cumulative training FLOPs (what was logged after them is purged); config: the run config
    as plain data (attached to the W&B run).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard: bool = True,
        wandb: WandbConfig | None = None,
        name: str | None = None,
        config: dict[str, Any] | None = None,
        resume_step: int = 0,
        resume_flops: float = 0.0,
        job_type: str = "train",
    ):
        self.run_dir = Path(run_dir)
        self.tb: Any = None  # a SummaryWriter when TensorBoard is on
        self.tb_compute: Any = None
        self.wandb: Any = None
        if tensorboard:
            # what a previous attempt logged after the checkpoint is dropped by TensorBoard
            self.tb = _tensorboard_writer(self.run_dir, resume_step + 1)
        self._compute_purge = int(resume_flops // COMPUTE_UNIT) + 1  # its writer opens on first use
        if wandb is not None and wandb.mode != "disabled":
            self.wandb = _wandb_run(
                wandb, self.run_dir, name or self.run_dir.name, config or {}, job_type
            )

    @classmethod
    def off(cls) -> Tracker:
        """A tracker that records nothing (other ranks, tracking turned off)."""
        return cls(Path("."), tensorboard=False, wandb=None)

    @property
    def enabled(self) -> bool:
        return self.tb is not None or self.wandb is not None

    def log(
        self,
        scalars: Mapping[str, float | None],
        step: int,
        flops: float | None = None,
        by_compute: tuple[str, ...] = (),
    ) -> None:
        """Write `scalars` {tag: value} at optimizer step `step` (None values are skipped).

        flops: cumulative training FLOPs at this step; the tags in `by_compute` (prefixes,
        e.g. "test/") are also written against it in the compute writer.
        """
        if not self.enabled:
            return
        values = {k: float(v) for k, v in scalars.items() if v is not None}
        if self.tb is not None:
            for tag, value in values.items():
                self.tb.add_scalar(tag, value, step)
            on_compute = {
                t: v for t, v in values.items() if by_compute and t.startswith(by_compute)
            }
            if flops is not None and on_compute:
                if self.tb_compute is None:
                    self.tb_compute = _tensorboard_writer(
                        self.run_dir / COMPUTE_DIR, self._compute_purge
                    )
                x = int(flops // COMPUTE_UNIT)
                for tag, value in on_compute.items():
                    self.tb_compute.add_scalar(f"{COMPUTE_PREFIX}/{tag}", value, x)
        if self.wandb is not None:
            extra = {} if flops is None else {"compute/flops": float(flops)}
            self.wandb.log({**values, **extra}, step=step)

    def flush(self) -> None:
        """Push buffered events to disk (after an evaluation)."""
        for w in (self.tb, self.tb_compute):
            if w is not None:
                w.flush()

    def close(self) -> None:
        """Flush and close every backend; safe to call twice."""
        for w in (self.tb, self.tb_compute):
            if w is not None:
                w.close()
        self.tb = self.tb_compute = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def eval_scalars(record: MetricsRecord, patch_nums: tuple[int, ...]) -> dict[str, float]:
    """A metrics.jsonl record -> {tag: value}: test metrics overall and per scale.

    Full evaluations go under `test/`, subset ones under `test_subset/`; per-scale tags are
    `test/ce_by_scale/s{k}_{pn}x{pn}` (k = 1 coarsest).
    """
    prefix = "test" if record.kind == "full" else "test_subset"
    out = {f"{prefix}/{k}": getattr(record, k) for k in METRICS if getattr(record, k) is not None}
    # standard errors over the test images: a rise of more than a few of them is real
    # (analysis.overfit); scaling.status names the run data-limited
    out.update(
        {
            f"{prefix}_se/{k}": getattr(record, se)
            for k, se in zip(METRICS, METRICS_SE, strict=True)
            if getattr(record, se) is not None
        }
    )
    for key in BY_SCALE:
        for k, (pn, value) in enumerate(zip(patch_nums, getattr(record, key) or ())):
            out[f"{prefix}/{key}/s{k + 1:02d}_{pn}x{pn}"] = value
    if record.eval_s is not None:
        out[f"eval/{prefix}_seconds"] = record.eval_s
    return out


FORECAST_DIR = "forecast"  # <run_dir>/forecast/: the forecasts scaling.status makes of a run


def append_scalars(logdir: str | Path, step: int, scalars: dict[str, float]) -> None:
    """Append `scalars` at `step` to a TensorBoard event file in `logdir` (a new file per
    call; TensorBoard reads them all). Written with the tensorboard package's own writer, so
    a caller that never trains (scaling.status) does not import torch."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    Path(logdir).mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(logdir))
    try:
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=tag, simple_value=float(v))
                for tag, v in scalars.items()
            ]
        )
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    finally:
        writer.close()
