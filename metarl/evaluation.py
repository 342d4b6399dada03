"""Few-shot evaluation: each query metric after 0, 1, ..., S fine-tuning steps, per task."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.func import vmap

from metarl.adapt import LossFn, adapt
from metarl.params import Params, detach, forward_fn
from metarl.rules import UpdateRule
from metarl.tasks import TaskBatch, TaskFamily, loss_fn


def finetune_curve(family: TaskFamily, model: torch.nn.Module, params: Params, rule: UpdateRule,
                   tasks: TaskBatch, steps: int, chunk: int = 100) -> dict[str, Tensor]:
    """Each of the family's metrics on every task's query set after ``0..steps`` steps of
    ``rule`` on its support set: ``{name: [N, steps + 1, ...]}``.

    Every method is fine-tuned the same way, with the update rule it meta-learned (the learned
    rates for Meta-SGD), first-order since nothing flows back.
    """
    forward, loss = forward_fn(model), loss_fn(family, model)
    params = detach(params)

    def curve(support: Any, query: Any) -> dict[str, Tensor]:
        p, values = params, []
        for s in range(steps + 1):
            if s:
                p = adapt(loss, p, support, rule=rule, steps=1, first_order=True)
            values.append(family.evaluate(forward, p, query))
        return {m.name: torch.stack([v[m.name] for v in values]) for m in family.metrics}

    with torch.no_grad():  # the rule's learned tensors need no graph here
        parts = [vmap(curve)(part.support, part.query) for part in _chunks(tasks, chunk)]
    return {m.name: torch.cat([p[m.name] for p in parts]) for m in family.metrics}


def predictions_after(loss: LossFn, forward: Any, params: Params, rule: UpdateRule, support: Any,
                      x: Tensor, steps: tuple[int, ...]) -> dict[int, Tensor]:
    """One task's predictions ``forward(params, x)`` after each number of steps in ``steps``."""
    p, out, done = detach(params), {}, 0
    with torch.no_grad():
        for s in sorted(steps):  # adapt only as far as the largest number of steps asked for
            p = adapt(loss, p, support, rule=rule, steps=s - done, first_order=True)
            out[s], done = forward(p, x).detach(), s
    return out


def _chunks(tasks: TaskBatch, size: int) -> list[TaskBatch]:
    return [tasks[i : i + size] for i in range(0, tasks.num_tasks, size)]
