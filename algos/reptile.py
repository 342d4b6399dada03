"""Reptile: Nichol, Achiam & Schulman (2018), "On First-Order Meta-Learning Algorithms", Alg. 2.

theta <- theta + epsilon * mean_i (phi_i - theta), where phi_i is theta after k SGD steps on
task i; epsilon is annealed linearly to 0 over training as in the paper.
"""

from __future__ import annotations

from metarl.adapt import adapt_tasks, reptile_direction, task_losses
from metarl.config import MetaConfig
from metarl.learner import build, supervised_loss
from metarl.logger import Run
from metarl.tasks import TaskFamily


def train(family: TaskFamily, cfg: MetaConfig, run: Run, resume: dict | None = None) -> None:
    assert cfg.method == "reptile", cfg.method
    # Initialize theta, the vector of initial parameter values
    model, learner = build(family, cfg, resume)
    loss_fn = supervised_loss(model, family.loss)

    for iteration in range(learner.iteration, cfg.iterations):
        # Sample a batch of tasks tau_1, ..., tau_n
        tasks = family.sample(cfg.meta_batch, learner.generator).to(cfg.device)
        # For each task, phi_i = U^k_tau_i(theta): k SGD steps on its data, batched over tasks
        phi = adapt_tasks(loss_fn, learner.params, tasks.support, inner_lr=learner.inner_lr,
                          steps=cfg.inner_steps, first_order=True)
        # theta <- theta + epsilon * mean_i (phi_i - theta), as SGD on the pseudo-gradient
        epsilon = cfg.reptile_epsilon * (1 - iteration / cfg.iterations)
        for group in learner.optimizer.param_groups:
            group["lr"] = epsilon
        for name, direction in reptile_direction(learner.params, phi).items():
            learner.params[name].grad = direction
        learner.optimizer.step()

        learner.iteration = iteration + 1
        run.end_iteration(
            learner.iteration,
            lambda: {"loss/query": task_losses(loss_fn, phi, tasks.query).mean().item(),
                     "reptile/epsilon": epsilon},
            learner.state_dict)
