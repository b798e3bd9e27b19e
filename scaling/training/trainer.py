"""The training job: one VAR size on a token store, measured the way the paper measures it.

    python -m scaling.train runs/demo/d4/config.yaml       # by hand
    TrainJob()(run_dir)                                     # what the launcher submits

It writes the run directory (scaling.rundir): status.json, metrics.jsonl (one line per
evaluation, appended and fsynced) and checkpoint.pt (atomic). A job that is preempted,
times out, crashes or is killed resumes from its last checkpoint and ends with the same
weights and metrics as an uninterrupted run (bit for bit on CPU): the data order, RNG states,
optimizer and the metrics file offset are part of the checkpoint.

Compute conventions (DESIGN.md): `flops` = training FLOPs counted exactly from the model's
shapes (matmuls, block-causal attention pairs, head; training = 3 x forward);
`flops_6nd` = 6 * N * tokens. Evaluation compute is reported apart (`eval_flops`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scaling.core import provenance
from scaling.training import schedule
from scaling.core.seeds import step_seed
from scaling.core.atomic import append_jsonl, atomic_write, atomic_write_text
from scaling.training.config import RunConfig, load_run_config
from scaling.core.config_io import ConfigError, dump_yaml, to_dict
from scaling.training.distributed import DistInfo, setup as setup_distributed, teardown
from scaling.training.evaluate import evaluate
from scaling.core.rundir import RunDir
from scaling.core.runtime import resolve as resolve_policy
from scaling.core.runlock import RunLock, RunLocked, me
from scaling.core.safe_load import CheckpointError, load_checkpoint_file
from scaling.core.stopwatch import Stopwatch
from scaling.data.token_store import TokenStore, TokenStoreError, TrainOrder, eval_batches, load_quantizer
from scaling.core.tracking import Tracker, eval_scalars

CHECKPOINT_FORMAT = "var-scaling-train/1"
# weight decay does not apply to parameters whose name contains one of these (the official
# trainer's `nowd_keys`, verbatim), nor to biases and 1-D tensors. In VAR the names select
# pos_start, pos_1LC, lvl_embed and scale_mul_1H11 (ada_gss with shared AdaLN); class_emb,
# its null row included, is decayed, as officially.
NO_DECAY_KEYS = ("cls_token", "start_token", "task_token", "cfg_uncond", "pos_embed", "pos_1LC",
                 "pos_start", "start_pos", "lvl_embed", "gamma", "beta", "ada_gss", "moe_bias",
                 "scale_mul")


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or inf."""


class StopRequest:
    """Set by a signal handler; the trainer checkpoints at the next step boundary and stops."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self, signum, frame=None) -> None:
        self.signum = signum


def param_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """AdamW groups: decayed weights, and the no-decay set of the official trainer."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith("bias") or any(k in name for k in NO_DECAY_KEYS):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "wd_scale": 1.0}, {"params": no_decay, "wd_scale": 0.0}]


def split_scales(tokens: torch.Tensor, patch_nums: tuple[int, ...]) -> list[torch.Tensor]:
    """[B, L] -> list of K tensors [B, pn*pn], coarse to fine."""
    return list(torch.split(tokens, [pn * pn for pn in patch_nums], dim=1))


class Trainer:
    """One run: model, optimizer, data order and the loop that writes the run directory."""

    def __init__(self, config: RunConfig, run_dir: RunDir, dist: DistInfo):
        from var_core import VAR, counting

        self.config, self.run_dir, self.dist = config, run_dir, dist
        self.device = dist.device
        # device, precision, TF32, compile and threads: one policy (scaling.runtime); the
        # entry point (`train_run`) applies its process-wide parts (threads, TF32)
        self.policy = resolve_policy(config.runtime, device=dist.device)

        self.store = TokenStore(config.data.store)
        self.store.check_matches(
            vocab_size=config.data.vocab_size or self.store.vocab_size,
            patch_nums=tuple(config.data.patch_nums or self.store.patch_nums),
            vqvae_sha256=config.data.vqvae_sha256, source=f"{run_dir.config} (data)")
        self.patch_nums = tuple(self.store.patch_nums)
        self.L = sum(pn * pn for pn in self.patch_nums)
        check_views(self.store, config, source=f"{run_dir.config} (data)")
        self.quantizer = load_quantizer(self.store.path, self.device)
        self.online = _online_views(self.store, config, self.device) \
            if config.data.views == "online" else None
        # epochs count images, never views
        self.train_size = len(self.online) if self.online is not None else \
            self.store.split_images(config.data.train_split)
        self.store.check_quantizer(self.quantizer)
        for split in dict.fromkeys((config.data.train_split, config.data.eval_split)):
            self.store.split_size(split)  # a named error for a missing split
            self.store.check_tokens(split)

        var_kwargs = config.model.var_kwargs(
            num_classes=self.store.num_classes, vocab_size=self.store.vocab_size,
            z_channels=self.quantizer.z_channels, patch_nums=self.patch_nums)
        torch.manual_seed(config.seed)  # same initial weights on every rank
        self.model = VAR(**var_kwargs, attn_backend=config.runtime.attn_backend).to(self.device)
        # class dropout is drawn here for the whole global batch (see `class_dropout`), so
        # that the batch is the same whatever the number of processes
        self.model.cond_drop = 0.0
        self.params = counting.params(**var_kwargs)
        self.forward_flops = counting.forward_flops(**var_kwargs)

        optim = config.optim
        if optim.batch_size % dist.world_size:
            raise ConfigError(f"{run_dir.config}: optim.batch_size: {optim.batch_size} is not "
                              f"divisible by the number of processes ({dist.world_size})")
        self.local_batch = optim.batch_size // dist.world_size
        self.micro_batch = min(config.runtime.micro_batch or self.local_batch, self.local_batch)
        self.plan = schedule.plan(config, config.length.total_steps(
            train_size=self.train_size, batch_size=optim.batch_size, tokens_per_image=self.L,
            flops_per_image=3 * self.forward_flops))
        self.total_steps = self.plan.total_steps
        if config.eval.points > self.total_steps:
            raise ConfigError(f"{run_dir.config}: eval.points: {config.eval.points} evaluations "
                              f"but the run has only {self.total_steps} steps")
        # a decay branch evaluates only its own steps (its parent measured the ones before)
        self.evals = {s: k for s, k in schedule.eval_schedule(self.total_steps, config.eval).items()
                      if s > self.plan.start_step}

        self.precision = self.policy.precision
        if config.runtime.activation_checkpointing:
            _checkpoint_blocks(self.model)
        self.train_model: torch.nn.Module = self.model
        self.fsdp = config.runtime.fsdp and dist.enabled
        if self.fsdp:
            _shard_fully(self.model, self.device, dist.world_size)
        elif dist.enabled:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.train_model = self.policy.maybe_compile(self.train_model)
        # evaluation: the bare model (no DDP wrapper; each rank evaluates its own images)
        self.eval_model = self.policy.maybe_compile(self.model)
        # fused AdamW (CUDA and CPU): one kernel per step, and no host read of the step count
        self.optimizer = torch.optim.AdamW(
            param_groups(self.model), lr=optim.peak_lr, betas=optim.betas, eps=optim.eps,
            weight_decay=optim.weight_decay, fused=True)
        self.order = TrainOrder(self.train_size, optim.batch_size, seed=config.seed)
        self.grad_params = [p for p in self.model.parameters() if p.requires_grad]  # clip's list
        self.input_cache = self._build_input_cache()

        # progress, all restored from the checkpoint
        self.step = 0
        self.watch = Stopwatch()  # training time: runs in the loop, paused for evaluations
        self.eval_flops = 0
        # training loss since the last evaluation: this process's sum of per-image losses,
        # kept on the device (read, and summed over ranks, only at log/eval points)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.loss_count = 0
        # the first step whose loss was not finite (checked at log points); 0 = none
        self._first_bad = torch.zeros((), dtype=torch.float64, device=self.device)
        self.grad_norm: torch.Tensor | None = None  # of the last step, before clipping (on device)

        # training curves (scaling.tracking): every rank takes the same logging steps (the
        # grad norm may be a collective); only rank 0 writes
        wandb = config.runtime.wandb
        self.tracking = config.runtime.tensorboard or (wandb is not None and wandb.mode != "disabled")
        self.scalars_every = config.runtime.scalars_every_steps or max(1, self.total_steps // 200)
        self.tracker = Tracker.off()

    # ------------------------------------------------------------------ steps
    def autocast(self):
        """The policy's autocast (bf16 or none)."""
        return self.policy.autocast()

    def _build_input_cache(self) -> torch.Tensor | None:
        """The teacher-forcing input of every row of the train split (each stored view),
        [rows, L - pn_0^2, Cvae] float32 on the device, when it fits in
        runtime.input_cache_mb (the demo: 19 MB;
        ImageNet at 256px: 111 GB, never). It is a fixed function of the stored tokens, so
        a step gathers it instead of recomputing it (on CPU that was most of the trainer's
        overhead over a bare loop at the smallest sizes)."""
        budget = self.config.runtime.input_cache_mb
        per_row = (self.L - self.patch_nums[0] ** 2) * self.quantizer.z_channels * 4
        split, rows = self.config.data.train_split, []
        n = self.store.split_size(split)  # rows: every stored view of every image
        if not budget or n * per_row > budget * 2 ** 20:
            return None
        for start in range(0, n, 1024):
            tokens, _ = self.store.gather(split, np.arange(start, min(start + 1024, n)))
            rows.append(self.teacher_forcing_input(tokens.to(self.device)))
        return torch.cat(rows)

    def eval_precision(self):
        """The evaluation's numerics (`eval.precision`, scaling.core.runtime.Policy.eval_numerics):
        fp32 with TF32 matmuls on CUDA, as the official evaluation, or bf16 autocast."""
        return self.policy.eval_numerics(self.config.eval.precision)

    def teacher_forcing_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] -> [B, L-1, Cvae], built on the device in float32."""
        with torch.no_grad():
            return self.quantizer.idx_to_var_input(split_scales(tokens, self.patch_nums))

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the next global batch; returns the mean training loss of
        this process's images as a 0-d device tensor (the step's mean loss on one process).
        Nothing is read back to the host here: the loss is checked and logged at log
        points (`read_train_loss`)."""
        cfg = self.config
        self.model.train()
        lr_factor = schedule.lr_factor(self.step, self.plan, cfg.optim)
        wd = schedule.weight_decay(self.step, self.total_steps, cfg.optim)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.optim.peak_lr * lr_factor
            group["weight_decay"] = wd * group["wd_scale"]

        mine = slice(self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch)
        images = self.order.next()  # one view of each image, drawn from (seed, epoch, image)
        epoch = self.order.epoch
        indices = images[mine] if self.online is not None else \
            self.store.view_rows(cfg.data.train_split, images, epoch, cfg.seed)[mine]
        dropped = self.class_dropout()[mine]
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        starts = range(0, self.local_batch, self.micro_batch)
        for i, start in enumerate(starts):
            chunk = slice(start, start + self.micro_batch)
            if self.online is not None:  # the VQVAE in the loop (official behaviour)
                tokens, labels = self.online.batch(indices[chunk], epoch)
            else:
                # labels are range-checked here, on the host, where data enters (TokenStore.gather)
                tokens, labels = self.store.gather(cfg.data.train_split, indices[chunk])
            labels = torch.where(dropped[chunk], self.store.num_classes, labels)
            tokens = tokens.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if self.input_cache is not None:
                x_in = self.input_cache[torch.from_numpy(indices[chunk]).to(self.device)]
            else:
                x_in = self.teacher_forcing_input(tokens)
            last = i == len(starts) - 1
            if self.fsdp:
                self.model.set_requires_gradient_sync(last)
            skip_sync = self.dist.enabled and not self.fsdp and not last
            n = tokens.shape[0]
            with (self.train_model.no_sync() if skip_sync else contextlib.nullcontext()):
                with self.autocast():
                    # every token weighted 1/L, every image 1/B: the mean over the global batch;
                    # the loss comes from the trunk's output in chunks (no [B, L, V] logits)
                    loss = self.train_model(labels, x_in, tokens,
                                            label_smoothing=cfg.optim.label_smoothing)
                (loss * (n / self.local_batch)).backward()
            loss_sum += loss.detach().double() * n
        if cfg.optim.grad_clip > 0:
            # the global norm before clipping (a 0-d device tensor; read it only when needed)
            self.grad_norm = torch.nn.utils.clip_grad_norm_(self.grad_params, cfg.optim.grad_clip)
        elif self.scalars_due(self.step + 1):  # no clipping: measured for the logs only
            self.grad_norm = _total_norm([p.grad for p in self.grad_params if p.grad is not None])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        # remember the first non-finite step without reading the loss (no host sync)
        self._first_bad = torch.where((self._first_bad == 0) & ~torch.isfinite(loss_sum),
                                      float(self.step), self._first_bad)
        self.loss_sum += loss_sum
        self.loss_count += 1
        return loss_sum / self.local_batch

    def read_train_loss(self) -> float:
        """A log point: the mean training loss per image since the last evaluation, over all
        ranks (one host read). Raises NonFiniteLoss if any step so far had a non-finite loss."""
        return self._global_loss_sum() / (max(self.loss_count, 1) * self.config.optim.batch_size)

    def _global_loss_sum(self) -> float:
        """Sum over ranks of the per-image training losses since the last evaluation (every
        rank calls this); raises NonFiniteLoss if a step had a non-finite loss on any rank."""
        total = torch.stack((self.loss_sum, self._first_bad))
        self.dist.all_reduce_sum(total)  # a bad step on any rank makes the second sum non-zero
        loss_sum, bad = total.tolist()
        if bad != 0 or not math.isfinite(loss_sum):
            mine = int(self._first_bad.item())
            first = f"at step {mine}" if mine else "on another rank"
            raise NonFiniteLoss(
                f"training loss became non-finite {first} of run {self.config.run_id} (checked "
                f"at step {self.step}); stopped without saving. The last good checkpoint "
                f"({self.run_dir.checkpoint}) is kept.")
        return loss_sum

    def class_dropout(self) -> torch.Tensor:
        """BoolTensor [global batch]: which labels become the null class at this step.

        Drawn from a generator seeded by (seed, step): the same for any number of processes
        and on resume, with no state to save. (Drop-path masks, by contrast, come from each
        process's RNG: runs with different world sizes agree in distribution only.)
        """
        generator = torch.Generator().manual_seed(step_seed(self.config.seed, self.step))
        draws = torch.rand(self.config.optim.batch_size, generator=generator)
        return draws < self.config.model.cond_drop

    # ------------------------------------------------------------- evaluation
    def evaluate(self, kind: str) -> dict[str, Any]:
        """Test metrics now; `kind` is "full" or "subset" (the cheap, frequent points)."""
        cfg = self.config.eval
        limit = cfg.max_images if kind == "full" else cfg.subset_images
        self.model.eval()
        t0 = time.perf_counter()

        def losses(tokens, labels):  # chunked CE and error from the trunk (no [B, L, V] logits)
            return self.eval_model(labels, self.teacher_forcing_input(tokens), tokens, per_token=True)

        batches = eval_batches(self.store, self.config.data.eval_split, cfg.batch_size,
                               rank=self.dist.rank, world_size=self.dist.world_size, limit=limit)
        train_loss = self.read_train_loss()  # a log point: checks the loss is finite
        metrics = evaluate(losses, batches, self.patch_nums, self.device,
                           autocast=self.eval_precision(), all_reduce=self.dist.all_reduce_sum)
        self.eval_flops += self.forward_flops * metrics["images"]
        images = self.step * self.config.optim.batch_size
        record = dict(
            run=self.config.run_id, depth=self.config.model.depth, params=self.params,
            width=self.model.width, batch=self.config.optim.batch_size, peak_lr=self.config.optim.peak_lr,
            epochs=self.total_steps * self.config.optim.batch_size / self.train_size,
            seed=self.config.seed, step=self.step, images=images, tokens=images * self.L,
            flops=3 * self.forward_flops * images, flops_6nd=6 * self.params * images * self.L,
            wall_s=round(self.watch.elapsed, 3),
            train_loss=train_loss,
            lr=self.optimizer.param_groups[0]["lr"],
            ce_avg=metrics["ce_avg"], ce_last=metrics["ce_last"],
            err_avg=metrics["err_avg"], err_last=metrics["err_last"],
            ce_by_scale=metrics["ce_by_scale"], err_by_scale=metrics["err_by_scale"],
            eval=kind, eval_images=metrics["images"], eval_flops=self.eval_flops,
            eval_s=round(time.perf_counter() - t0, 3),
        )
        self.loss_sum, self.loss_count = torch.zeros_like(self.loss_sum), 0
        if self.dist.is_main:
            append_jsonl(self.run_dir.metrics, record)
            self.tracker.log(eval_scalars(record, self.patch_nums), self.step, flops=record["flops"],
                             by_compute=("test",))
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
        return Tracker(self.run_dir.path, tensorboard=runtime.tensorboard, wandb=runtime.wandb,
                       name=self.config.run_id, config={**config, "params": self.params},
                       resume_step=self.step,
                       resume_flops=3 * self.forward_flops * self.step * self.config.optim.batch_size)

    def log_scalars(self, window: "_Window") -> "_Window":
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
            images = self.step * batch
            flops = 3 * self.forward_flops * images
            group = self.optimizer.param_groups[0]  # the decayed group
            self.tracker.log({
                "train/loss": float(loss_sum) / steps,
                "train/lr": group["lr"], "train/weight_decay": group["weight_decay"],
                "train/grad_norm": None if grad_norm is None else float(grad_norm),
                "train/images_per_s": steps * batch / seconds,
                "train/tokens_per_s": steps * batch * self.L / seconds,
                "train/tflops_per_s": 3 * self.forward_flops * steps * batch / seconds / 1e12,
                "compute/flops": flops, "compute/flops_6nd": 6 * self.params * images * self.L,
                "compute/tokens": images * self.L, "compute/wall_s": self.watch.elapsed,
            }, self.step, flops=flops, by_compute=("train/loss",))
        return _Window(self.step, self.watch.elapsed)

    # ------------------------------------------------------------ checkpoints
    def state_dict(self, loss_sum: float | None = None) -> dict[str, Any]:
        """Everything a resume needs; `loss_sum`: the training-loss sum over all ranks (as
        `_global_loss_sum`; computed here when not given, single process only)."""
        if loss_sum is None:
            loss_sum = self._global_loss_sum()
        metrics_offset = self.run_dir.metrics.stat().st_size if self.run_dir.metrics.exists() else 0
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        model_state, optim_state = self._full_states()
        return {
            "format": CHECKPOINT_FORMAT, "config": to_dict(self.config), "step": self.step,
            "total_steps": self.total_steps, "model": model_state,
            "optimizer": optim_state, "order": self.order.state_dict(),
            "rng": rng, "metrics_offset": metrics_offset, "wall_s": self.watch.elapsed,
            "eval_flops": self.eval_flops, "loss_image_sum": loss_sum, "loss_count": self.loss_count,
        }

    def _full_states(self) -> tuple[dict, dict]:
        """Unsharded model and optimizer state dicts (FSDP gathers them; all ranks call this)."""
        if not self.fsdp:
            return self.model.state_dict(), self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(self.model, options=options),
                get_optimizer_state_dict(self.model, self.optimizer, options=options))

    def save_checkpoint(self) -> None:
        """Write checkpoint.pt atomically (rank 0); every rank waits for it. A non-finite
        training loss raises NonFiniteLoss first: a bad state is never saved."""
        loss_sum = self._global_loss_sum()  # every rank takes part
        if self.fsdp or self.dist.is_main:
            state = self.state_dict(loss_sum)  # with FSDP every rank takes part in the gather
        if self.dist.is_main:
            atomic_write(self.run_dir.checkpoint, lambda f: torch.save(state, f))
        self.dist.barrier()

    def stable_state_path(self, step: int, run_dir: Path | None = None) -> Path:
        """Where a WSD run keeps its stable-phase state after `step` steps (for branches)."""
        return Path(run_dir or self.run_dir.path) / "stable" / f"step_{step}.pt"

    def save_stable_state(self) -> None:
        """Keep the training state at this step of the constant phase (rank 0 writes)."""
        loss_sum = self._global_loss_sum()  # every rank takes part (a log point)
        if self.fsdp or self.dist.is_main:
            state = self.state_dict(loss_sum)
        if self.dist.is_main:
            path = self.stable_state_path(self.step)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: torch.save(state, f))
        self.dist.barrier()

    def parent_dir(self) -> Path:
        """A decay branch's parent run directory (a sibling folder name, or a path)."""
        parent = Path(self.config.branch.parent)
        return parent if parent.is_absolute() else self.run_dir.path.parent / parent

    def _branch_start(self) -> dict[str, Any]:
        """The parent's stable-phase state this branch starts from (checked to be its parent)."""
        path = self.stable_state_path(self.plan.start_step, self.parent_dir())
        if not path.exists():
            raise ValueError(f"{path}: the parent {self.config.branch.parent!r} has not kept its "
                             f"state at step {self.plan.start_step} (branch.at "
                             f"{self.config.branch.at}); run the parent with save_at including "
                             f"{self.config.branch.at} first")
        state = torch.load(path, map_location="cpu", weights_only=True)
        mine, theirs = to_dict(self.config), state.get("config", {})
        # what is learned must be the parent's: the same model, optimizer, schedule, length, data
        for key in ("model", "optim", "length", "data", "seed"):
            if theirs.get(key) != mine.get(key):
                raise ValueError(f"{path}: the parent's {key} differs from this branch's "
                                 f"({self.run_dir.config}); a branch must share its parent's config")
        return state

    def load_checkpoint(self) -> bool:
        """Resume from checkpoint.pt if there is one (a decay branch with none starts from its
        parent's stable-phase state); returns whether it resumed."""
        path = self.run_dir.checkpoint
        branch_start = not path.exists() and self.config.branch is not None
        if not path.exists():
            if self.dist.is_main and self.run_dir.metrics.exists():
                self.run_dir.metrics.unlink()  # evaluations of a run that never checkpointed
            if not branch_start:
                return False
        state = self._branch_start() if branch_start else \
            load_checkpoint_file(path, "training checkpoint")
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a training checkpoint of this toolkit (format "
                                  f"{state.get('format') if isinstance(state, dict) else None!r})")
        if not branch_start and state["config"] != to_dict(self.config):
            raise ValueError(f"{path}: was written with another config than "
                             f"{self.run_dir.config}; move it away to start over")
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 set_model_state_dict,
                                                                 set_optimizer_state_dict)

            options = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.model, state["model"], options=options)
            set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"], options=options)
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.order.load_state_dict(state["order"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step, self.watch = state["step"], Stopwatch(state["wall_s"])
        self.eval_flops = state["eval_flops"]
        # rank 0 carries the global sum; older checkpoints kept the sum of per-step means
        loss_sum = (state["loss_image_sum"] if "loss_image_sum" in state
                    else state["loss_sum"] * self.config.optim.batch_size)
        self.loss_sum = torch.tensor(loss_sum if self.dist.is_main else 0.0, dtype=torch.float64,
                                     device=self.device)
        self.loss_count = state["loss_count"]
        # evaluations written after this checkpoint are redone: drop them, so the file
        # ends with neither duplicated nor missing lines
        if self.dist.is_main and self.run_dir.metrics.exists() and not branch_start:
            with open(self.run_dir.metrics, "r+b") as f:
                f.truncate(state["metrics_offset"])
        self.dist.barrier()
        return True

    # ------------------------------------------------------------------- loop
    def run(self, *, max_steps: int | None = None, until_step: int | None = None,
            stop: StopRequest | None = None, resumed: bool | None = None) -> dict[str, Any]:
        """Train to the end, `max_steps` more steps, step `until_step`, or a stop request;
        returns the last metrics record. A stop request is honoured at a step boundary, after
        a checkpoint. `resumed`: whether the caller already called load_checkpoint (None: load
        it here)."""
        cfg = self.config.runtime
        if resumed is None:
            resumed = self.load_checkpoint()
        if self.dist.is_main:
            print(f"[{self.config.run_id}] {'resumed at' if resumed else 'starting'} step "
                  f"{self.step}/{self.total_steps}: N={self.params:,} params, batch "
                  f"{self.config.optim.batch_size} on {self.dist.world_size} x {self.device.type} "
                  f"({self.precision}), {len(self.evals)} evaluations", flush=True)
        last = None
        end = self.total_steps if max_steps is None else min(self.total_steps, self.step + max_steps)
        if until_step is not None:
            end = min(end, until_step)
        last_save = last_log = time.monotonic()
        saved_step = first_step = self.step
        progress = _Progress(self.total_steps, self.step, enabled=self.dist.is_main)
        attempt_t0 = time.monotonic()  # this attempt's start, for the ETA
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
                if self.dist.is_main and not progress.interactive:
                    print(f"[{self.config.run_id}] {kind} eval at step {self.step}: "
                          + " ".join(f"{k} {last[k]:.4f}" for k in ("ce_avg", "ce_last", "err_avg",
                                                                     "err_last")), flush=True)
                progress.set_postfix(loss=f"{last['train_loss']:.3f}", test_ce=f"{last['ce_avg']:.3f}")
            progress.update(1)
            now = time.monotonic()
            step_due = bool(cfg.checkpoint_every_steps) and self.step % cfg.checkpoint_every_steps == 0
            # save/stop decisions: every step on one process (free); with several processes
            # rank 0's decisions are broadcast only every `agree_every_steps` steps and at
            # step-count checkpoints, so a stop signal is honoured within that many steps
            if (not self.dist.enabled or step_due or self.step == self.total_steps
                    or self.step % cfg.agree_every_steps == 0):
                flags = self._agree([step_due or now - last_save >= cfg.checkpoint_every_s,
                                     stop is not None and stop.signum is not None])
            else:
                flags = [False, False]
            if flags[0] or flags[1] or self.step == self.total_steps:
                self.save_checkpoint()
                last_save, saved_step = time.monotonic(), self.step
            if flags[1]:
                break
            if self.dist.is_main and now - last_log >= cfg.log_every_s:
                last_log = now
                eta = (now - attempt_t0) / max(self.step - first_step, 1) * (self.total_steps - self.step)
                self._log_line(progress, eta)
            if self.scalars_due(self.step):
                window = self.log_scalars(window)
        if self.step != saved_step:  # stopped by max_steps: leave a checkpoint at the stop
            self.save_checkpoint()
        self.watch.stop()
        progress.close()
        self.tracker.close()
        return last or {}

    def _log_line(self, progress: "_Progress", eta: float) -> None:
        """A log point (rank 0): status.json's step and ETA (seconds) and, in a job log, a
        progress line with the training loss since the last evaluation (one host read)."""
        # for `scaling.status` and the launcher: where the run is and when it should end
        self.run_dir.update_status(step=self.step, eta_s=round(eta, 1))
        if progress.interactive:
            return
        if self.dist.enabled:  # this rank's images only: no collective at a rank-0-only point
            loss = self.loss_sum.item() / (max(self.loss_count, 1) * self.local_batch)
        else:
            loss = self.read_train_loss()  # also stops on a non-finite loss
        print(f"[{self.config.run_id}] step {self.step}/{self.total_steps} "
              f"({100 * self.step / self.total_steps:.1f}%) loss {loss:.4f} "
              f"lr {self.optimizer.param_groups[0]['lr']:.3g} wall {self.watch.elapsed:.0f}s", flush=True)

    def _agree(self, flags: list[bool]) -> list[bool]:
        """Every rank takes rank 0's decisions (save, stop) at the same step (one broadcast
        and host read with several processes; nothing on one)."""
        if not self.dist.enabled:
            return flags
        t = torch.tensor([float(f) for f in flags], device=self.device)
        torch.distributed.broadcast(t, src=0)
        return [bool(v) for v in t.tolist()]


def check_views(store: TokenStore, config: RunConfig, source: str) -> None:
    """Refuse a store whose train views, flips or transform differ from what `config.data`
    asks (naming the field and both values), or whose evaluation split holds several views."""
    from scaling.data.token_store import mismatch

    data, split = config.data, config.data.train_split
    if store.rows_per_image(data.eval_split) != 1:
        raise TokenStoreError(
            f"token store {store.path}: evaluation split {data.eval_split!r} holds "
            f"{store.rows_per_image(data.eval_split)} rows per image (views or flips); the test "
            f"metrics need one centre crop per image: re-tokenise it without --views/--flip")
    if data.views == "online":
        return  # the train split comes from the images (scaling.online_views)
    store.split_size(split)
    for field, wanted, stored in (("views", data.views, store.views(split)),
                                  ("flip", data.flip, store.flip(split)),
                                  ("transform", data.transform, store.transform(split))):
        if wanted is not None and wanted != stored:
            raise mismatch(store.path, f"splits.{split}.{field}", stored, wanted, source)


def _online_views(store: TokenStore, config: RunConfig, device: torch.device):
    """`data.views: online`: the VQVAE (checked to be the store's) over data.images."""
    from scaling.data.online_views import OnlineViews
    from scaling.core.provenance import sha256_file
    from scaling.data.token_store import mismatch
    from var_core import load_vqvae

    data = config.data
    path = data.vqvae or store.meta.get("vqvae_path")
    if not path or not Path(path).is_file():
        raise TokenStoreError(f"data.views online: VQVAE checkpoint {path!r} not found (set "
                              f"data.vqvae; the store records {store.meta.get('vqvae_path')!r})")
    sha = sha256_file(path)
    if sha != store.meta["vqvae_sha256"]:
        raise mismatch(store.path, "vqvae_sha256", store.meta["vqvae_sha256"], sha,
                       f"data.vqvae {path}")
    return OnlineViews(Path(data.images) / data.train_split, load_vqvae(path), store.classes,
                       seed=config.seed, device=device)


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """Global 2-norm of the gradients (0-d tensor), without touching them."""
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6 (DTensor-aware)
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _shard_fully(model: torch.nn.Module, device: torch.device, world_size: int) -> None:
    """FSDP2: shard each block's parameters, gradients and optimizer state over the ranks."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _checkpoint_blocks(model: torch.nn.Module) -> None:
    """Recompute each transformer block's activations in the backward pass (less memory)."""
    from torch.utils.checkpoint import checkpoint

    for block in model.blocks:
        forward = block.forward
        block.forward = lambda *a, _f=forward, **k: checkpoint(_f, *a, use_reentrant=False, **k)


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
            from tqdm import tqdm

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


def train_run(run_dir: str | Path, *, max_steps: int | None = None, stop: StopRequest | None = None,
              requeue=None, until: float | None = None) -> dict[str, Any]:
    """Train the run in `run_dir` (its config.yaml) to the end, resuming if it can.

    `until`: stop after step round(until * total steps) instead (a segment of a WSD run that
    decay branches wait for, `save_at`); the run is then left "queued" for its next segment.

    Holds the run directory's lock (scaling.runlock) throughout: a second trainer on the same
    directory raises RunLocked and changes nothing. When `stop` is set by a signal, the run
    checkpoints; then, for SIGUSR2 with a `requeue` (submitit's handler), it is recorded
    queued and requeued; otherwise it is recorded `stopped` and SystemExit says how to resume.
    """
    run = RunDir(run_dir)
    config = load_run_config(run.config)
    dist = setup_distributed(config.runtime.device)
    lock = RunLock(run.path)
    try:
        # the runtime policy's process-wide settings (threads, TF32), restored on return
        with resolve_policy(config.runtime, device=dist.device).applied():
            if dist.is_main:
                lock.acquire()  # before any write: a refused trainer leaves the directory alone
            try:
                return _train_locked(run, config, dist, max_steps=max_steps, stop=stop,
                                     requeue=requeue, until=until)
            finally:
                lock.release()
    finally:
        teardown()


def _train_locked(run: RunDir, config: RunConfig, dist: DistInfo, *, max_steps, stop,
                  requeue, until) -> dict[str, Any]:
    try:  # checks before any write: config, data, model, checkpoint
        trainer = Trainer(config, run, dist)
        resumed = trainer.load_checkpoint()
    except BaseException as e:
        # a queued run records why it could not start; a run already done, failed or
        # stopped keeps its record (a bad file given by hand changes nothing written)
        if dist.is_main and not isinstance(e, (KeyboardInterrupt, SystemExit)) and \
                run.read_status().get("state") not in ("done", "failed", "stopped"):
            run.update_status(state="failed", finished_at=time.time(),
                              error=f"{type(e).__name__}: {e}")
        raise
    try:
        if dist.is_main:
            provenance.record_job(run.path, world_size=dist.world_size, device=str(dist.device))
            status = run.read_status()
            run.update_status(state="running", force=True, started_at=time.time(),
                              host=os.uname().nodename, trainer=me(),
                              slurm_job_id=os.environ.get("SLURM_JOB_ID"), error=None,
                              restarts=int(status.get("restarts", -1)) + 1,
                              total_steps=trainer.total_steps, params=trainer.params,
                              **({"branch_of": config.branch.parent, "branch_step":
                                  trainer.plan.start_step} if config.branch else {}))
        until_step = None if until is None else round(until * trainer.total_steps)
        last = trainer.run(max_steps=max_steps, until_step=until_step, stop=stop,
                           resumed=resumed)
        if until_step is not None and trainer.step >= until_step and trainer.step < trainer.total_steps \
                and not (stop is not None and stop.signum is not None):
            if dist.is_main:
                run.update_status(state="queued", step=trainer.step, segment_done=until)
        elif trainer.step >= trainer.total_steps:
            if dist.is_main:
                final = _summary(last or (run.read_metrics() or [None])[-1])
                run.update_status(state="done", finished_at=time.time(), step=trainer.step,
                                  final=final)
        elif stop is not None and stop.signum is not None:
            name = signal.Signals(stop.signum).name
            if requeue is not None and stop.signum == signal.SIGUSR2:
                if dist.is_main:
                    run.update_status(state="queued", step=trainer.step, requeued_by=name)
                requeue(stop.signum)
            message = (f"stopped by {name} at step {trainer.step}/{trainer.total_steps} after "
                       f"a checkpoint; launch again to resume")
            if dist.is_main:
                run.update_status(state="stopped", step=trainer.step, stopped_by=name,
                                  finished_at=time.time(), note=message)
            raise SystemExit(message)
        return last
    except BaseException as e:
        if dist.is_main and not isinstance(e, (KeyboardInterrupt, SystemExit)):
            run.update_status(state="failed", finished_at=time.time(),
                              error=f"{type(e).__name__}: {e}",
                              traceback=traceback.format_exc()[-4000:])
        raise
    finally:
        trainer.tracker.close()


def _summary(record: dict[str, Any] | None) -> dict[str, Any]:
    keys = ("step", "tokens", "flops", "ce_avg", "ce_last", "err_avg", "err_last")
    return {k: record[k] for k in keys if record and k in record}


def samples_after_training(run_dir: str | Path) -> None:
    """The stage the launcher adds after training when the config sets
    `samples.after_training`: `scaling.sample_eval` on the finished run (rank 0 only, once).
    A failure is recorded in status.json (`samples_error`) without failing the trained run;
    `python -m scaling.sample_eval RUN_DIR` redoes it (the samples already drawn are kept)."""
    run = RunDir(run_dir)
    if int(os.environ.get("RANK", "0")) != 0 or run.read_status().get("state") != "done" \
            or not load_run_config(run.config).samples.after_training:
        return
    from scaling.training.sample_eval import evaluate_run, has_samples_line

    # the metrics file, not status.json, says whether it is done: resuming a finished run
    # truncates metrics.jsonl to its last checkpoint, which drops a sample line written after it
    if has_samples_line(run.path):
        return

    try:
        evaluate_run(run.path)  # records samples: done in status.json
    except Exception as e:  # noqa: BLE001 - recorded, the training result stays valid
        traceback.print_exc()
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
        submitit_handler = signal.getsignal(signal.SIGUSR2)
        under_submitit = callable(submitit_handler)
        stop = StopRequest()
        signal.signal(signal.SIGUSR2, stop)
        if not under_submitit or os.environ.get("SUBMITIT_EXECUTOR") == "local":
            signal.signal(signal.SIGTERM, stop)
        requeue = (lambda signum: submitit_handler(signum, None)) if under_submitit else None
        last = train_run(run_dir, stop=stop, requeue=requeue, until=until)
        if until is None:  # a segment of a WSD parent is not the end of the run
            samples_after_training(run_dir)
        return last

    def checkpoint(self, run_dir: str, until: float | None = None):
        """submitit: the same job again; it resumes from checkpoint.pt."""
        import submitit

        return submitit.helpers.DelayedSubmission(TrainJob(), run_dir, until)


def prepare_run_dir(config_path: Path, run_dir: Path | None) -> Path:
    """The run directory for a config given on the command line; copies the config in."""
    config = load_run_config(config_path)
    if run_dir is None:
        run_dir = config_path.parent if config_path.name == "config.yaml" else Path("runs") / config.run_id
    run = RunDir(run_dir)
    if run.config.exists():
        if load_run_config(run.config) != config:
            raise SystemExit(f"error: {run.config} already holds another config; give another "
                             f"--run-dir or remove that run")
    else:
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config, dump_yaml(config))
    return run.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaling.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="a run config (a run directory's config.yaml)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="run directory (default: the config's folder when it is config.yaml)")
    args = parser.parse_args(argv)
    try:
        run_dir = prepare_run_dir(args.config, args.run_dir)
        last = TrainJob()(str(run_dir))
    except (ConfigError, ValueError, NonFiniteLoss, RunLocked) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if last:
        print(f"done: ce_avg {last['ce_avg']:.4f}  ce_last {last['ce_last']:.4f}  "
              f"err_avg {last['err_avg']:.4f}  err_last {last['err_last']:.4f}  ({run_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
