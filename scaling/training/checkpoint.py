"""A run's training state on disk: checkpoint.pt, the stable-phase states a WSD run keeps
for its decay branches, and the metrics.jsonl offset that makes a resume exact.

A checkpoint holds the unsharded model and optimizer (FSDP gathers them), the RNG states,
the size of metrics.jsonl when it was written and the trainer's progress (step, data order,
wall time, loss sums: `progress` below). Resuming truncates metrics.jsonl to that size, so
the evaluations made after the checkpoint are redone once: the file ends with neither
duplicated nor missing lines.
"""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Any

import torch

from contracts.atomic import atomic_write
from scaling.core.config_io import to_dict
from scaling.core.rundir import RunDir
from scaling.core.safe_load import CheckpointError, load_checkpoint_file
from scaling.training.config import RunConfig
from scaling.training.distributed import DistInfo
from scaling.training.model import WrappedVAR

CHECKPOINT_FORMAT = "var-scaling-train/1"


class CheckpointState:
    """Saves and restores one run's model, optimizer and RNG states with the trainer's
    `progress` (a dict of plain values and state dicts, written as top-level entries)."""

    def __init__(
        self,
        run: RunDir,
        config: RunConfig,
        dist: DistInfo,
        var: WrappedVAR,
        optimizer: torch.optim.Optimizer,
    ):
        self.run, self.config, self.dist = run, config, dist
        self.var, self.optimizer = var, optimizer

    # ------------------------------------------------------------------ save
    def state(self, progress: dict[str, Any]) -> dict[str, Any]:
        """Everything a resume needs (with FSDP every rank must call this: it gathers)."""
        metrics = self.run.metrics
        metrics_offset = metrics.stat().st_size if metrics.exists() else 0
        rng = {"torch": torch.get_rng_state()}
        if self.dist.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.dist.device)
        model_state, optim_state = self._full_states()
        return {
            "format": CHECKPOINT_FORMAT,
            "config": to_dict(self.config),
            "step": progress["step"],
            "total_steps": progress["total_steps"],
            "model": model_state,
            "optimizer": optim_state,
            "order": progress["order"],
            "rng": rng,
            "metrics_offset": metrics_offset,
            "wall_s": progress["wall_s"],
            "eval_flops": progress["eval_flops"],
            "loss_image_sum": progress["loss_image_sum"],
            "loss_count": progress["loss_count"],
        }

    def save(self, progress: dict[str, Any], path: Path | None = None) -> None:
        """Write the state atomically to `path` (default checkpoint.pt; rank 0 writes);
        every rank takes part and waits for it."""
        if self.var.fsdp or self.dist.is_main:
            state = self.state(progress)  # with FSDP every rank takes part in the gather
        if self.dist.is_main:
            path = path or self.run.checkpoint
            path.parent.mkdir(parents=True, exist_ok=True)
            # who wrote it: on several nodes, the place to look when a checkpoint is wrong
            state["writer"] = {"rank": self.dist.rank, "host": socket.gethostname()}
            atomic_write(path, lambda f: torch.save(state, f))
        self.dist.barrier()

    def _full_states(self) -> tuple[dict, dict]:
        """Unsharded model and optimizer state dicts (FSDP gathers them; all ranks call this)."""
        if not self.var.fsdp:
            return self.var.model.state_dict(), self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (
            get_model_state_dict(self.var.model, options=options),
            get_optimizer_state_dict(self.var.model, self.optimizer, options=options),
        )

    # --------------------------------------------------------- stable states
    def stable_state_path(self, step: int, run_dir: Path | None = None) -> Path:
        """Where a WSD run keeps its stable-phase state after `step` steps (for branches)."""
        return Path(run_dir or self.run.path) / "stable" / f"step_{step}.pt"

    def parent_dir(self) -> Path:
        """A decay branch's parent run directory (a sibling folder name, or a path)."""
        branch = self.config.branch
        assert branch is not None, "only a decay branch has a parent"
        parent = Path(branch.parent)
        return parent if parent.is_absolute() else self.run.path.parent / parent

    def _branch_start(self, start_step: int) -> dict[str, Any]:
        """The parent's stable-phase state this branch starts from (checked to be its parent)."""
        path = self.stable_state_path(start_step, self.parent_dir())
        branch = self.config.branch
        if not path.exists() and branch is not None:
            raise CheckpointError(
                f"{path}: the parent {branch.parent!r} has not kept "
                f"its state at step {start_step} (branch.at "
                f"{branch.at}); run the parent with save_at "
                f"including {branch.at} first"
            )
        state = load_checkpoint_file(
            path, f"stable-phase state of the parent {branch.parent if branch else '?'!r}"
        )
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
            raise CheckpointError(f"{path}: not a stable-phase state of this toolkit")
        mine, theirs = to_dict(self.config), state.get("config", {})
        # what is learned must be the parent's: the same model, optimizer, schedule, length, data
        for key in ("model", "optim", "length", "data", "seed"):
            if theirs.get(key) != mine.get(key):
                raise CheckpointError(
                    f"{path}: the parent's {key} differs from this branch's "
                    f"({self.run.config}); a branch must share its parent's config"
                )
        return state

    # ------------------------------------------------------------------ load
    def load(self, start_step: int, total_steps: int | None = None) -> dict[str, Any] | None:
        """Resume: restore model, optimizer and RNG states from checkpoint.pt and cut
        metrics.jsonl back to it; returns the saved state, whose progress entries the trainer
        restores. A decay branch without a checkpoint starts from its parent's stable-phase
        state after `start_step` steps (its metrics file is left alone). None: a fresh start
        (evaluations of a run that never checkpointed are deleted).

        Every field is checked against the run before anything is loaded or cut (`check`):
        a checkpoint that does not fit (a step outside [0, `total_steps`], a metrics offset
        past the end of metrics.jsonl or not at a line boundary, other shapes, non-finite
        weights) raises CheckpointError naming the file, and nothing is changed."""
        path = self.run.checkpoint
        branch_start = not path.exists() and self.config.branch is not None
        if not path.exists():
            if self.dist.is_main and self.run.metrics.exists():
                self.run.metrics.unlink()  # evaluations of a run that never checkpointed
            if not branch_start:
                return None
        state = (
            self._branch_start(start_step)
            if branch_start
            else load_checkpoint_file(path, "training checkpoint")
        )
        source = self.stable_state_path(start_step, self.parent_dir()) if branch_start else path
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{source}: not a training checkpoint of this toolkit (format "
                f"{state.get('format') if isinstance(state, dict) else None!r})"
            )
        if not branch_start and state["config"] != to_dict(self.config):
            raise CheckpointError(
                f"{path}: was written with another config than "
                f"{self.run.config}; move it away to start over"
            )
        # a branch's parent state counts the parent's steps: only its step is checked here
        self.check(state, source, None if branch_start else total_steps, metrics=not branch_start)
        if branch_start and state["step"] != start_step:
            raise CheckpointError(
                f"{source}: holds step {state['step']}, not the branch point {start_step}"
            )
        try:
            self._load_full_states(state["model"], state["optimizer"])
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and self.dist.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.dist.device)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise CheckpointError(
                f"{source}: its model, optimizer or RNG state does not fit this run "
                f"({self.run.config}): {reason}"
            ) from None
        # evaluations written after this checkpoint are redone: drop them, so the file
        # ends with neither duplicated nor missing lines (`check` verified the cut is at
        # the end of a complete line)
        if self.dist.is_main and self.run.metrics.exists() and not branch_start:
            with open(self.run.metrics, "r+b") as f:
                f.truncate(state["metrics_offset"])
        self.dist.barrier()
        return state

    def check(
        self, state: dict[str, Any], source: Path, total_steps: int | None, metrics: bool = True
    ) -> None:
        """Raise CheckpointError (naming `source`) unless every field of `state` fits this
        run: step and total steps, progress counters, the data order, the metrics offset (with
        `metrics`: within metrics.jsonl, at the end of a complete line whose step is not past
        the checkpoint's), the model's tensor names and shapes, finite weights."""

        def bad(message: str) -> CheckpointError:
            return CheckpointError(f"{source}: {message}; this checkpoint does not fit the run")

        missing = [
            k
            for k in ("step", "total_steps", "model", "optimizer", "order", "rng", "metrics_offset")
            if k not in state
        ]
        if missing:
            raise bad(f"missing field(s) {', '.join(missing)}")
        step, total = state["step"], state["total_steps"]
        for key in ("step", "total_steps", "metrics_offset", "loss_count", "eval_flops"):
            value = state.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(f"{key} is {value!r}, expected a whole number >= 0")
        if total_steps is not None and total != total_steps:
            raise bad(f"total_steps is {total}, but this run has {total_steps} steps")
        if step > total:
            raise bad(f"step {step} is past the run's last step {total}")
        for key in ("wall_s", "loss_image_sum"):
            value = state.get(key, 0.0)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise bad(f"{key} is {value!r}, expected a finite number >= 0")
        order = state["order"]
        if not isinstance(order, dict) or not all(
            isinstance(order.get(k), int) and order[k] >= 0 for k in ("epoch", "position")
        ):
            raise bad(f"order is {order!r}, expected {{'epoch': int >= 0, 'position': int >= 0}}")
        if not isinstance(state["rng"], dict) or not isinstance(
            state["rng"].get("torch"), torch.Tensor
        ):
            raise bad("rng holds no torch RNG state")
        model = state["model"]
        if not isinstance(model, dict) or not isinstance(state["optimizer"], dict):
            raise bad("model and optimizer must be state dicts")
        if not self.var.fsdp:  # with FSDP the live state is sharded: its loader checks shapes
            mine = self.var.model.state_dict()
            if model.keys() != mine.keys():
                extra, lack = sorted(model.keys() - mine.keys()), sorted(mine.keys() - model.keys())
                raise bad(
                    "its model has other tensors than this run's"
                    + (f" (unexpected: {', '.join(extra[:3])})" if extra else "")
                    + (f" (missing: {', '.join(lack[:3])})" if lack else "")
                )
            for name, tensor in model.items():
                if not isinstance(tensor, torch.Tensor) or tensor.shape != mine[name].shape:
                    got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else tensor
                    raise bad(f"model.{name} has shape {got}, this run's {tuple(mine[name].shape)}")
        # weights must be finite; a buffer that is not finite by construction (an attention
        # mask of -inf) is compared with this run's own
        live = self.var.model.state_dict() if not self.var.fsdp else {}
        for name, tensor in model.items():
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                continue
            if bool(torch.isfinite(tensor).all()):
                continue
            own = live.get(name)
            if own is None and "mask" in name:
                continue
            if own is None or not torch.equal(torch.isfinite(own), torch.isfinite(tensor)):
                raise bad(f"model.{name} holds NaN or infinite weights")
        if metrics:
            self._check_metrics_offset(state["metrics_offset"], step, source)

    def _check_metrics_offset(self, offset: int, step: int, source: Path) -> None:
        """The cut a resume makes: within metrics.jsonl, right after a complete JSON line
        whose step is at most the checkpoint's (or at 0)."""
        path = self.run.metrics
        size = path.stat().st_size if path.exists() else 0
        if offset > size:
            raise CheckpointError(
                f"{path} is shorter ({size} bytes) than {source} says it was when saved "
                f"({offset} bytes): evaluations are missing (a partial copy or restore?); "
                "refusing to resume. Restore the whole metrics.jsonl, or move both files "
                "away to start the run over"
            )
        if offset == 0:
            return
        with open(path, "rb") as f:
            head = f.read(offset)
        if not head.endswith(b"\n"):
            raise CheckpointError(
                f"{source}: its metrics offset {offset} is not at the end of a line of "
                f"{path}; refusing to cut the file there"
            )
        last = head[:-1].rsplit(b"\n", 1)[-1]
        try:
            record = json.loads(last)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise CheckpointError(
                f"{path}: the line before the offset {offset} that {source} gives is not a "
                "complete evaluation record; refusing to cut the file there"
            )
        if record["step"] > step:
            raise CheckpointError(
                f"{path}: holds an evaluation at step {record['step']} before the offset "
                f"{offset} that {source} gives, past its step {step}; the two files do not "
                "belong together"
            )

    def _load_full_states(self, model_state: dict, optim_state: dict) -> None:
        """Load unsharded states (FSDP scatters them to the shards)."""
        if not self.var.fsdp:
            self.var.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optim_state)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.var.model, model_state, options=options)
        set_optimizer_state_dict(self.var.model, self.optimizer, optim_state, options=options)
