"""Data parallelism outside the HF Trainer (stage 1): the processes ``torchrun`` / ``accelerate launch`` started.

The Trainer (stage 2) wraps the model in DDP itself. Stage 1 trains only the frame encoder and its
throwaway heads, so it averages their gradients with one all-reduce of a flat buffer per step instead:
the LLM's parameters, which DDP would register and then find unused, never take part. The process
group is the one ``TrainingArguments`` set up (gloo on CPUs, NCCL on GPUs); with a single process
every helper here is a no-op.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

# Where launchers put the number of processes: torchrun / accelerate's multi-process launcher, and MPI
# (accelerate's multi-CPU launch runs under mpirun).
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
T = TypeVar("T")
R = TypeVar("R")


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the running process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(params: Sequence[torch.Tensor]) -> None:
    """Replace every gradient by its mean over the processes (one all-reduce over all of them).

    Parameters without a gradient are left out; which ones have none is fixed by the model's structure
    (a head no loss reads), so it is the same set on every process.
    """
    _, world = rank_and_world()
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        grad.copy_(synced)


def mean_over_processes(value: torch.Tensor) -> float:
    """A scalar averaged over the processes (the logged loss of a data-parallel step)."""
    _, world = rank_and_world()
    value = value.detach()
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def map_sharded(items: list[T], work: Callable[[list[T]], list[R]]) -> list[R]:
    """``work(items)`` with the items split over the processes (item i on process i % world); every
    process gets the whole result, in the items' order."""
    rank, world = rank_and_world()
    if world == 1:
        return work(items)
    mine = work(items[rank::world])
    parts: list[list[R] | None] = [None] * world
    dist.all_gather_object(parts, mine)
    return [parts[i % world][i // world] for i in range(len(items))]


def from_main_process(value: T) -> T:
    """The main process's ``value`` on every process (others pass a placeholder); waits for the main process."""
    _, world = rank_and_world()
    if world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def check_in_sync(params: Sequence[torch.Tensor], what: str) -> None:
    """Raise unless every process holds the same values (one checksum each): data parallelism keeps the
    replicas equal, and a replica that drifted would train on silently."""
    _, world = rank_and_world()
    if world == 1:
        return
    checksum = torch.stack([p.detach().double().sum() for p in params]).sum().reshape(1)
    sums = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(sums, checksum)
    values = [float(s) for s in sums]
    if max(values) - min(values) > 1e-6 * max(1.0, max(abs(v) for v in values)):
        raise RuntimeError(f"{what}: the processes' weights differ after training (checksums {values})")


def check_launch(environ: Mapping[str, str]) -> str | None:
    """Why this process should not train alone, or None.

    ``accelerate launch --num_processes N`` on a machine with fewer than two GPUs and no accelerate
    config uses its "simple" launcher: it starts ONE process (several need mpirun or ``--multi_gpu``)
    and only sets ``MASTER_ADDR``/``MASTER_PORT`` for it. That process would train alone on a world
    size of 1 while the user asked for N. (With ``--mpirun_hostfile`` mpirun starts them and says so.)
    """
    launched_by_accelerate = "ACCELERATE_MIXED_PRECISION" in environ
    in_a_group = any(name in environ for name in WORLD_SIZE_VARIABLES)
    if launched_by_accelerate and "MASTER_PORT" in environ and not in_a_group:
        return ("accelerate launch started a single process although several were asked for (its simple launcher,"
                " used without GPUs or a config): add --multi_gpu (it also starts CPU processes, with gloo), e.g."
                " `accelerate launch --multi_gpu --num_processes 2 -m lionfs_ros.cli train ...`, or use torchrun")
    return None
