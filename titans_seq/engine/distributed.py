"""Process-group set-up under torchrun, and wrapping a model for DDP."""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import UserError


@dataclass(frozen=True)
class ProcessEnv:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def choose_device(preference: str) -> torch.device:
    """``auto`` picks CUDA when there is one; asking for CUDA where there is none is a user error."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise UserError("run.device=cuda, but this machine has no CUDA device (use run.device=cpu or auto)")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def init_process(preference: str) -> ProcessEnv:
    """One process, or one of the processes torchrun started (nccl on CUDA, gloo on CPU)."""
    device = choose_device(preference)
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return ProcessEnv(rank, world_size, device)


def wrap_model(model: nn.Module, env: ProcessEnv) -> nn.Module:
    """DistributedDataParallel under torchrun; the model as is on one process.

    Only parameters are synchronised: the memory's per-sequence state is an activation, never all-reduced.
    """
    if not env.distributed:
        return model
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_agree(flag: bool, env: ProcessEnv) -> bool:
    """True when ``flag`` holds on every process (so that all of them take the same branch)."""
    if not env.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def mean_over_processes(value: float, env: ProcessEnv) -> float:
    """The mean of a per-process scalar (a loss over the local batch) over all processes."""
    if not env.distributed:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(total)
    return total.item() / env.world_size


def close_process() -> None:
    """Leave the process group cleanly: wrappers (DDP's reducer) are collected before it goes."""
    if dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
