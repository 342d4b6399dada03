"""The pretraining baseline of Finn et al. (2017), Section 5.1.

One network trained on all tasks jointly (the support and query examples of every task in a
meta-batch pooled into one regression/classification batch), then fine-tuned at test time
with the same gradient steps as the meta-learners.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from metarl.algos.supervised import build
from metarl.config import MetaConfig, check_positive
from metarl.logger import Run
from metarl.params import Params
from metarl.rules import SGD, UpdateRule
from metarl.tasks import TaskFamily, loss_fn


@dataclass(frozen=True)
class Pretrain:
    """The pretraining baseline: one network on all tasks jointly (Finn et al. 2017)."""

    outer_lr: float = 1e-3
    """Adam step size."""

    name: ClassVar[str] = "pretrain"
    kind: ClassVar[str] = "supervised"

    def __post_init__(self) -> None:
        check_positive("outer_lr", self.outer_lr)

    def rule(self, params: Params, cfg: MetaConfig) -> UpdateRule:
        """Fine-tuning at test time: plain SGD at inner_lr."""
        return SGD(cfg.inner_lr)

    def optimizer(self, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=self.outer_lr)


def train(algo: Pretrain, family: TaskFamily, cfg: MetaConfig, run: Run,
          resume: dict | None = None) -> None:
    model, learner = build(family, algo, cfg, resume)
    loss = loss_fn(family, model)

    for iteration in range(learner.iteration, cfg.iterations):
        tasks = family.sample(cfg.meta_batch, learner.generator).to(cfg.device)
        joint_loss = loss(learner.params, tasks.pooled())
        learner.step(joint_loss)

        learner.iteration = iteration + 1
        run.end_iteration(learner.iteration, lambda: {"loss/joint": joint_loss.item()},
                          learner.state_dict)
