"""Reptile: Nichol, Achiam & Schulman (2018), "On First-Order Meta-Learning Algorithms", Alg. 2.

theta <- theta + epsilon * mean_i (phi_i - theta), where phi_i is theta after k SGD steps on
task i; epsilon is annealed linearly to 0 over training as in the paper.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from metarl import distributed
from metarl.adapt import adapt_tasks, reptile_direction, task_losses
from metarl.algos.supervised import build
from metarl.config import MetaConfig, check_positive
from metarl.logger import Run
from metarl.params import Params
from metarl.rules import SGD, UpdateRule
from metarl.tasks import TaskFamily, loss_fn


@dataclass(frozen=True)
class Reptile:
    """Reptile (Nichol et al. 2018, Algorithm 2), batched over tasks."""

    epsilon: float = 0.1
    """Outer step size in (0, 1] (the fraction of the way to the adapted params), annealed
    linearly to 0."""

    name: ClassVar[str] = "reptile"
    kind: ClassVar[str] = "supervised"
    distributed: ClassVar[bool] = True
    """Splits its meta-batches over torchrun's processes (:mod:`metarl.distributed`)."""

    def __post_init__(self) -> None:
        check_positive("epsilon", self.epsilon, most=1.0)

    def rule(self, params: Params, cfg: MetaConfig) -> UpdateRule:
        return SGD(cfg.inner_lr)

    def optimizer(self, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
        return torch.optim.SGD(parameters, lr=self.epsilon)


def train(algo: Reptile, family: TaskFamily, cfg: MetaConfig, run: Run,
          resume: dict | None = None) -> None:
    # Initialize theta, the vector of initial parameter values
    model, learner = build(family, algo, cfg, resume)
    loss = loss_fn(family, model)
    mine = distributed.my_tasks(cfg.meta_batch)  # under torchrun, this process's share

    for iteration in range(learner.iteration, cfg.iterations):
        # Sample a batch of tasks tau_1, ..., tau_n
        tasks = family.sample(cfg.meta_batch, learner.generator)[mine].to(cfg.device)
        # For each task, phi_i = U^k_tau_i(theta): k SGD steps on its data, batched over tasks
        phi = adapt_tasks(loss, learner.params, tasks.support, rule=learner.rule,
                          steps=cfg.inner_steps, first_order=True)
        # theta <- theta + epsilon * mean_i (phi_i - theta), as SGD on the pseudo-gradient
        #     (its mean all-reduced over torchrun's processes)
        epsilon = algo.epsilon * (1 - iteration / cfg.iterations)
        for group in learner.optimizer.param_groups:
            group["lr"] = epsilon
        for name, direction in reptile_direction(learner.params, phi).items():
            learner.params[name].grad = direction
        distributed.reduce_grads(learner, mine, cfg.meta_batch)
        learner.optimizer.step()

        learner.iteration = iteration + 1
        run.end_iteration(
            learner.iteration,
            lambda: {"loss/query": distributed.task_mean(
                task_losses(loss, phi, tasks.query).mean(), mine, cfg.meta_batch).item(),
                     "reptile/epsilon": epsilon},
            learner.state_dict)
