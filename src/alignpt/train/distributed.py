"""Process-group setup for single-process, ``torchrun`` and ``accelerate launch`` runs.

Plain ``torch.distributed`` rather than ``accelerate.Accelerator``: both launchers export the
standard ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR`` variables, so ``env://`` covers
them and multi-node alike; the mix loader already shards the stream per rank (which
``Accelerator.prepare`` would redo), and bit-exact resume needs direct control of
``no_sync``, the optimizer state and the RNG, which ``Accelerator`` wraps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from alignpt.errors import UserError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None = None) -> DistContext:
    """Join the process group named by the launcher's environment (or run alone)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is not None and device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device: unknown device '{device}' (cpu or cuda)")
    if device is not None and device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device: cuda requested but no CUDA device is available")
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank, world_size, local_rank, dev)


def teardown_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistContext, strategy: str) -> nn.Module:
    """DDP (default) or FSDP2 ``fully_shard`` per decoder layer, for larger presets."""
    if not ctx.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def mean_across_ranks(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of a scalar tensor over all ranks (identity when alone)."""
    if ctx.distributed:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= ctx.world_size
    return value


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op when alone)."""
    if ctx.distributed:
        dist.barrier()


def broadcast_from_main(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (a small picklable object, sent over the wire)."""
    if not ctx.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_from_ranks(value: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``value`` (a small picklable object), in rank order, on every rank."""
    if not ctx.distributed:
        return [value]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, value)
    return gathered
