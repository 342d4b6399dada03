"""The state of a supervised meta-learner: meta-parameters, inner update rule, outer optimizer.

This is exactly what a checkpoint holds, so resuming restores every bit of it (together with
the task sampler's generator) and continues as if never interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metarl.errors import CheckpointError
from metarl.params import Params
from metarl.rules import UpdateRule


@dataclass
class Learner:
    params: Params
    """Meta-parameters theta (leaf tensors)."""
    rule: UpdateRule
    """The inner update rule; its learnable tensors (Meta-SGD's rates) are trained with theta."""
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    """Draws the meta-training tasks; its state is checkpointed so a resumed run is identical."""
    iteration: int = 0

    @classmethod
    def create(cls, params: Params, rule: UpdateRule,
               optimizer: Callable[[Iterable[Tensor]], torch.optim.Optimizer], seed: int
               ) -> Learner:
        """``optimizer`` is built on theta and the rule's learnable tensors, in that order."""
        trainable = [*params.values(), *rule.parameters().values()]
        return cls(params, rule, optimizer(trainable), torch.Generator().manual_seed(seed))

    def step(self, outer_loss: Tensor) -> None:
        """One step of the outer optimizer down the gradient of ``outer_loss``."""
        self.optimizer.zero_grad(set_to_none=True)
        outer_loss.backward()
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "rule": {k: v.detach().cpu() for k, v in self.rule.parameters().items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rule = self.rule.parameters()
        for name, mine, saved in (("parameters", self.params, state["params"]),
                                  ("inner-rule tensors", rule, state["rule"])):
            if set(saved) != set(mine) or any(saved[k].shape != v.shape for k, v in mine.items()):
                raise CheckpointError(f"the checkpoint's {name} do not match this model; was it "
                                      "trained with another task family, network size or "
                                      "algorithm?")
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(state["params"][k])
            for k, a in rule.items():
                a.copy_(state["rule"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.iteration = int(state["iteration"])
