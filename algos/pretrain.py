"""The pretraining baseline of Finn et al. (2017), Section 5.1.

One network trained on all tasks jointly (the support and query examples of every task in a
meta-batch pooled into one regression/classification batch), then fine-tuned at test time
with the same gradient steps as the meta-learners.
"""

from __future__ import annotations

import torch

from metarl.config import MetaConfig
from metarl.learner import build, supervised_loss
from metarl.logger import Run
from metarl.tasks import TaskFamily


def train(family: TaskFamily, cfg: MetaConfig, run: Run, resume: dict | None = None) -> None:
    assert cfg.method == "pretrain", cfg.method
    model, learner = build(family, cfg, resume)
    loss_fn = supervised_loss(model, family.loss)

    for iteration in range(learner.iteration, cfg.iterations):
        tasks = family.sample(cfg.meta_batch, learner.generator).to(cfg.device)
        x = torch.cat([tasks.support_x, tasks.query_x], 1).flatten(0, 1)
        y = torch.cat([tasks.support_y, tasks.query_y], 1).flatten(0, 1)
        loss = loss_fn(learner.params, (x, y))
        learner.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        learner.optimizer.step()

        learner.iteration = iteration + 1
        run.end_iteration(learner.iteration, lambda: {"loss/joint": loss.item()},
                          learner.state_dict)
