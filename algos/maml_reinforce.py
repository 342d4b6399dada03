"""MAML with a vanilla policy-gradient outer step (Finn, Abbeel & Levine, 2017, Algorithm 3).

The meta-gradient of the REINFORCE loss of each task's query episodes under its adapted policy
theta'_i flows through the inner step (second order unless ``first_order``); Adam applies it.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from metarl.config import RLConfig
from metarl.logger import Run
from metarl.params import params_of
from metarl.rl import (
    PolicyLosses,
    inner_adapt,
    iteration_seed,
    load_state,
    mean_over_tasks,
    sample_meta_batch,
    setup,
)


def train(cfg: RLConfig, run: Run, resume: dict | None = None) -> None:
    assert cfg.algo == "maml-reinforce", cfg.algo
    inner_steps = 0 if cfg.pretrain else cfg.inner_steps
    # 1: randomly initialise theta
    problem = setup(cfg.env_id, num_tasks=cfg.meta_batch, episodes=cfg.episodes,
                    horizon=cfg.horizon, hidden=cfg.hidden, nonlinearity=cfg.nonlinearity,
                    seed=cfg.seed, device=cfg.device)
    theta = params_of(problem.policy)
    losses = PolicyLosses(problem.policy)
    optimizer = torch.optim.Adam(theta.values(), lr=cfg.outer_lr)
    start = load_state(theta, resume, optimizer)

    # 2: while not done do
    for iteration in range(start, cfg.iterations):
        seed = iteration_seed(cfg.seed, iteration)
        # 3: sample a batch of tasks T_i ~ p(T)
        tasks = problem.env.sample_tasks(cfg.meta_batch, np.random.default_rng(seed))
        # 4-8: support episodes with f_theta, adapted theta'_i, query episodes with f_theta'_i
        batch = sample_meta_batch(
            problem.policy, losses, theta, tasks, problem.sim, episodes=cfg.episodes,
            horizon=problem.horizon, inner_steps=inner_steps, inner_lr=cfg.inner_lr,
            gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, seed=seed, device=cfg.device)

        # 10: theta <- theta - beta grad_theta sum_i L_Ti(f_theta'_i)   (Adam)
        t0 = time.perf_counter()
        adapted = inner_adapt(losses.reinforce, theta, batch.supports, len(tasks),
                              inner_lr=cfg.inner_lr, first_order=cfg.first_order)
        outer_loss = mean_over_tasks(losses.reinforce, adapted, batch.query)
        optimizer.zero_grad(set_to_none=True)
        outer_loss.backward()
        grad_norm = torch.cat([p.grad.reshape(-1) for p in theta.values()]).norm()
        optimizer.step()
        outer_seconds = time.perf_counter() - t0

        run.end_iteration(iteration + 1, lambda: {
            "returns/before_adaptation": batch.returns[0].mean().item(),
            "returns/after_adaptation": batch.returns[-1].mean().item(),
            "loss/outer": outer_loss.item(),
            "reinforce/grad_norm": grad_norm.item(),
            "time/sampling_s": batch.sample_seconds,
            "time/adaptation_s": batch.adapt_seconds,
            "time/outer_step_s": outer_seconds,
            "time/env_steps_per_s": batch.env_steps / max(batch.sample_seconds, 1e-9),
        }, lambda: {"params": {k: v.detach().cpu() for k, v in theta.items()},
                    "optimizer": optimizer.state_dict(), "iteration": iteration + 1})
