"""Supervised few-shot tasks: a meta-batch of support/query sets and the task-family protocol.

A task's data is any pytree of tensors: ``(x, y)`` for regression and classification, token
ids and padding masks for translation. A family says how to sample it, which network to adapt,
the per-task loss and the evaluation metrics; the meta-learners and the evaluation only ever go
through :class:`TaskFamily`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn

from metarl.params import Params, forward_fn
from metarl.stats import Metric

Forward = Callable[..., Any]
"""``forward(params, *inputs)``: the family's model run with the given params."""


@dataclass(frozen=True)
class TaskBatch:
    """``N`` tasks stacked on a leading task dimension.

    ``support`` and ``query`` are pytrees whose tensors are ``[N, ...]`` (e.g. ``(x [N, S, ...],
    y [N, S, ...])``); ``info`` (a pytree ``[N, ...]``, or None) describes each task, e.g. a
    sinusoid's amplitude and phase.
    """

    support: Any
    query: Any
    info: Any = None

    @property
    def num_tasks(self) -> int:
        return pytree.tree_leaves(self.support)[0].shape[0]

    def to(self, device: torch.device | str) -> TaskBatch:
        device = torch.device(device)
        if all(t.device == device for t in pytree.tree_leaves(self)):  # cheaper than a map
            return self
        return pytree.tree_map(lambda t: t.to(device, non_blocking=True), self)

    def __getitem__(self, index: slice) -> TaskBatch:
        """A slice of the tasks (evaluation goes through many tasks in chunks)."""
        return pytree.tree_map(lambda t: t[index], self)

    def pooled(self) -> Any:
        """Every example of every task, support and query, as one task's data: each leaf
        ``[N, S, ...]`` and ``[N, Q, ...]`` becomes ``[N * (S + Q), ...]`` (the pretraining
        baseline's batch)."""
        return pytree.tree_map(lambda s, q: torch.cat([s, q], 1).flatten(0, 1), self.support,
                               self.query)


pytree.register_dataclass(TaskBatch)


class TaskFamily(Protocol):
    """What a supervised task distribution provides to the meta-learners and the evaluation.

    Optional attributes, read with defaults: ``eval_tasks`` (held-out tasks to evaluate on,
    100), ``eval_chunk`` (tasks fine-tuned at once, 100) and ``figure(path, tasks,
    predict)`` (a figure of its own beside the evaluation curves).
    """

    tag: str
    """Names the family's settings in run and result folders, e.g. ``sinusoid-k10``."""
    metrics: tuple[Metric, ...]
    """What :meth:`evaluate` returns, in order; the first is the headline metric."""

    def sample(self, num_tasks: int, generator: torch.Generator, split: str = "train"
               ) -> TaskBatch:
        """``num_tasks`` tasks from ``split`` ("train" or "test"), on CPU."""
        ...

    def model(self) -> nn.Module:
        """A freshly initialised network for this family."""
        ...

    def loss(self, forward: Forward, params: Params, data: Any) -> Tensor:
        """Scalar training loss of one task's ``data`` under ``forward(params, ...)``."""
        ...

    def evaluate(self, forward: Forward, params: Params, data: Any) -> Mapping[str, Tensor]:
        """One task's value of each metric (``metrics``' names) on ``data``."""
        ...


def loss_fn(family: TaskFamily, model: nn.Module) -> Callable[[Params, Any], Tensor]:
    """``loss(params, data)`` of ``family`` with ``model``, for :func:`metarl.adapt.adapt`."""
    forward = forward_fn(model)
    return lambda params, data: family.loss(forward, params, data)
