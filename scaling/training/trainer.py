"""The trainer: one VAR size on a token store, measured the way the paper measures it.

    trainer = Trainer(config, RunDir(path), dist)
    trainer.run()                      # to the end, resuming from checkpoint.pt if there is one

The parts, each in its own module: `inputs` (the batches of a step), `model` (the VAR,
wrapped for DDP/FSDP/compile, and AdamW), `step` (one optimizer step, with no host read),
`records` (the metrics record), `checkpoint` (the state on disk) and
`scaling.core.stopwatch` (training time, paused for evaluations). The job around it (run
directory, lock, status, signals, CLI) is `scaling.training.job`.

Compute conventions (docs/specification.md sec. 6, var_core.counting): `flops` = training
FLOPs counted exactly from the model's shapes; `flops_6nd` = 6 * N * tokens. Evaluation
compute is reported apart (`eval_flops`).
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
from typing import Any

import torch
from tqdm import tqdm

from contracts.metrics import METRICS, MetricsRecord
from scaling.core.config_io import ConfigError, to_dict
from scaling.core.rundir import RunDir
from scaling.core.runtime import resolve as resolve_policy
from scaling.core.stopwatch import Stopwatch
from scaling.core.tracking import Tracker, eval_scalars
from scaling.data.token_store import TokenStore, eval_batches, load_quantizer
from scaling.training import model as var_model
from scaling.training import records
from scaling.training.budget import run_budget, var_kwargs_from_store
from scaling.training.checkpoint import CheckpointState
from scaling.training.config import RunConfig
from scaling.training.distributed import DistInfo
from scaling.training.evaluate import evaluate
from scaling.training.inputs import TrainInputs, check_views, open_online_views
from scaling.training.step import LossTally, optimizer_step, set_hyperparameters

log = logging.getLogger(__name__)


class StopRequest:
    """Set by a signal handler; the trainer checkpoints at the next step boundary and stops."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self, signum, frame=None) -> None:
        self.signum = signum


class Trainer:
    """One run: its data, model, optimizer and progress, and the loop that writes the run
    directory (metrics.jsonl, checkpoint.pt, status.json's step and ETA)."""

    def __init__(self, config: RunConfig, run_dir: RunDir, dist: DistInfo):
        self.config, self.run_dir, self.dist = config, run_dir, dist
        self.device = dist.device
        # device, precision, TF32, compile and threads: one policy (scaling.core.runtime); the
        # job (`job.train_run`) applies its process-wide parts (threads, TF32)
        self.policy = resolve_policy(config.runtime, device=dist.device)
        source = f"{run_dir.config} (data)"

        self.store = TokenStore(config.data.store)
        self.store.check_matches(
            vocab_size=config.data.vocab_size or self.store.vocab_size,
            patch_nums=tuple(config.data.patch_nums or self.store.patch_nums),
            vqvae_sha256=config.data.vqvae_sha256,
            source=source,
        )
        self.patch_nums = tuple(self.store.patch_nums)
        check_views(self.store, config, source=source)
        self.quantizer = load_quantizer(self.store.path, self.device)
        self.online = (
            open_online_views(self.store, config, self.device)
            if config.data.views == "online"
            else None
        )
        # epochs count images, never views (data.subset: the subset's images)
        split_images = (
            len(self.online)
            if self.online is not None
            else self.store.split_images(config.data.train_split)
        )
        self.store.check_quantizer(self.quantizer)
        for split in dict.fromkeys((config.data.train_split, config.data.eval_split)):
            self.store.split_size(split)  # a named error for a missing split
            self.store.check_tokens(split)

        var_kwargs = var_kwargs_from_store(config.model, self.store.meta)
        optim = config.optim
        if optim.batch_size % dist.world_size:
            raise ConfigError(
                f"{run_dir.config}: optim.batch_size: {optim.batch_size} is not "
                f"divisible by the number of processes ({dist.world_size})"
            )
        self.local_batch = optim.batch_size // dist.world_size
        self.micro_batch = min(config.runtime.micro_batch or self.local_batch, self.local_batch)
        # steps, schedule, evaluations and compute columns: the run's budget, as priced before
        self.budget = run_budget(config, self.store.meta, train_images=split_images)
        self.train_size = self.budget.train_images
        self.counts, self.plan = self.budget.counts, self.budget.plan
        self.total_steps = self.budget.steps
        if config.eval.points > self.total_steps:
            raise ConfigError(
                f"{run_dir.config}: eval.points: {config.eval.points} evaluations "
                f"but the run has only {self.total_steps} steps"
            )
        # a decay branch evaluates only its own steps (its parent measured the ones before)
        self.evals = self.budget.evals

        self.var = var_model.build(config, var_kwargs, self.policy, dist)
        self.optimizer = var_model.optimizer(self.model, config)
        self.inputs = TrainInputs(
            config, self.store, self.quantizer, self.online, self.train_size, self.device
        )
        self.checkpoints = CheckpointState(run_dir, config, dist, self.var, self.optimizer)

        # progress, all restored from the checkpoint
        self.step = 0
        self.watch = Stopwatch()  # training time: runs in the loop, paused for evaluations
        self.eval_flops = 0
        self.losses = LossTally(dist, config.run_id, run_dir.checkpoint)
        self.grad_norm: torch.Tensor | None = None  # of the last step, before clipping (on device)

        # training curves (scaling.core.tracking): every rank takes the same logging steps
        # (the grad norm may be a collective); only rank 0 writes
        wandb = config.runtime.wandb
        self.tracking = config.runtime.tensorboard or (
            wandb is not None and wandb.mode != "disabled"
        )
        self.scalars_every = config.runtime.scalars_every_steps or max(1, self.total_steps // 200)
        self.tracker = Tracker.off()

    @property
    def model(self):
        """The bare VAR (weights, train/eval mode, parameter groups)."""
        return self.var.model

    @property
    def params(self) -> int:
        """N, the model's parameter count (var_core.counting)."""
        return self.counts.params

    # ------------------------------------------------------------------ steps
    def train_step(self) -> torch.Tensor:
        """One optimizer step on the next global batch; returns the mean training loss of
        this process's images as a 0-d device tensor. Nothing is read back to the host here:
        the loss is checked and logged at log points (`read_train_loss`)."""
        cfg = self.config
        self.model.train()
        set_hyperparameters(self.optimizer, self.step, self.plan, cfg.optim)
        mine = slice(self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch)
        loss_sum, self.grad_norm = optimizer_step(
            self.var,
            self.optimizer,
            self.inputs.micro_batches(self.step, mine, self.micro_batch),
            local_batch=self.local_batch,
            label_smoothing=cfg.optim.label_smoothing,
            grad_clip=cfg.optim.grad_clip,
            autocast=self.policy.autocast,
            measure_grad_norm=self.scalars_due(self.step + 1),
        )
        self.step += 1
        self.losses.add(loss_sum, self.step)
        return loss_sum / self.local_batch

    def read_train_loss(self) -> float:
        """A log point: the mean training loss per image since the last evaluation, over all
        ranks (one host read). Raises NonFiniteLoss if any step so far had a non-finite loss."""
        return self.losses.global_sum(self.step) / (
            max(self.losses.count, 1) * self.config.optim.batch_size
        )

    # ------------------------------------------------------------- evaluation
    def evaluate(self, kind: str) -> MetricsRecord:
        """Test metrics now, appended to metrics.jsonl (rank 0); `kind` is "full" or
        "subset" (the cheap, frequent points). Returns the record."""
        cfg = self.config.eval
        limit = cfg.max_images if kind == "full" else cfg.subset_images
        self.model.eval()
        timer = Stopwatch().start()

        def losses(tokens, labels):  # chunked CE and error from the trunk (no [B, L, V] logits)
            return self.var.eval(
                labels, self.inputs.teacher_forcing_input(tokens), tokens, per_token=True
            )

        batches = eval_batches(
            self.store,
            self.config.data.eval_split,
            cfg.batch_size,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            limit=limit,
        )
        train_loss = self.read_train_loss()  # a log point: checks the loss is finite
        metrics = evaluate(
            losses,
            batches,
            self.patch_nums,
            self.device,
            autocast=self.policy.eval_numerics(cfg.precision),
            all_reduce=self.dist.all_reduce_sum,
        )
        self.eval_flops += self.counts.forward_flops * metrics["images"]
        record = records.metrics_record(
            self.config,
            self.budget,
            width=self.model.width,
            step=self.step,
            wall_s=self.watch.elapsed,
            train_loss=train_loss,
            lr=self.optimizer.param_groups[0]["lr"],
            metrics=metrics,
            kind=kind,
            eval_flops=self.eval_flops,
            eval_s=timer.elapsed,
        )
        self.losses.reset()
        if self.dist.is_main:
            self.run_dir.append_metrics(record)
            self.tracker.log(
                eval_scalars(record, self.patch_nums),
                self.step,
                flops=record.flops,
                by_compute=("test",),
            )
            self.tracker.flush()
        return record

    # -------------------------------------------------------------- tracking
    def scalars_due(self, step: int) -> bool:
        """Whether training scalars are logged after optimizer step `step`."""
        return self.tracking and (step % self.scalars_every == 0 or step == self.total_steps)

    def open_tracker(self) -> Tracker:
        """TensorBoard / W&B for this run (rank 0), picking up at the current step."""
        runtime = self.config.runtime
        if not (self.tracking and self.dist.is_main):
            return Tracker.off()
        config = json.loads(json.dumps(to_dict(self.config), default=str))
        done = self.budget.at(self.step)
        return Tracker(
            self.run_dir.path,
            tensorboard=runtime.tensorboard,
            wandb=runtime.wandb,
            name=self.config.run_id,
            config={**config, "params": self.params},
            resume_step=self.step,
            resume_flops=done.flops,
        )

    def log_scalars(self, window: _Window) -> _Window:
        """Training scalars over the steps since `window` began; returns the next window.

        Every rank calls this at the same steps (reading the grad norm may gather it).
        """
        grad_norm = self.grad_norm
        if grad_norm is not None and hasattr(grad_norm, "full_tensor"):  # FSDP's DTensor
            grad_norm = grad_norm.full_tensor()
        loss_sum = window.loss_sum  # sum of per-step mean losses of this rank's images
        if isinstance(loss_sum, torch.Tensor) and self.dist.enabled:
            loss_sum = loss_sum.clone()
            self.dist.all_reduce_sum(loss_sum)  # equal local batches: the mean of rank means
            loss_sum = loss_sum / self.dist.world_size
        if self.dist.is_main and window.steps(self.step):
            steps = window.steps(self.step)
            seconds = max(self.watch.elapsed - window.wall_s, 1e-9)
            batch = self.config.optim.batch_size
            done = self.budget.at(self.step)
            group = self.optimizer.param_groups[0]  # the decayed group
            self.tracker.log(
                {
                    "train/loss": float(loss_sum) / steps,
                    "train/lr": group["lr"],
                    "train/weight_decay": group["weight_decay"],
                    "train/grad_norm": None if grad_norm is None else float(grad_norm),
                    "train/images_per_s": steps * batch / seconds,
                    "train/tokens_per_s": steps * batch * self.counts.tokens / seconds,
                    "train/tflops_per_s": self.counts.train_flops * steps * batch / seconds / 1e12,
                    "compute/flops": done.flops,
                    "compute/flops_6nd": done.flops_6nd,
                    "compute/tokens": done.tokens,
                    "compute/wall_s": self.watch.elapsed,
                },
                self.step,
                flops=done.flops,
                by_compute=("train/loss",),
            )
        return _Window(self.step, self.watch.elapsed)

    # ------------------------------------------------------------ checkpoints
    def _progress(self) -> dict[str, Any]:
        """The trainer's part of a checkpoint. Reads the training-loss sum over all ranks
        (every rank calls this): a non-finite loss raises NonFiniteLoss, so a bad state is
        never saved."""
        return dict(
            step=self.step,
            total_steps=self.total_steps,
            order=self.inputs.order.state_dict(),
            wall_s=self.watch.elapsed,
            eval_flops=self.eval_flops,
            loss_image_sum=self.losses.global_sum(self.step),
            loss_count=self.losses.count,
        )

    def save_checkpoint(self) -> None:
        """Write checkpoint.pt atomically (rank 0); every rank waits for it."""
        self.checkpoints.save(self._progress())

    def save_stable_state(self) -> None:
        """Keep the training state at this step of the constant phase (a WSD run's decay
        branches start from it)."""
        self.checkpoints.save(self._progress(), self.checkpoints.stable_state_path(self.step))

    def load_checkpoint(self) -> bool:
        """Resume from checkpoint.pt if there is one (a decay branch with none starts from its
        parent's stable-phase state); returns whether it resumed."""
        state = self.checkpoints.load(self.plan.start_step, self.total_steps)
        if state is None:
            return False
        self.inputs.order.load_state_dict(state["order"])
        self.step, self.watch = state["step"], Stopwatch(state["wall_s"])
        self.eval_flops = state["eval_flops"]
        # rank 0 carries the global sum; older checkpoints kept the sum of per-step means
        loss_sum = (
            state["loss_image_sum"]
            if "loss_image_sum" in state
            else state["loss_sum"] * self.config.optim.batch_size
        )
        self.losses.restore(loss_sum, state["loss_count"])
        return True

    # ------------------------------------------------------------------- loop
    def run(
        self,
        *,
        max_steps: int | None = None,
        until_step: int | None = None,
        stop: StopRequest | None = None,
        resumed: bool | None = None,
    ) -> MetricsRecord | None:
        """Train to the end, `max_steps` more steps, step `until_step`, or a stop request;
        returns the last metrics record of this call (None: no evaluation in it). A stop
        request is honoured at a step boundary, after a checkpoint. `resumed`: whether the
        caller already called load_checkpoint (None: load it here)."""
        if resumed is None:
            resumed = self.load_checkpoint()
        if self.dist.is_main:
            log.info(
                "[%s] %s step %d/%d: N=%s params, batch %d on %d x %s (%s), %d evaluations",
                self.config.run_id,
                "resumed at" if resumed else "starting",
                self.step,
                self.total_steps,
                f"{self.params:,}",
                self.config.optim.batch_size,
                self.dist.world_size,
                self.device.type,
                self.policy.precision,
                len(self.evals),
            )
        end = (
            self.total_steps if max_steps is None else min(self.total_steps, self.step + max_steps)
        )
        if until_step is not None:
            end = min(end, until_step)
        last, first_step, saved_step = None, self.step, self.step
        since_save, since_log, attempt = (
            Stopwatch().start(),
            Stopwatch().start(),
            Stopwatch().start(),
        )
        progress = _Progress(self.total_steps, self.step, enabled=self.dist.is_main)
        self.tracker = self.open_tracker()
        window = _Window(self.step, self.watch.elapsed)
        self.watch.start()
        while self.step < end:
            window.add(self.train_step())  # no host read here: the loss stays on the device
            if self.step in self.plan.save_steps:
                self.save_stable_state()
            kind = self.evals.get(self.step)
            if kind is not None:
                with self.watch.paused():
                    last = self.evaluate(kind)
                self._report(progress, kind, last)
            progress.update(1)
            save, stop_now = self._decide(since_save.elapsed, stop)
            if save or stop_now or self.step == self.total_steps:
                self.save_checkpoint()
                since_save, saved_step = Stopwatch().start(), self.step
            if stop_now:
                break
            if self.dist.is_main and since_log.elapsed >= self.config.runtime.log_every_s:
                since_log = Stopwatch().start()
                eta = (
                    attempt.elapsed
                    / max(self.step - first_step, 1)
                    * (self.total_steps - self.step)
                )
                self._log_line(progress, eta)
            if self.scalars_due(self.step):
                window = self.log_scalars(window)
        if self.step != saved_step:  # stopped by max_steps: leave a checkpoint at the stop
            self.save_checkpoint()
        self.watch.stop()
        progress.close()
        self.tracker.close()
        return last

    def _decide(self, since_save_s: float, stop: StopRequest | None) -> list[bool]:
        """[save a checkpoint now, stop now], the same on every rank.

        One process decides every step (free); with several, the ranks agree only every
        `agree_every_steps` steps and at step-count checkpoints, so a stop signal is honoured
        within that many steps. A signal that reached any rank stops every rank at the same
        step, and `stop.signum` is then set on every rank (the largest signal number seen)."""
        rt = self.config.runtime
        every = rt.checkpoint_every_steps
        step_due = every is not None and every > 0 and self.step % every == 0
        if (
            not self.dist.enabled
            or step_due
            or self.step == self.total_steps
            or self.step % rt.agree_every_steps == 0
        ):
            signum = stop.signum if stop is not None and stop.signum is not None else 0
            save, signum = self._agree(step_due or since_save_s >= rt.checkpoint_every_s, signum)
            if signum and stop is not None:
                if self.dist.enabled:
                    log.info(
                        "[%s] rank %d on %s stops at step %d (%s; this rank got it: %s)",
                        self.config.run_id,
                        self.dist.rank,
                        socket.gethostname(),
                        self.step,
                        signal.Signals(signum).name,
                        stop.signum is not None,
                    )
                stop.signum = signum
            return [save, bool(signum)]
        return [False, False]

    def _agree(self, save: bool, signum: int) -> tuple[bool, int]:
        """(save, signal number) agreed by every rank at the same step: rank 0's time-based
        save decision, and the largest stop signal any rank received (0: none). One
        all-reduce and host read with several processes; nothing on one."""
        if not self.dist.enabled:
            return save, signum
        # rank 0's clock decides saves (the others' vote 0); MAX spreads any rank's signal
        t = torch.tensor([float(save and self.dist.is_main), float(signum)], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        agreed = t.tolist()
        return bool(agreed[0]), int(agreed[1])

    def _report(self, progress: _Progress, kind: str, record: MetricsRecord) -> None:
        """An evaluation's line in a job log (rank 0), or the progress bar's postfix."""
        if self.dist.is_main and not progress.interactive:
            log.info(
                "[%s] %s eval at step %d: %s",
                self.config.run_id,
                kind,
                self.step,
                " ".join(f"{k} {getattr(record, k):.4f}" for k in METRICS),
            )
        progress.set_postfix(loss=f"{record.train_loss:.3f}", test_ce=f"{record.ce_avg:.3f}")

    def _log_line(self, progress: _Progress, eta: float) -> None:
        """A log point (rank 0): status.json's step and ETA (seconds) and, in a job log, a
        progress line with the training loss since the last evaluation (one host read)."""
        # for `scaling.status` and the launcher: where the run is and when it should end
        self.run_dir.update_status(step=self.step, eta_s=round(eta, 1))
        if progress.interactive:
            return
        if self.dist.enabled:  # this rank's images only: no collective at a rank-0-only point
            loss = self.losses.local_mean(self.local_batch)
        else:
            loss = self.read_train_loss()  # also stops on a non-finite loss
        log.info(
            "[%s] step %d/%d (%.1f%%) loss %.4f lr %.3g wall %.0fs",
            self.config.run_id,
            self.step,
            self.total_steps,
            100 * self.step / self.total_steps,
            loss,
            self.optimizer.param_groups[0]["lr"],
            self.watch.elapsed,
        )


class _Window:
    """Training losses summed since a logging point (floats or device tensors: no host sync
    until read)."""

    def __init__(self, step: int, wall_s: float):
        self.step, self.wall_s = step, wall_s
        self.loss_sum: Any = 0.0

    def add(self, loss: Any) -> None:
        self.loss_sum = self.loss_sum + loss

    def steps(self, now: int) -> int:
        return now - self.step


class _Progress:
    """tqdm in a terminal; a silent counter in a job log (which gets periodic lines instead)."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.interactive = enabled and sys.stderr.isatty()
        self.bar = None
        if self.interactive:
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, **kw) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**kw)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
