"""MAML with a vanilla policy-gradient outer step (Finn, Abbeel & Levine, 2017, Algorithm 3).

The meta-gradient of the REINFORCE loss of each task's query episodes under its adapted policy
theta'_i flows through the inner step (second order unless ``first_order``); Adam applies it.
"""

from __future__ import annotations

import time

import torch

from metarl.config import RLConfig
from metarl.logger import Run
from metarl.params import params_of
from metarl.rl import (
    PolicyLosses,
    checkpoint_state,
    inner_adapt,
    iteration_scalars,
    load_state,
    mean_over_tasks,
    sample_iteration,
    setup_for,
    torch_threads,
)


def train(cfg: RLConfig, run: Run, resume: dict | None = None) -> None:
    assert cfg.algo == "maml-reinforce", cfg.algo
    # 1: randomly initialise theta
    problem = setup_for(cfg)
    theta = params_of(problem.policy)
    losses = PolicyLosses(problem.policy)
    optimizer = torch.optim.Adam(theta.values(), lr=cfg.outer_lr)
    start = load_state(theta, resume, optimizer)

    # 2: while not done do
    for iteration in range(start, cfg.iterations):
        # 3-8: sample tasks T_i, support episodes with f_theta, adapt theta'_i, sample query
        #      episodes with f_theta'_i
        batch = sample_iteration(cfg, problem, losses, theta, iteration)
        # 10: theta <- theta - beta grad_theta sum_i L_Ti(f_theta'_i)   (Adam), through step 7
        t0 = time.perf_counter()
        with torch_threads(cfg.outer_torch_threads):
            adapted = inner_adapt(losses.reinforce, theta, batch.supports, len(batch.tasks),
                                  inner_lr=cfg.inner_lr, first_order=cfg.first_order)
            outer_loss = mean_over_tasks(losses.reinforce, adapted, batch.query)
            optimizer.zero_grad(set_to_none=True)
            outer_loss.backward()
            grad_norm = torch.cat([p.grad.reshape(-1) for p in theta.values()]).norm()
            optimizer.step()
        outer_seconds = time.perf_counter() - t0

        run.end_iteration(iteration + 1,
                          lambda: {**iteration_scalars(batch), "loss/outer": outer_loss.item(),
                                   "reinforce/grad_norm": grad_norm.item(),
                                   "time/outer_step_s": outer_seconds},
                          lambda: checkpoint_state(theta, iteration + 1, optimizer))
