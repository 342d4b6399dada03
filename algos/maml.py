"""MAML for few-shot supervised learning, with its first-order and Meta-SGD variants.

Finn, Abbeel & Levine (2017), "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", Algorithm 2; first-order MAML (FOMAML) is their Section 5.2 approximation;
Meta-SGD (Li, Zhou, Chen & Li, 2017) also learns the per-parameter inner rates alpha.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metarl import distributed
from metarl.adapt import adapt_tasks, task_losses
from metarl.algos.supervised import AdamOuterLoop, build
from metarl.config import MetaConfig
from metarl.logger import Run
from metarl.params import Params
from metarl.rules import MetaSGD as LearnedRates
from metarl.rules import UpdateRule
from metarl.tasks import TaskFamily, loss_fn


@dataclass(frozen=True)
class MAML(AdamOuterLoop):
    """MAML, second order (Finn et al. 2017, Algorithm 2)."""

    name: ClassVar[str] = "maml"
    kind: ClassVar[str] = "supervised"
    first_order: ClassVar[bool] = False
    distributed: ClassVar[bool] = True
    """Splits its meta-batches over torchrun's processes (:mod:`metarl.distributed`)."""


@dataclass(frozen=True)
class FOMAML(MAML):
    """First-order MAML: the inner gradient taken as a constant (Finn et al. 2017, Sec. 5.2)."""

    name: ClassVar[str] = "fomaml"
    first_order: ClassVar[bool] = True


@dataclass(frozen=True)
class MetaSGD(MAML):
    """Meta-SGD: per-parameter inner rates learned with theta, from inner_lr (Li et al. 2017)."""

    name: ClassVar[str] = "metasgd"

    def rule(self, params: Params, cfg: MetaConfig) -> UpdateRule:
        return LearnedRates.create(params, cfg.inner_lr)


def train(algo: MAML, family: TaskFamily, cfg: MetaConfig, run: Run,
          resume: dict | None = None) -> None:
    # 1: randomly initialise theta (and, for Meta-SGD, alpha)
    model, learner = build(family, algo, cfg, resume)
    loss = loss_fn(family, model)
    mine = distributed.my_tasks(cfg.meta_batch)  # under torchrun, this process's share

    # 2: while not done do
    for iteration in range(learner.iteration, cfg.iterations):
        # 3: sample a batch of tasks T_i ~ p(T), each with K support and Q query examples
        tasks = family.sample(cfg.meta_batch, learner.generator)[mine].to(cfg.device)
        # 4-7: adapted params theta'_i = theta - alpha * grad L_Ti(f_theta) on the support set,
        #      all tasks in one vmapped call
        adapted = adapt_tasks(loss, learner.params, tasks.support, rule=learner.rule,
                              steps=cfg.inner_steps, first_order=algo.first_order)
        # 8: the outer loss of each adapted model on its task's query set
        outer_loss = task_losses(loss, adapted, tasks.query).mean()
        # 10: theta <- theta - beta * grad_theta sum_i L_Ti(f_theta'_i)  (Adam), the gradient
        #     all-reduced over torchrun's processes
        outer_loss = distributed.step(learner, outer_loss, mine, cfg.meta_batch)

        learner.iteration = iteration + 1
        run.end_iteration(learner.iteration, lambda: {"loss/query": outer_loss.item()},
                          learner.state_dict)
