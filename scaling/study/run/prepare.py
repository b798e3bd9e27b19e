"""Preparation stages: the synthetic image set, VQVAE training, tokenisation (in shards, then
a merge) and the demo classifier, each run as a job that the training jobs depend on. A sweep
with tokenizer variants prepares each variant's VQVAE and store in stages of its own
('v128.vqvae', 'v128.tokenize', ...: `scaling.study.sweep.sweep.Tokenizer`).

A stage records its state and progress in `<output>/_data/jobs/<stage>[-<shard>]/status.json`
(the launcher relays it, `scaling.status` shows it) and resumes from what is on disk, so a
preempted or timed-out stage job is simply requeued. The VQVAE, tokenisation and classifier
modules import torch: they are imported inside the job only, so that loading a sweep stays
torch-free.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from contracts.tokenizer import read_quality
from scaling.core.rundir import RunDir
from scaling.core.tables import duration
from scaling.data.synthetic import generate
from scaling.data.vqvae_config import VQVAETrainConfig
from scaling.study.sweep.sweep import Sweep, load_sweep, split_stage


@dataclasses.dataclass(frozen=True)
class StageJob:
    """A stage and the shards it runs as (one job each; [None]: one job for the whole stage)."""

    stage: str
    shards: list[int | None]
    needs: tuple[str, ...] = ()  # the stages whose output it reads


def stage_plan(sweep: Sweep, tokenizers: set[str | None] | None = None) -> list[StageJob]:
    """The stage jobs of `sweep` in order; tokenisation in shards is followed by a merge.
    `tokenizers`: only the stages of these token stores (variant names; None: all), and the
    shared ones (synthetic images, classifier)."""
    shards = sweep.spec.prepare.tokenize.shards
    plan: list[StageJob] = []
    images: tuple[str, ...] = ("synthetic",) if "synthetic" in sweep.stages() else ()
    for stage in sweep.stages():
        name, kind = split_stage(stage)
        if tokenizers is not None and name is not None and name not in tokenizers:
            continue
        needs: tuple[str, ...] = images if stage != "synthetic" else ()
        if kind == "quality":  # its VQVAE, and the classifier whose features it uses
            vqvae = sweep.tokenizer(name).stage("vqvae")
            needs += (vqvae,) if vqvae in sweep.stages() else ()
            needs += ("classifier",) if "classifier" in sweep.stages() else ()
            plan.append(StageJob(stage, [None], needs))
        elif kind == "tokenize":
            vqvae = sweep.tokenizer(name).stage("vqvae")
            needs += (vqvae,) if vqvae in sweep.stages() else ()
            plan.append(StageJob(stage, list(range(shards)) if shards > 1 else [None], needs))
            if shards > 1:
                plan.append(StageJob(sweep.tokenizer(name).stage("merge"), [None], (stage,)))
        else:
            plan.append(StageJob(stage, [None], needs))
    return plan


def store_stage(sweep: Sweep, tokenizer: str | None) -> str:
    """The stage whose end makes a token store complete: its merge or its tokenisation."""
    t = sweep.tokenizer(tokenizer)
    return t.stage("merge" if sweep.spec.prepare.tokenize.shards > 1 else "tokenize")


class StageStopped(Exception):
    """A preparation stage stopped by a signal; it resumes from what is on disk."""


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Under submitit's local executor, SIGTERM (what a stopped local launcher sends; the
    local controller forwards it here) raises `StageStopped`: submitit's own handler would
    bypass it and the stage would run to its end. Every stage writes its files atomically
    and resumes from them, so stopping between any two Python steps loses at most the work
    since its last write (the VQVAE: its last `ckpt_every` checkpoint). On SLURM SIGTERM
    stays submitit's: SIGUSR2 requeues the job (`PrepareJob.checkpoint`)."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "local":
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise StageStopped(signal.Signals(signum).name)

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class PrepareJob:
    """A preparation stage as a job: `PrepareJob()(sweep_file, stage, shard)`.

    Stages: 'synthetic' (scaling.data.synthetic.generate), 'vqvae' (scaling.train_vqvae),
    'tokenize' (one shard of scaling.tokenize, or all when there is one shard), 'merge'
    (assemble the shards), 'classifier' (scaling.classifier: the demo's sample metric),
    'quality' (scaling.tokenizer_quality: the trained VQVAE measured as a tokenizer). All
    of them resume from what is on disk, so on preemption or time-out the job is simply
    requeued (`checkpoint`).
    """

    def __call__(self, sweep_file: str, stage: str, shard: int | None = None) -> str:
        sweep = load_sweep(sweep_file)
        record = RunDir(stage_dir(sweep, stage, shard))
        record.update_status(state="running", force=True, started_at=time.time(), progress=None)
        last = [0.0]

        def relay(progress: dict) -> None:  # status.json, at most every 2 s (the launcher reads it)
            now = time.monotonic()
            if now - last[0] >= 2.0 or progress.get("done") == progress.get("total"):
                last[0] = now
                record.update_status(progress=progress)

        from scaling.data import images  # torch: the job's process only

        images.reset_skipped()
        try:
            with _stop_on_sigterm(), stage_policy(sweep, stage).applied():
                out = run_stage(sweep, stage, shard, relay)
        except StageStopped as e:
            record.update_status(
                state="stopped",
                force=True,
                finished_at=time.time(),
                stopped_by=str(e),
                note=f"stopped by {e}; launch again to resume from what is on disk",
            )
            raise
        except BaseException as e:
            if not isinstance(e, (KeyboardInterrupt, SystemExit)):
                record.update_status(
                    state="failed",
                    force=True,
                    finished_at=time.time(),
                    error=f"{type(e).__name__}: {e}",
                )
            raise
        skipped = images.skipped_files()  # the image skip policy's count, shown by status
        record.update_status(
            state="done",
            force=True,
            finished_at=time.time(),
            output=str(out),
            skipped_images=len(skipped),
            skipped_files=skipped[:20],
        )
        return str(out)

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit on preemption/time-out: run the same stage again (it resumes)."""
        import submitit

        return submitit.helpers.DelayedSubmission(PrepareJob(), *args, **kwargs)


def stage_policy(sweep: Sweep, stage: str):
    """The runtime policy (scaling.core.runtime) of a preparation stage: fp32 on the stage's
    device, TF32 on CUDA, the policy's CPU threads (1: see scaling.runtime on why)."""
    from scaling.core.runtime import resolve  # imports torch: the job's process only

    device = "auto"
    name, kind = split_stage(stage)
    if kind in ("vqvae", "quality"):
        device = (sweep.tokenizer(name).options or {}).get("device", "auto")
    return resolve(None, device=device, precision="fp32")


def run_stage(
    sweep: Sweep, stage: str, shard: int | None, report: Callable[[dict], None] | None = None
) -> Path:
    """Run one preparation stage of `sweep` in this process; returns its output path.

    `report` receives the stage's progress records (VQVAE: steps, images/s, ETA, PSNR;
    tokenisation: images, images/s, ETA); `PrepareJob` relays them to the stage's status.
    A variant's stage ('v128.vqvae') prepares that variant's VQVAE or store."""
    spec = sweep.spec.prepare
    name, stage = split_stage(stage)
    tok = sweep.tokenizer(name)
    if stage == "synthetic":
        s = spec.synthetic
        assert s is not None  # the stage exists only with prepare.synthetic (Sweep.stages)
        return generate(
            sweep.images_dir(),
            num_classes=s.num_classes,
            train_per_class=s.train_per_class,
            val_per_class=s.val_per_class,
            resolution=s.resolution,
            seed=s.seed,
        )
    if stage == "vqvae":
        from scaling.data.vqvae_training import train_vqvae

        cfg = VQVAETrainConfig(
            images=sweep.images_dir(), out=tok.vqvae_path.parent, **(tok.options or {})
        )
        return train_vqvae(cfg, report=report)
    if stage in ("tokenize", "merge"):
        from scaling.data.tokenize import tokenize

        n = spec.tokenize.shards
        kwargs: dict[str, Any] = dict(
            batch_size=spec.tokenize.batch_size,
            num_shards=n,
            views=spec.tokenize.views,
            flip=spec.tokenize.flip,
            view_seed=spec.tokenize.view_seed,
        )
        if stage == "merge":
            kwargs["merge_only"] = True
        elif n > 1:
            kwargs.update(shard=shard, merge=False)
        return tokenize(sweep.images_dir(), tok.vqvae_path, tok.store, report=report, **kwargs)
    if stage == "classifier":
        from scaling.data.classifier import train_classifier

        assert spec.classifier is not None  # the stage exists only with prepare.classifier
        return train_classifier(
            sweep.images_dir(), sweep.classifier_path(), **dataclasses.asdict(spec.classifier)
        )
    if stage == "quality":
        from scaling.training.tokenizer_quality import measure_and_write

        # Inception only where the runs' sample stage has its weights (never downloaded)
        weights = sorted(
            {str(w) for r in sweep.runs if (w := r.config.samples.inception_weights) is not None}
        )
        return measure_and_write(
            tok.quality_path.parent,
            tok.vqvae_path,
            sweep.images_dir(),
            classifier=sweep.classifier_path() if spec.classifier is not None else None,
            inception_weights=weights[0] if weights else None,
            device=(tok.options or {}).get("device", "auto"),
        )
    raise ValueError(f"unknown preparation stage {stage!r}")


def stage_dir(sweep: Sweep, stage: str, shard: int | None = None) -> Path:
    """Where a preparation stage's status.json lives."""
    name = stage if shard is None else f"{stage}-{shard}"
    return sweep.data_dir / "jobs" / name


def stage_done(sweep: Sweep, stage: str) -> bool:
    """Whether a stage's output is complete on disk (a merge: its store's)."""
    if stage == "synthetic":
        return RunDir(stage_dir(sweep, stage)).status().state == "done"
    if stage == "classifier":
        return sweep.classifier_path().is_file()
    name, kind = split_stage(stage)
    if kind == "vqvae":
        return sweep.vqvae_path(name).is_file()
    if kind == "quality":
        return sweep.quality_path(name).is_file()
    return (sweep.token_store(name) / "meta.json").is_file()


def vqvae_warning(sweep: Sweep) -> str | None:
    """The prepared VQVAEs' warning when the last val PSNR of one is below the mean-colour
    baseline (`scaling.data.vqvae_training.reconstruction_warning`), else None (also: none
    trained to its end: a stopped one's early PSNR says nothing yet); a variant's is prefixed
    by its name."""
    trained = [
        t
        for t in sweep.tokenizers()
        if t.options is not None and t.tokens is None and stage_done(sweep, t.stage("vqvae"))
    ]
    if not trained or sweep.spec.data.vqvae is not None:
        return None
    from scaling.data.vqvae_training import last_eval, reconstruction_warning

    found = []
    for t in trained:
        warning = reconstruction_warning(last_eval(t.vqvae_path.parent))
        if warning:
            found.append(warning if t.name is None else f"tokenizer {t.name}: {warning}")
    return "; ".join(found) or None


def quality_line(sweep: Sweep) -> str:
    """The trained VQVAE's measured quality in one line (`contracts.tokenizer`), or '' when
    the sweep trains none or it is not measured yet; with tokenizer variants, each measured
    one's, named ('v128: ...; v256: ...')."""
    parts = []
    for t in sweep.tokenizers():
        if t.stage("quality") not in sweep.stages():
            continue
        quality = read_quality(t.quality_path)
        if quality is not None:
            parts.append(quality.summary() if t.name is None else f"{t.name}: {quality.summary()}")
    return "; ".join(parts)


def format_progress(progress: dict | None) -> str:
    """A stage's progress record -> '200/500 steps, 41 images/s, ETA 7m20s, PSNR 19.8 dB'."""
    if not isinstance(progress, dict) or not progress.get("total"):
        return ""
    parts = [f"{progress.get('done', 0)}/{progress['total']} {progress.get('unit', '')}".strip()]
    if progress.get("rate"):
        parts.append(f"{progress['rate']:.0f} {progress.get('rate_unit', '/s')}")
    if progress.get("eta_s") is not None and progress.get("done") != progress.get("total"):
        parts.append(f"ETA {duration(progress['eta_s'])}")
    if progress.get("psnr") is not None:
        parts.append(f"PSNR {progress['psnr']:.1f} dB")
    return ", ".join(parts)


def stage_summary(sweep: Sweep) -> str:
    """One line on the preparation jobs ('tokenize done, merge running (job 39)'), or ''."""
    jobs = sweep.data_dir / "jobs"
    if not sweep.stages() or not jobs.is_dir():
        return ""
    parts = []
    for d in sorted(jobs.iterdir(), key=lambda p: p.stat().st_mtime):
        rec = RunDir(d).read_status()
        ids = rec.get("job_ids") or []
        live = format_progress(rec.get("progress")) if rec.get("state") == "running" else ""
        skipped = rec.get("skipped_images") or 0
        parts.append(
            f"{d.name} {rec.get('state', '?')}"
            + (f" (job {ids[-1]})" if ids else "")
            + (f" [{live}]" if live else "")
            + (f" ({skipped} unreadable image{'s' * (skipped != 1)} skipped)" if skipped else "")
        )
    return ", ".join(parts)
