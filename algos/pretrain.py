"""The pretraining baseline of Finn et al. (2017), Section 5.1.

One network trained on all tasks jointly, then fine-tuned on each test task with the same
gradient steps as the meta-learners. What "jointly" means depends on the tasks:

- regression (sinusoids): the support and query examples of every task of a meta-batch pooled
  into one batch, as the paper;
- N-way classification (Omniglot), where a task's labels 0..N-1 are a fresh assignment of its
  classes, so pooled tasks teach nothing: one classifier over every meta-training class (each
  character in each rotation, as Finn et al.'s code augments), then for each test task a new
  zero N-way head fine-tuned on its support set, the body frozen or (``finetune_body``) not, as
  the "Baseline" of Chen et al. (2019), "A Closer Look at Few-shot Classification".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from metarl.algos.supervised import AdamOuterLoop, AtTest, build
from metarl.config import MetaConfig
from metarl.learner import Learner
from metarl.logger import Run
from metarl.params import Params
from metarl.rules import SGD, SGDOn, UpdateRule
from metarl.tasks import TaskFamily, loss_fn


@dataclass(frozen=True)
class Pretrain(AdamOuterLoop):
    """The pretraining baseline (Finn et al. 2017): one network on all tasks jointly (on
    classification: one classifier over all meta-training classes, then a new N-way head per
    test task), fine-tuned with SGD at inner_lr like the meta-learners."""

    finetune_body: bool = False
    """Classification: fine-tune the whole network on a test task's support set, not only the
    new head."""

    name: ClassVar[str] = "pretrain"
    kind: ClassVar[str] = "supervised"

    def model(self, family: TaskFamily) -> nn.Module:
        return family.classifier() if _over_classes(family) else family.model()

    def rule(self, params: Params, cfg: MetaConfig) -> UpdateRule:
        head = frozenset(k for k in params if k.startswith("head."))
        if head and not self.finetune_body:
            return SGDOn(cfg.inner_lr, head)
        return SGD(cfg.inner_lr)

    def at_test(self, family: TaskFamily, model: nn.Module, learner: Learner) -> AtTest:
        params = family.new_head(learner.params) if _over_classes(family) else learner.params
        return AtTest(params, learner.rule)


def _over_classes(family: TaskFamily) -> bool:
    return all(hasattr(family, a) for a in ("sample_classes", "classifier", "new_head"))


def train(algo: Pretrain, family: TaskFamily, cfg: MetaConfig, run: Run,
          resume: dict | None = None) -> None:
    model, learner = build(family, algo, cfg, resume)
    loss = loss_fn(family, model)
    over_classes = _over_classes(family)
    if over_classes:  # as many images per step as a meta-batch of tasks holds
        size = cfg.meta_batch * family.ways * (family.shots + family.queries)

    for iteration in range(learner.iteration, cfg.iterations):
        if over_classes:
            x, y = family.sample_classes(size, learner.generator)
            batch = (x.to(cfg.device), y.to(cfg.device))
        else:
            batch = family.sample(cfg.meta_batch, learner.generator).to(cfg.device).pooled()
        joint_loss = loss(learner.params, batch)
        learner.step(joint_loss)

        learner.iteration = iteration + 1
        run.end_iteration(learner.iteration, lambda: {"loss/joint": joint_loss.item()},
                          learner.state_dict)
