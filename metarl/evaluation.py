"""Few-shot evaluation: each query metric after 0, 1, ..., S fine-tuning steps, per task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.func import vmap
from tqdm import tqdm

from metarl.adapt import LossFn, adapt_step
from metarl.params import Params, detach, forward_fn
from metarl.rules import UpdateRule
from metarl.tasks import Forward, TaskBatch, TaskFamily, loss_fn

Predict = Callable[[Forward, Any], Forward]
"""``predict(forward, support) -> forward_query``: how a metric method makes a task's query
predictions from its support set: ``forward_query(params, *query_inputs)`` gives what the
family's ``evaluate`` reads (logits for classification)."""


def finetune_curve(family: TaskFamily, model: torch.nn.Module, params: Params, rule: UpdateRule,
                   tasks: TaskBatch, steps: int, chunk: int = 100,
                   progress: tqdm | None = None, predict: Predict | None = None
                   ) -> dict[str, Tensor]:
    """Each of the family's metrics on every task's query set after ``0..steps`` steps of
    ``rule`` on its support set: ``{name: [N, steps + 1, ...]}``.

    Every method is fine-tuned the same way, with the update rule it meta-learned (the learned
    rates for Meta-SGD), first-order since nothing flows back. A metric method (``predict``
    given) takes no gradient steps: its query predictions come from the support set directly,
    so every step holds its one value. Tasks go ``chunk`` at a time; ``progress`` advances by
    one per chunk.
    """
    forward, loss = forward_fn(model), loss_fn(family, model)
    params = detach(params)

    def curve(support: Any, query: Any) -> dict[str, Tensor]:
        if predict is not None:
            value = family.evaluate(predict(forward, support), params, query)
            return {m.name: torch.stack([value[m.name]] * (steps + 1)) for m in family.metrics}
        # The rule's state carries over from step to step, as in training (a learned
        # optimizer's LSTM state); SGD's is empty.
        p, state, values = params, rule.init(params), []
        for s in range(steps + 1):
            if s:
                p, state = adapt_step(loss, p, support, rule, state, first_order=True)
            values.append(family.evaluate(forward, p, query))
        return {m.name: torch.stack([v[m.name] for v in values]) for m in family.metrics}

    parts = []
    with torch.no_grad():  # the rule's learned tensors need no graph here
        for part in chunks(tasks, chunk):
            parts.append(vmap(curve)(part.support, part.query))
            if progress is not None:
                progress.update(1)
    return {m.name: torch.cat([p[m.name] for p in parts]) for m in family.metrics}


def predictions_after(loss: LossFn, forward: Any, params: Params, rule: UpdateRule, support: Any,
                      x: Tensor, steps: tuple[int, ...]) -> dict[int, Tensor]:
    """One task's predictions ``forward(params, x)`` after each number of steps in ``steps``."""
    p, out, done = detach(params), {}, 0
    state = rule.init(p)
    with torch.no_grad():
        for s in sorted(steps):  # adapt only as far as the largest number of steps asked for
            for _ in range(s - done):
                p, state = adapt_step(loss, p, support, rule, state, first_order=True)
            out[s], done = forward(p, x).detach(), s
    return out


def chunks(tasks: TaskBatch, size: int) -> list[TaskBatch]:
    return [tasks[i : i + size] for i in range(0, tasks.num_tasks, size)]
