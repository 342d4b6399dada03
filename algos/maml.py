"""MAML for few-shot supervised learning, with its first-order and Meta-SGD variants.

Finn, Abbeel & Levine (2017), "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", Algorithm 2; first-order MAML (FOMAML) is their Section 5.2 approximation;
Meta-SGD (Li, Zhou, Chen & Li, 2017) also learns the per-parameter inner rates alpha.
"""

from __future__ import annotations

from metarl.adapt import adapt_tasks, task_losses
from metarl.config import MetaConfig
from metarl.learner import build, supervised_loss
from metarl.logger import Run
from metarl.tasks import TaskFamily


def train(family: TaskFamily, cfg: MetaConfig, run: Run, resume: dict | None = None) -> None:
    assert cfg.method in ("maml", "fomaml", "metasgd"), cfg.method
    # 1: randomly initialise theta (and, for Meta-SGD, alpha)
    model, learner = build(family, cfg, resume)
    loss_fn = supervised_loss(model, family.loss)

    # 2: while not done do
    for iteration in range(learner.iteration, cfg.iterations):
        # 3: sample a batch of tasks T_i ~ p(T), each with K support and Q query examples
        tasks = family.sample(cfg.meta_batch, learner.generator).to(cfg.device)
        # 4-7: adapted params theta'_i = theta - alpha * grad L_Ti(f_theta) on the support set,
        #      all tasks in one vmapped call
        adapted = adapt_tasks(loss_fn, learner.params, tasks.support, inner_lr=learner.inner_lr,
                              steps=cfg.inner_steps, first_order=cfg.method == "fomaml")
        # 8: the outer loss of each adapted model on its task's query set
        query_losses = task_losses(loss_fn, adapted, tasks.query)
        outer_loss = query_losses.mean()
        # 10: theta <- theta - beta * grad_theta sum_i L_Ti(f_theta'_i)  (Adam)
        learner.optimizer.zero_grad(set_to_none=True)
        outer_loss.backward()
        learner.optimizer.step()

        learner.iteration = iteration + 1
        run.end_iteration(learner.iteration, lambda: {"loss/query": outer_loss.item()},
                          learner.state_dict)
