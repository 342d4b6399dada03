"""The meta-learner LSTM: Ravi & Larochelle (2017), "Optimization as a Model for Few-Shot
Learning", Algorithm 1.

The learner (Conv4, batch norm on the current batch's statistics, as the paper uses during
meta-training) is trained on each task's support set by T steps of an LSTM whose cell state is
the learner's parameters (:class:`metarl.rules.MetaLSTM`); the LSTM's weights and the cell
state's start theta_0 are meta-trained on the query loss of theta_T. Losses and gradients enter
the LSTM as constants, and the meta-gradient's norm is clipped, as in the paper.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from metarl.adapt import adapt_tasks, task_losses
from metarl.algos.supervised import build
from metarl.config import MetaConfig, check, check_interval, check_positive
from metarl.errors import ConfigError
from metarl.logger import Run
from metarl.params import Params
from metarl.rules import MetaLSTM as MetaLSTMRule
from metarl.tasks import TaskFamily, loss_fn


@dataclass(frozen=True)
class MetaLSTM:
    """Meta-learner LSTM (Ravi & Larochelle 2017): a coordinate-wise LSTM, shared by all
    parameters, is the inner update rule; its weights and the learner's initial parameters are
    meta-learned. --inner-steps sets T, the LSTM steps per task."""

    outer_lr: float = 1e-3
    """Adam step size of the meta-learner, in (0, 1]."""
    hidden: int = 20
    """Units of the LSTM layer under the update cell (the paper: 20)."""
    forget_bias: tuple[float, float] = (4.0, 6.0)
    """Forget-gate bias drawn uniformly in this range (high: sigmoid near 1 keeps theta)."""
    input_bias: tuple[float, float] = (-5.0, -4.0)
    """Input-gate bias drawn uniformly in this range (low: the first steps are small, sigmoid
    of -4.5 is a rate of 0.011)."""
    clip: float = 0.25
    """Largest norm of the meta-gradient (the paper's clipping)."""

    name: ClassVar[str] = "meta-lstm"
    kind: ClassVar[str] = "supervised"

    def __post_init__(self) -> None:
        check_positive("outer_lr", self.outer_lr, most=1.0)
        check(isinstance(self.hidden, int) and not isinstance(self.hidden, bool)
              and self.hidden > 0, f"hidden must be a positive integer, got {self.hidden!r}")
        check_interval("forget_bias", self.forget_bias)
        check_interval("input_bias", self.input_bias)
        check_positive("clip", self.clip)

    def check(self, family: TaskFamily) -> None:
        buffers = [name for name, _ in family.model().named_buffers()]
        if buffers:
            raise ConfigError(
                f"meta-lstm adapts every parameter of the learner through its cell state, but "
                f"the {family.tag} model keeps running statistics ({', '.join(buffers[:3])}); "
                "use a model whose batch norm takes the current batch's statistics, as Conv4 "
                "(omniglot-* presets) does")

    def rule(self, params: Params, cfg: MetaConfig) -> MetaLSTMRule:
        like = next(iter(params.values()))
        return MetaLSTMRule.create(self.hidden, self.forget_bias, self.input_bias,
                                   dtype=like.dtype, device=like.device)

    def optimizer(self, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=self.outer_lr)


def train(algo: MetaLSTM, family: TaskFamily, cfg: MetaConfig, run: Run,
          resume: dict | None = None) -> None:
    # Theta_0: the LSTM's weights; c_0: the learner's initial parameters
    model, learner = build(family, algo, cfg, resume)
    loss = loss_fn(family, model)
    meta_parameters = [*learner.params.values(), *learner.rule.parameters().values()]

    for iteration in range(learner.iteration, cfg.iterations):
        # D_train, D_test from the meta-training set (a meta-batch of tasks)
        tasks = family.sample(cfg.meta_batch, learner.generator).to(cfg.device)
        # theta_0 <- c_0; for t = 1..T: loss and gradient on D_train, c_t <- the LSTM's cell
        # (inputs as constants); theta_t <- c_t. All tasks in one vmapped call.
        adapted = adapt_tasks(loss, learner.params, tasks.support, rule=learner.rule,
                              steps=cfg.inner_steps, first_order=True)
        # L_test of theta_T on D_test
        test_loss = task_losses(loss, adapted, tasks.query).mean()
        # Update Theta with the gradient of L_test, its norm clipped (Adam)
        learner.optimizer.zero_grad(set_to_none=True)
        test_loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(meta_parameters, algo.clip)
        learner.optimizer.step()

        learner.iteration = iteration + 1
        run.end_iteration(
            learner.iteration,
            lambda: {"loss/query": test_loss.item(), "meta-lstm/grad_norm": grad_norm.item(),
                     "meta-lstm/input_gate": torch.sigmoid(learner.rule.weights["input.bias"])
                     .item()},
            learner.state_dict)
