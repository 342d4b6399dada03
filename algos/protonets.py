"""Prototypical Networks: Snell, Swersky & Zemel (2017), "Prototypical Networks for Few-shot
Learning", Algorithm 1.

Each class's prototype is the mean of its embedded support examples; a query is classified by a
softmax over negative squared Euclidean distances to the prototypes. The embedding (Conv4
without its head) is trained end to end on N-way episodes, optionally with more ways than the
test tasks (the paper: 60-way training for Omniglot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor
from torch.nn import functional as F

from metarl.algos.supervised import MetricLearner, build, training_family
from metarl.config import MetaConfig
from metarl.logger import Run
from metarl.tasks import TaskFamily


def prototypes(support_z: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """Class means ``c_k = mean_{y_i = k} z_i``: ``support_z [S, D]``, ``support_y [S]`` ->
    ``[ways, D]``."""
    onehot = F.one_hot(support_y, ways).to(support_z.dtype)  # [S, ways]
    return (onehot.T @ support_z) / onehot.sum(0)[:, None]


def proto_logits(query_z: Tensor, protos: Tensor) -> Tensor:
    """``-||z - c_k||^2``: ``query_z [Q, D]``, ``protos [N, D]`` -> logits ``[Q, N]``."""
    return -(query_z[:, None, :] - protos[None, :, :]).square().sum(-1)


@dataclass(frozen=True)
class ProtoNets(MetricLearner):
    """Prototypical Networks (Snell et al. 2017): query logits are negative squared distances
    to the class means of the embedded support set; no gradient steps at test time."""

    name: ClassVar[str] = "protonets"
    kind: ClassVar[str] = "supervised"

    def logits(self, support_z: Tensor, support_y: Tensor, query_z: Tensor, ways: int
               ) -> Tensor:
        return proto_logits(query_z, prototypes(support_z, support_y, ways))


def train(algo: ProtoNets, family: TaskFamily, cfg: MetaConfig, run: Run,
          resume: dict | None = None) -> None:
    model, learner = build(family, algo, cfg, resume)
    episodes = training_family(family, algo, algo.train_ways, algo.train_query)
    losses = algo.episode_losses(episodes, model)

    for iteration in range(learner.iteration, cfg.iterations):
        # Select N_C classes, then N_S support and N_Q query examples of each (a meta-batch of
        # such episodes, each its own task)
        tasks = episodes.sample(cfg.meta_batch, learner.generator).to(cfg.device)
        # Prototypes from the support set; J = cross-entropy of softmax(-d(f(x), c_k)) on the
        # query set
        loss = losses(learner.params, tasks.support, tasks.query).mean()
        # Update the embedding's parameters by a gradient step on J (Adam)
        learner.step(loss)

        learner.iteration = iteration + 1
        run.end_iteration(learner.iteration, lambda: {"loss/query": loss.item()},
                          learner.state_dict)
