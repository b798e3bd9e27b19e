"""The VAR of a run, built and wrapped for training: initial weights, activation
checkpointing, DDP or FSDP2, torch.compile, and the AdamW parameter groups."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, cast

import torch

from scaling.core.runtime import Policy
from scaling.training.config import RunConfig
from scaling.training.distributed import DistInfo
from var_core import VAR

if TYPE_CHECKING:
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel

# weight decay does not apply to parameters whose name contains one of these (the official
# trainer's `nowd_keys`, verbatim), nor to biases and 1-D tensors. In VAR the names select
# pos_start, pos_1LC, lvl_embed and scale_mul_1H11 (ada_gss with shared AdaLN); class_emb,
# its null row included, is decayed, as officially.
NO_DECAY_KEYS = (
    "cls_token",
    "start_token",
    "task_token",
    "cfg_uncond",
    "pos_embed",
    "pos_1LC",
    "pos_start",
    "start_pos",
    "lvl_embed",
    "gamma",
    "beta",
    "ada_gss",
    "moe_bias",
    "scale_mul",
)


@dataclasses.dataclass
class WrappedVAR:
    """One VAR and the modules that run it.

    model: the bare VAR (state dicts, parameter groups, train/eval mode);
    train: what a training step calls (DDP or FSDP, maybe compiled);
    eval:  what an evaluation calls (the bare model, maybe compiled: each rank evaluates
           its own images, no DDP wrapper);
    fsdp / ddp: how gradients are synchronised;
    grad_params: the parameters that get gradients (after sharding: what clipping sees).
    """

    model: VAR
    train: torch.nn.Module
    eval: torch.nn.Module
    fsdp: bool
    ddp: bool
    device: torch.device
    grad_params: list[torch.nn.Parameter]

    def grad_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """The context of one micro-batch's backward: gradients are synchronised across ranks
        only for the last micro-batch of a step (DDP `no_sync`, FSDP's gradient-sync flag)."""
        if self.fsdp:  # fully_shard made the model an FSDPModule
            cast("FSDPModule", self.model).set_requires_gradient_sync(last)
        if self.ddp and not last:
            return cast("DistributedDataParallel", self.train).no_sync()
        return contextlib.nullcontext()


def build(
    config: RunConfig, var_kwargs: dict[str, Any], policy: Policy, dist: DistInfo
) -> WrappedVAR:
    """VAR(**var_kwargs) with the same initial weights on every rank (seeded by
    `config.seed`), on the policy's device, wrapped as `config.runtime` asks."""
    torch.manual_seed(config.seed)  # same initial weights on every rank
    model = VAR(**var_kwargs, attn_backend=config.runtime.attn_backend).to(dist.device)
    # class dropout is drawn by the trainer for the whole global batch (step.class_dropout),
    # so that the batch is the same whatever the number of processes
    model.cond_drop = 0.0
    if config.runtime.activation_checkpointing:
        _checkpoint_blocks(model)
    fsdp = config.runtime.fsdp and dist.enabled
    ddp = dist.enabled and not fsdp
    train_model: torch.nn.Module = model
    if fsdp:
        _shard_fully(model, dist.device, dist.world_size)
    elif ddp:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
        )
    return WrappedVAR(
        model=model,
        train=policy.maybe_compile(train_model),
        eval=policy.maybe_compile(model),
        fsdp=fsdp,
        ddp=ddp,
        device=dist.device,
        grad_params=[p for p in model.parameters() if p.requires_grad],
    )


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


def optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.AdamW:
    """AdamW over `param_groups` (learning rate and weight decay are set every step)."""
    optim = config.optim
    # fused (CUDA and CPU): one kernel per step, and no host read of the step count
    return torch.optim.AdamW(
        param_groups(model),
        lr=optim.peak_lr,
        betas=optim.betas,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        fused=True,
    )


def _shard_fully(model: VAR, device: torch.device, world_size: int) -> None:
    """FSDP2: shard each block's parameters, gradients and optimizer state over the ranks."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    for block in model.block_list():
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _checkpoint_blocks(model: VAR) -> None:
    """Recompute each transformer block's activations in the backward pass (less memory)."""
    from torch.utils.checkpoint import checkpoint

    for block in model.block_list():
        forward = block.forward
        block.forward = lambda *a, _f=forward, **k: checkpoint(_f, *a, use_reentrant=False, **k)
