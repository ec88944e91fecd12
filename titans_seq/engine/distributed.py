"""Process-group set-up under torchrun; DDP or FSDP2 wrapping; full state dicts of a sharded model."""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from titans_seq.errors import UserError


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


def wrap_model(model: nn.Module, env: ProcessEnv, strategy: str, block_type: type[nn.Module]) -> nn.Module:
    """DDP, or FSDP2 (``fully_shard`` on every ``block_type`` module, then the root); as is on one process.

    Build the optimizer afterwards: FSDP2 replaces the parameters with sharded ones. Only
    parameters are synchronised: the memory's per-sequence state is an activation, never all-reduced.
    """
    if not env.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard
        for module in model.modules():
            if isinstance(module, block_type):
                fully_shard(module)
        return fully_shard(model)
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_sharded(model: nn.Module) -> bool:
    return any(type(p).__name__ == "DTensor" for p in model.parameters())


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> tuple[dict, dict | None]:
    """The whole model's and optimizer's state dicts; for a sharded model every process must call this."""
    if not is_sharded(model):
        return unwrap(model).state_dict(), None if optimizer is None else optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
    model_state = get_model_state_dict(model, options=_full_options())
    optimizer_state = None if optimizer is None else get_optimizer_state_dict(model, optimizer, options=_full_options())
    return model_state, optimizer_state


def load_full_state_dicts(model: nn.Module, optimizer: torch.optim.Optimizer | None, model_state: dict,
                          optimizer_state: dict | None) -> None:
    """Load whole state dicts (as :func:`full_state_dicts` returns them) into a model, sharded or not."""
    if not is_sharded(model):
        unwrap(model).load_state_dict(model_state)
        if optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict
    set_model_state_dict(model, model_state, options=_full_options())
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=_full_options())


def first_process_only(work: Callable[[], None]) -> None:
    """Run ``work`` on process 0 while the others wait; when it fails, every process fails with it.

    For one-off preparation (tokenising a corpus into shards): a plain barrier would leave the other
    processes waiting forever for a process 0 that stopped on bad input. They raise its one-line
    error instead (a UserError stays one, so each process exits with code 2).
    """
    if not dist.is_initialized():
        work()
        return
    failure: list = [None]
    if dist.get_rank() == 0:
        try:
            work()
        except Exception as exc:
            dist.broadcast_object_list([(isinstance(exc, UserError), str(exc))], src=0)
            raise
    dist.broadcast_object_list(failure, src=0)
    if failure[0] is not None:
        user_error, message = failure[0]
        raise UserError(message) if user_error else RuntimeError(f"process 0 failed: {message}")


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
