"""What every supervised meta-learner does around its outer step: the algorithm's config
contract, and the model and learner of a run (seeded, or restored from a checkpoint)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from metarl.config import MetaConfig, check_positive, torch_device
from metarl.learner import Learner
from metarl.params import Params, params_of
from metarl.rules import SGD, UpdateRule
from metarl.tasks import TaskFamily


class SupervisedAlgorithm(Protocol):
    """A supervised algorithm's config: a frozen dataclass of its own options."""

    name: ClassVar[str]
    """Its command-line name."""
    kind: ClassVar[str]
    """``"supervised"``."""

    def rule(self, params: Params, cfg: MetaConfig) -> UpdateRule:
        """The inner update rule it adapts with (in training and at test time)."""
        ...

    def optimizer(self, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
        """Its outer optimizer over theta and the rule's learnable tensors."""
        ...


@dataclass(frozen=True)
class AdamOuterLoop:
    """What most supervised algorithms share: the inner rule is SGD at ``inner_lr`` and the
    outer optimizer is Adam on theta and the rule's learnable tensors."""

    outer_lr: float = 1e-3
    """Adam step size of the outer loop."""

    def __post_init__(self) -> None:
        check_positive("outer_lr", self.outer_lr)

    def rule(self, params: Params, cfg: MetaConfig) -> UpdateRule:
        return SGD(cfg.inner_lr)

    def optimizer(self, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=self.outer_lr)


def build(family: TaskFamily, algo: SupervisedAlgorithm, cfg: MetaConfig,
          resume: dict[str, Any] | None = None) -> tuple[nn.Module, Learner]:
    """A freshly initialised model and learner (seeded), or the state of ``resume``."""
    torch.manual_seed(cfg.seed)
    model = family.model().to(torch_device(cfg.device))
    params = params_of(model)
    learner = Learner.create(params, algo.rule(params, cfg), algo.optimizer, cfg.seed)
    if resume is not None:
        learner.load_state_dict(resume)
    return model, learner
