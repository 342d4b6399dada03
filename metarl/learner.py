"""The state of a supervised meta-learner: meta-parameters, inner rates and outer optimizer.

This is exactly what a checkpoint holds, so resuming restores every bit of it (together with
the task sampler's generator) and continues as if never interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from metarl.adapt import InnerLR
from metarl.config import MetaConfig, torch_device
from metarl.errors import CheckpointError
from metarl.params import Params, forward_fn, params_of
from metarl.tasks import TaskFamily


@dataclass
class Learner:
    params: Params
    """Meta-parameters theta (leaf tensors)."""
    inner_lr: InnerLR
    """Scalar inner step size, or Meta-SGD's learned per-parameter rates (leaf tensors)."""
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    """Draws the meta-training tasks; its state is checkpointed so a resumed run is identical."""
    iteration: int = 0

    @classmethod
    def create(cls, model: nn.Module, cfg: MetaConfig) -> Learner:
        params = params_of(model)
        inner_lr: InnerLR = cfg.inner_lr
        trainable = list(params.values())
        if cfg.method == "metasgd":
            inner_lr = {k: torch.full_like(p, cfg.inner_lr).requires_grad_() for k, p in
                        params.items()}
            trainable += list(inner_lr.values())
        if cfg.method == "reptile":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(trainable, lr=cfg.reptile_epsilon)
        else:
            optimizer = torch.optim.Adam(trainable, lr=cfg.outer_lr)
        return cls(params, inner_lr, optimizer, torch.Generator().manual_seed(cfg.seed))

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "inner_lr": ({k: v.detach().cpu() for k, v in self.inner_lr.items()}
                         if isinstance(self.inner_lr, dict) else float(self.inner_lr)),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["params"]
        if set(saved) != set(self.params) or any(saved[k].shape != p.shape
                                                 for k, p in self.params.items()):
            raise CheckpointError("checkpoint parameters do not match this model; was it trained "
                                  "with another task family or network size?")
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(saved[k])
            if isinstance(self.inner_lr, dict):
                for k, a in self.inner_lr.items():
                    a.copy_(state["inner_lr"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.iteration = int(state["iteration"])


def supervised_loss(model: nn.Module, loss: Callable[[Tensor, Tensor], Tensor]
                    ) -> Callable[[Params, tuple[Tensor, Tensor]], Tensor]:
    """``loss_fn(params, (x, y))`` of ``model`` for :func:`metarl.adapt.adapt`."""
    f = forward_fn(model)
    return lambda params, data: loss(f(params, data[0]), data[1])


def build(family: TaskFamily, cfg: MetaConfig, resume: dict[str, Any] | None = None
          ) -> tuple[nn.Module, Learner]:
    """A freshly initialised model and learner (seeded), or the state of ``resume``."""
    torch.manual_seed(cfg.seed)
    model = family.model().to(torch_device(cfg.device))
    learner = Learner.create(model, cfg)
    if resume is not None:
        learner.load_state_dict(resume)
    return model, learner
