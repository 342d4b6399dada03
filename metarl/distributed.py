"""Meta-batches split over processes with ``torch.distributed`` (``torchrun --nproc-per-node K
metarl-train ...``): each process adapts its share of every meta-batch's tasks, the
meta-gradient is all-reduced, and every process takes the same outer step.

Plain collectives, not ``DistributedDataParallel``: DDP hooks the backward of one module's
forward, while a meta-batch runs the model functionally once per task and inner step (the
module-cloning design of learn2learn fought DDP for the same reason, learnables/learn2learn#281).
Every process samples the whole meta-batch from the same generator and keeps its own slice, so
the task generator, the parameters and the optimizer state stay identical on every process
and any of them could write the checkpoint; rank 0 alone does. In one process (no torchrun)
nothing here communicates and :func:`step` is exactly :meth:`Learner.step`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from metarl.errors import ConfigError
from metarl.learner import Learner


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher setting
    ``WORLD_SIZE``) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> tuple[int, int]:
    """``(rank, number of processes)``: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_writer() -> bool:
    """Whether this process writes the run folder and speaks: rank 0 (also before and after
    the process group, by torchrun's ``RANK``)."""
    return world()[0] == 0 and int(os.environ.get("RANK", "0")) == 0


def init(device: str) -> bool:
    """Join the process group ``torchrun`` describes (environment variables), if it launched
    this process and the group does not exist yet: NCCL for a CUDA ``device`` (each process on
    GPU ``LOCAL_RANK``), gloo on the CPU. Returns whether this call created the group (then
    :func:`finish` ends it)."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ConfigError(f"process {local} of this node has no GPU of its own "
                              f"({torch.cuda.device_count()} visible); lower --nproc-per-node "
                              "to the GPU count")
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def finish(created: bool) -> None:
    """End the process group if :func:`init` created it."""
    if created and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def shards(n: int, parts: int, unit: int = 1) -> list[slice]:
    """``n`` tasks split into at most ``parts`` contiguous, non-empty slices, in order, each
    starting at a multiple of ``unit`` tasks; their numbers of units differ by at most one
    (the first ones larger). Fewer than ``parts`` when there are fewer units."""
    if n < 1 or parts < 1 or unit < 1:
        raise ValueError(f"need at least one task, part and unit, got {n} tasks, {parts} "
                         f"parts, unit {unit}")
    units = -(-n // unit)
    parts = min(parts, units)
    size, extra = divmod(units, parts)
    bounds = [min(n, unit * (k * size + min(k, extra))) for k in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def my_tasks(meta_batch: int) -> slice:
    """This process's slice of a meta-batch of ``meta_batch`` tasks (all of it in one
    process)."""
    rank, size = world()
    if size > meta_batch:
        raise ConfigError(f"{size} processes for a meta-batch of {meta_batch} tasks; each "
                          f"needs at least one task: lower --nproc-per-node to {meta_batch} or "
                          "raise --meta-batch")
    return shards(meta_batch, size)[rank]


def all_reduce_meta_gradient(tensors: Sequence[Tensor], loss: Tensor | None,
                             share: float) -> Tensor | None:
    """Replace each tensor's ``.grad`` (the gradient of this process's mean task loss) by the
    whole meta-batch's: the sum over processes of ``share`` (this process's fraction of the
    tasks) times it, in one all-reduce; returns the whole meta-batch's mean ``loss`` likewise
    (None without one). Tensors without a gradient keep none (they have none on any process)."""
    grads = [t.grad for t in tensors if t.grad is not None]
    parts = [g.reshape(-1) for g in grads]
    if loss is not None:
        parts.append(loss.detach().reshape(1).to(grads[0].dtype if grads else loss.dtype))
    flat = torch.cat(parts) * share
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
    return None if loss is None else flat[-1].to(loss.dtype)


def _share(tasks: slice, meta_batch: int) -> float:
    return (tasks.stop - tasks.start) / meta_batch


def _params(learner: Learner) -> list[Tensor]:
    return [p for group in learner.optimizer.param_groups for p in group["params"]]


def step(learner: Learner, loss: Tensor, tasks: slice, meta_batch: int) -> Tensor:
    """:meth:`Learner.step` on this process's mean task ``loss`` over ``tasks`` of the
    meta-batch, with the meta-gradient all-reduced over the processes first, so every process
    takes the step one process would take on the whole meta-batch (equal up to round-off: the
    sum is ordered differently). Returns the whole meta-batch's mean loss (for logging)."""
    if world()[1] == 1:
        learner.step(loss)
        return loss
    learner.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    total = all_reduce_meta_gradient(_params(learner), loss, _share(tasks, meta_batch))
    learner.optimizer.step()
    return total


def reduce_grads(learner: Learner, tasks: slice, meta_batch: int) -> None:
    """The ``.grad`` each process set from its ``tasks`` (a mean over them, e.g. Reptile's
    direction) made the whole meta-batch's mean on every process; nothing in one process."""
    if world()[1] > 1:
        all_reduce_meta_gradient(_params(learner), None, _share(tasks, meta_batch))


def task_mean(value: Tensor, tasks: slice, meta_batch: int) -> Tensor:
    """The whole meta-batch's mean of a scalar that is this process's mean over its
    ``tasks`` (for logging); ``value`` itself in one process. Every process must call it."""
    if world()[1] == 1:
        return value
    return all_reduce_meta_gradient((), value, _share(tasks, meta_batch))


def check_replicas(learner: Learner) -> None:
    """Refuse to train if the processes do not start from the same state (e.g. a resumed run
    whose checkpoint only rank 0's machine can read): their steps would silently diverge."""
    if world()[1] == 1:
        return
    flat = torch.cat([p.detach().reshape(-1).double() for p in learner.params.values()]
                     + [torch.tensor([float(learner.iteration)], dtype=torch.float64,
                                     device=next(iter(learner.params.values())).device)])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise ConfigError("the torchrun processes start from different meta-parameters or "
                          "iterations; launch them all with the same options, and with --resume "
                          "on a run folder every machine reads (a shared file system)")
