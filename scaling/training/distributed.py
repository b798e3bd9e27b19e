"""torch.distributed set-up from the environment SLURM/submitit (or torchrun) provides."""

from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist

from scaling.core.runtime import pick_device


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, tensor: torch.Tensor) -> None:
        """Sum `tensor` over all ranks in place (no-op on one process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup(device_preference: str = "auto", timeout_s: float | None = None) -> DistInfo:
    """Initialise the process group when the job has several processes.

    Under SLURM with several tasks (and no RANK set by a launcher), submitit's
    TorchDistributedEnvironment exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT:
    MASTER_ADDR is the first node of the job's node list (its name must resolve on every
    node), ranks are SLURM's task ids (node-major: node 0 holds ranks 0..k-1), LOCAL_RANK the
    task's index on its node (its GPU). Backend: NCCL on CUDA, gloo on CPU. `timeout_s`:
    how long a collective may wait before it raises (scaling.core.runtime's
    collective_timeout_s; None: torch's default).
    """
    if "RANK" not in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            rank=rank,
            world_size=world_size,
            timeout=None if timeout_s is None else datetime.timedelta(seconds=timeout_s),
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown() -> None:
    """Destroy the process group if this process made one."""
    if dist.is_initialized():
        dist.destroy_process_group()
