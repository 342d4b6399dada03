"""Matching Networks: Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra (2016), "Matching
Networks for One Shot Learning", Section 2.

The label of a query is an attention-weighted sum of the support labels,
``P(y | x, S) = sum_i a(x, x_i) y_i``, with ``a`` a softmax over the cosine similarities of the
embedded query and support examples (the same Conv4 embedding for both, f = g; the
full-context embeddings of Section 2.1.2 are not implemented). Trained end to end on N-way
episodes by the log-likelihood of the query labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor
from torch.nn import functional as F

from metarl.algos.supervised import MetricLearner, build, training_family
from metarl.config import MetaConfig, check_positive
from metarl.logger import Run
from metarl.tasks import TaskFamily


def cosine_attention(query_z: Tensor, support_z: Tensor, scale: float = 1.0) -> Tensor:
    """``a(x, x_i) = softmax_i(scale * cos(f(x), g(x_i)))``: ``query_z [Q, D]``,
    ``support_z [S, D]`` -> ``[Q, S]``, each row summing to 1."""
    similarity = F.normalize(query_z, dim=-1, eps=1e-8) @ F.normalize(support_z, dim=-1,
                                                                       eps=1e-8).T
    return (scale * similarity).softmax(-1)


def matching_log_probs(attention: Tensor, support_y: Tensor, ways: int) -> Tensor:
    """``log sum_i a(x, x_i) y_i``: ``attention [Q, S]``, ``support_y [S]`` -> ``[Q, ways]``
    (log-probabilities, so a cross-entropy on them is the paper's log-likelihood)."""
    return (attention @ F.one_hot(support_y, ways).to(attention.dtype)).log()


@dataclass(frozen=True)
class MatchingNets(MetricLearner):
    """Matching Networks (Vinyals et al. 2016), cosine attention over the embedded support set,
    no full-context embeddings; no gradient steps at test time."""

    scale: float = 1.0
    """Multiplies the cosine similarities before the softmax (1: the paper's attention)."""

    name: ClassVar[str] = "matchingnets"
    kind: ClassVar[str] = "supervised"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("scale", self.scale)

    def logits(self, support_z: Tensor, support_y: Tensor, query_z: Tensor, ways: int
               ) -> Tensor:
        return matching_log_probs(cosine_attention(query_z, support_z, self.scale), support_y,
                                  ways)


def train(algo: MatchingNets, family: TaskFamily, cfg: MetaConfig, run: Run,
          resume: dict | None = None) -> None:
    model, learner = build(family, algo, cfg, resume)
    episodes = training_family(family, algo, algo.train_ways, algo.train_query)
    losses = algo.episode_losses(episodes, model)

    for iteration in range(learner.iteration, cfg.iterations):
        # Sample a label set L, then a support set S and a batch B of query examples from L
        tasks = episodes.sample(cfg.meta_batch, learner.generator).to(cfg.device)
        # Minimise the error predicting B's labels from S: -log P(y | x, S)
        loss = losses(learner.params, tasks.support, tasks.query).mean()
        learner.step(loss)

        learner.iteration = iteration + 1
        run.end_iteration(learner.iteration, lambda: {"loss/query": loss.item()},
                          learner.state_dict)
