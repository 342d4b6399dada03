"""What every supervised meta-learner does around its outer step: the algorithm's config
contract, the model and learner of a run (seeded, or restored from a checkpoint), and how a
trained run meets a test task."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from metarl.config import MetaConfig, check, check_positive, torch_device
from metarl.errors import ConfigError
from metarl.evaluation import Predict
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

    # Optional, read with defaults:
    #   model(family) -> nn.Module: the network it trains (default: family.model());
    #   test_time(family, model, learner) -> TestTime: how it meets a test task (default:
    #   fine-tune theta with its rule).


@dataclass(frozen=True)
class AdamOuterLoop:
    """What most supervised algorithms share: the inner rule is SGD at ``inner_lr`` and the
    outer optimizer is Adam on theta and the rule's learnable tensors."""

    outer_lr: float = 1e-3
    """Adam step size of the outer loop, in (0, 1]."""

    def __post_init__(self) -> None:
        check_positive("outer_lr", self.outer_lr, most=1.0)

    def rule(self, params: Params, cfg: MetaConfig) -> UpdateRule:
        return SGD(cfg.inner_lr)

    def optimizer(self, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=self.outer_lr)


def build(family: TaskFamily, algo: SupervisedAlgorithm, cfg: MetaConfig,
          resume: dict[str, Any] | None = None) -> tuple[nn.Module, Learner]:
    """A freshly initialised model and learner (seeded), or the state of ``resume``."""
    torch.manual_seed(cfg.seed)
    network = getattr(algo, "model", None)
    model = (family.model() if network is None else network(family)).to(torch_device(cfg.device))
    params = params_of(model)
    learner = Learner.create(params, algo.rule(params, cfg), algo.optimizer, cfg.seed)
    if resume is not None:
        learner.load_state_dict(resume)
    return model, learner


@dataclass(frozen=True)
class TestTime:
    """How a trained run meets each test task (:func:`metarl.evaluation.finetune_curve`)."""

    params: Params
    """Where every task's fine-tuning starts."""
    rule: UpdateRule
    """The fine-tuning steps."""
    predict: Predict | None = None
    """A metric method's query predictions from the support set (no fine-tuning)."""


def test_time(algo: SupervisedAlgorithm, family: TaskFamily, model: nn.Module,
              learner: Learner) -> TestTime:
    """The algorithm's own ``test_time``, or fine-tuning theta with the rule it trained with."""
    own = getattr(algo, "test_time", None)
    return TestTime(learner.params, learner.rule) if own is None else own(family, model, learner)


def classification(family: TaskFamily, algo: SupervisedAlgorithm, *needs: str) -> None:
    """Refuse a family that lacks what a classification method ``needs`` (e.g. ``ways``)."""
    missing = [n for n in needs if not hasattr(family, n)]
    if missing:
        raise ConfigError(f"{algo.name} classifies N-way tasks; the {family.tag} task family is "
                          f"not classification (it has no {', '.join(missing)}); use an omniglot-* "
                          "preset")


def training_family(family: Any, ways: int | None, query: int | None) -> Any:
    """``family`` sampling training tasks with ``ways`` classes and ``query`` query examples per
    class (None: the family's own), e.g. Snell et al.'s 60-way episodes for a 5-way test."""
    if ways is None and query is None:
        return family
    classification(family, family, "episodes")
    config = family.config
    ways, query = ways or config.ways, query or config.queries
    train = len(family.splits["train"])
    check(ways <= train, f"--train-ways {ways} exceeds the {train} meta-training classes of "
                         f"{family.tag}; lower --train-ways")
    check(config.shots + query <= family.drawings,
          f"K + Q = {config.shots} + {query} exceeds the {family.drawings} examples of a class; "
          "lower --train-query")
    return family.episodes(ways, query)
