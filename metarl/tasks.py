"""Supervised few-shot tasks: a meta-batch of support/query sets and the task-family protocol."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class TaskBatch:
    """``N`` tasks stacked on a leading task dimension.

    support_x [N, S, ...], support_y [N, S, ...], query_x [N, Q, ...], query_y [N, Q, ...];
    ``info`` [N, ...] optionally describes each task (e.g. a sinusoid's amplitude and phase).
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    info: Tensor | None = None

    @property
    def support(self) -> tuple[Tensor, Tensor]:
        return self.support_x, self.support_y

    @property
    def query(self) -> tuple[Tensor, Tensor]:
        return self.query_x, self.query_y

    @property
    def num_tasks(self) -> int:
        return self.support_x.shape[0]

    def to(self, device: torch.device | str) -> TaskBatch:
        return TaskBatch(*(t.to(device, non_blocking=True) for t in
                           (self.support_x, self.support_y, self.query_x, self.query_y)),
                         info=None if self.info is None else self.info.to(device))

    def __getitem__(self, index: slice) -> TaskBatch:
        """A slice of the tasks (evaluation goes through many tasks in chunks)."""
        return replace(self, support_x=self.support_x[index], support_y=self.support_y[index],
                       query_x=self.query_x[index], query_y=self.query_y[index],
                       info=None if self.info is None else self.info[index])


class TaskFamily(Protocol):
    """What a supervised task distribution provides to the meta-learners."""

    name: str
    metric_name: str  # "mse" or "accuracy"
    higher_is_better: bool

    def sample(self, num_tasks: int, generator: torch.Generator, split: str = "train") -> TaskBatch:
        """``num_tasks`` tasks from ``split`` ("train" or "test"), on CPU."""
        ...

    def model(self) -> nn.Module:
        """A freshly initialised network for this family."""
        ...

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Scalar training loss of one task's predictions."""
        ...

    def metric(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Scalar evaluation metric of one task's predictions."""
        ...
