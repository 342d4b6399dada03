"""Few-shot evaluation: the query metric after 0, 1, ..., S fine-tuning steps, per task."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import vmap

from metarl.adapt import InnerLR, adapt
from metarl.params import Params, detach, forward_fn
from metarl.tasks import TaskBatch, TaskFamily


def finetune_curve(family: TaskFamily, model: torch.nn.Module, params: Params, inner_lr: InnerLR,
                   tasks: TaskBatch, steps: int, chunk: int = 100) -> Tensor:
    """Query metric of each task after ``0..steps`` support-set steps: ``[N, steps + 1]``.

    Every method is fine-tuned the same way: plain gradient steps of size ``inner_lr`` (the
    learned rates for Meta-SGD) on the support loss, first-order since nothing flows back.
    """
    f = forward_fn(model)
    params = detach(params)
    inner_lr = detach(inner_lr) if isinstance(inner_lr, dict) else inner_lr

    def loss(p: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        return family.loss(f(p, data[0]), data[1])

    def curve(support: tuple[Tensor, Tensor], query: tuple[Tensor, Tensor]) -> Tensor:
        p, values = params, []
        for s in range(steps + 1):
            if s:
                p = adapt(loss, p, support, inner_lr=inner_lr, steps=1, first_order=True)
            values.append(family.metric(f(p, query[0]), query[1]))
        return torch.stack(values)

    out = [vmap(curve)(part.support, part.query) for part in _chunks(tasks, chunk)]
    return torch.cat(out).detach()


def predictions_after(model: torch.nn.Module, loss: Callable[[Tensor, Tensor], Tensor],
                      params: Params, inner_lr: InnerLR, support: tuple[Tensor, Tensor],
                      x: Tensor, steps: tuple[int, ...]) -> dict[int, Tensor]:
    """One task's predictions at ``x`` after each number of steps in ``steps`` (for plots)."""
    f = forward_fn(model)
    p, out, done = detach(params), {}, 0
    for s in sorted(steps):  # adapt only as far as the largest number of steps asked for
        p = adapt(lambda q, d: loss(f(q, d[0]), d[1]), p, support, inner_lr=inner_lr,
                  steps=s - done, first_order=True)
        out[s], done = f(p, x).detach(), s
    return out


def _chunks(tasks: TaskBatch, size: int) -> list[TaskBatch]:
    return [tasks[i : i + size] for i in range(0, tasks.num_tasks, size)]
