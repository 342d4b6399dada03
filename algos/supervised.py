"""What every supervised meta-learner does around its outer step: the algorithm's config
contract, the model and learner of a run (seeded, or restored from a checkpoint), and how a
trained run meets a test task."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from metarl import distributed
from metarl.config import MetaConfig, check, check_positive, torch_device
from metarl.errors import ConfigError
from metarl.evaluation import Predict
from metarl.learner import Learner
from metarl.params import Params, forward_fn, params_of
from metarl.rules import SGD, UpdateRule
from metarl.tasks import Forward, TaskFamily


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
    #   check(family): refuse a task family it cannot train on, in one line (called before
    #   the run folder exists, and by build);
    #   model(family) -> nn.Module: the network it trains (default: family.model());
    #   at_test(family, model, learner) -> AtTest: how it meets a test task (default:
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
    check_family(algo, family)
    torch.manual_seed(cfg.seed)
    network = getattr(algo, "model", None)
    model = (family.model() if network is None else network(family)).to(torch_device(cfg.device))
    params = params_of(model)
    learner = Learner.create(params, algo.rule(params, cfg), algo.optimizer, cfg.seed)
    if resume is not None:
        learner.load_state_dict(resume)
    distributed.check_replicas(learner)  # under torchrun: every process starts alike
    return model, learner


def check_family(algo: SupervisedAlgorithm, family: TaskFamily) -> None:
    """The algorithm's own ``check(family)``, if it has one: bad input as one clear line."""
    own = getattr(algo, "check", None)
    if own is not None:
        own(family)


@dataclass(frozen=True)
class AtTest:
    """How a trained run meets each test task (:func:`metarl.evaluation.finetune_curve`)."""

    params: Params
    """Where every task's fine-tuning starts."""
    rule: UpdateRule
    """The fine-tuning steps."""
    predict: Predict | None = None
    """A metric method's query predictions from the support set (no fine-tuning)."""


def at_test(algo: SupervisedAlgorithm, family: TaskFamily, model: nn.Module,
            learner: Learner) -> AtTest:
    """The algorithm's own ``at_test``, or fine-tuning theta with the rule it trained with."""
    own = getattr(algo, "at_test", None)
    return AtTest(learner.params, learner.rule) if own is None else own(family, model, learner)


def classification(family: TaskFamily, algo: SupervisedAlgorithm, *needs: str) -> None:
    """Refuse a family that lacks what a classification method ``needs`` (e.g. ``ways``)."""
    missing = [n for n in needs if not hasattr(family, n)]
    if missing:
        raise ConfigError(f"{algo.name} classifies N-way tasks; the {family.tag} task family is "
                          f"not classification (it has no {', '.join(missing)}); use an omniglot-* "
                          "preset")


def training_family(family: Any, algo: SupervisedAlgorithm, ways: int | None,
                    query: int | None) -> Any:
    """``family`` sampling training tasks with ``ways`` classes and ``query`` query examples per
    class (None: the family's own), e.g. Snell et al.'s 60-way episodes for a 5-way test."""
    if ways is None and query is None:
        return family
    classification(family, algo, "episodes")
    ways, query = ways or family.ways, query or family.queries
    classes, examples = family.train_characters, family.drawings
    check(ways <= classes, f"--train-ways {ways} exceeds the {classes} meta-training classes of "
                           f"{family.tag}; lower --train-ways")
    check(family.shots + query <= examples,
          f"K + Q = {family.shots} + {query} exceeds the {examples} examples of a class; lower "
          "--train-query")
    return family.episodes(ways, query)


@dataclass(frozen=True)
class MetricLearner(AdamOuterLoop):
    """What metric meta-learners share: an embedding network (the family's model without its
    head) trained end to end with Adam on N-way episodes, and query predictions made from a
    task's embedded support set with no gradient steps. ``logits`` is the method."""

    train_ways: int | None = None
    """Classes per training episode (default: the task's ways; Snell et al. train Omniglot
    with 60)."""
    train_query: int | None = None
    """Query examples per class in training episodes (default: the task's)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for option in ("train_ways", "train_query"):
            value = getattr(self, option)
            check(value is None or isinstance(value, int) and not isinstance(value, bool)
                  and value > 0, f"{option} must be a positive integer, got {value!r}")

    def logits(self, support_z: Tensor, support_y: Tensor, query_z: Tensor, ways: int
               ) -> Tensor:
        """``support_z [S, D]``, ``support_y [S]`` (in ``0..ways-1``), ``query_z [Q, D]`` ->
        logits ``[Q, ways]``."""
        raise NotImplementedError

    def check(self, family: TaskFamily) -> None:
        classification(family, self, "ways", "embedding")
        training_family(family, self, self.train_ways, self.train_query)

    def model(self, family: TaskFamily) -> nn.Module:
        return family.embedding()

    def predict(self, embed: Forward, support: tuple[Tensor, Tensor], ways: int) -> Forward:
        """The task's classifier ``f(params, query_x [Q, ...]) -> [Q, ways]``: support and query
        images embedded in one pass, so batch norm sees one batch per task (as Snell et al.'s
        code embeds them)."""
        support_x, support_y = support

        def forward(params: Params, query_x: Tensor) -> Tensor:
            z = embed(params, torch.cat([support_x, query_x]))
            return self.logits(z[: len(support_x)], support_y, z[len(support_x):], ways)

        return forward

    def at_test(self, family: TaskFamily, model: nn.Module, learner: Learner) -> AtTest:
        return AtTest(learner.params, learner.rule,
                      predict=lambda forward, support: self.predict(forward, support,
                                                                    family.ways))

    def episode_losses(self, family: TaskFamily, model: nn.Module) -> Any:
        """``losses(params, support, query) -> [T]``: the family's loss of each task's query
        set under its support-set classifier, vmapped over tasks."""
        embed = forward_fn(model)

        def loss(params: Params, support: Any, query: Any) -> Tensor:
            return family.loss(self.predict(embed, support, family.ways), params, query)

        return torch.func.vmap(loss, in_dims=(None, 0, 0))
