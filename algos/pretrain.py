"""The pretraining baseline of Finn et al. (2017), Section 5.1.

One network trained on all tasks jointly (the support and query examples of every task in a
meta-batch pooled into one regression/classification batch), then fine-tuned at test time
with the same gradient steps as the meta-learners.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metarl.algos.supervised import AdamOuterLoop, build
from metarl.config import MetaConfig
from metarl.logger import Run
from metarl.tasks import TaskFamily, loss_fn


@dataclass(frozen=True)
class Pretrain(AdamOuterLoop):
    """The pretraining baseline: one network on all tasks jointly (Finn et al. 2017); at test
    time it is fine-tuned with SGD at inner_lr like the meta-learners."""

    name: ClassVar[str] = "pretrain"
    kind: ClassVar[str] = "supervised"


def train(algo: Pretrain, family: TaskFamily, cfg: MetaConfig, run: Run,
          resume: dict | None = None) -> None:
    model, learner = build(family, algo, cfg, resume)
    loss = loss_fn(family, model)

    for iteration in range(learner.iteration, cfg.iterations):
        tasks = family.sample(cfg.meta_batch, learner.generator).to(cfg.device)
        joint_loss = loss(learner.params, tasks.pooled())
        learner.step(joint_loss)

        learner.iteration = iteration + 1
        run.end_iteration(learner.iteration, lambda: {"loss/joint": joint_loss.item()},
                          learner.state_dict)
