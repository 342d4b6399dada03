"""MAML with a vanilla policy-gradient outer step (Finn, Abbeel & Levine, 2017, Algorithm 3).

The meta-gradient of the REINFORCE loss of each task's query trajectories under its adapted
policy theta'_i flows through the inner step (second order unless ``first_order``); Adam
applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from metarl.algos.meta_rl import Problem, checkpoint_state, iteration_scalars, load_state
from metarl.config import RLConfig, check_positive
from metarl.logger import Run
from metarl.params import params_of
from metarl.policy_gradient import adapt_chain, mean_over_tasks


@dataclass(frozen=True)
class MAMLReinforce:
    """MAML-REINFORCE (Finn et al. 2017, Algorithm 3): a policy-gradient outer step with Adam."""

    outer_lr: float = 1e-3
    """Adam step size of the outer step, in (0, 1]."""
    first_order: bool = False
    """Treat the inner gradient as a constant in the outer step (first-order MAML)."""

    name: ClassVar[str] = "maml-reinforce"
    kind: ClassVar[str] = "rl"

    def __post_init__(self) -> None:
        check_positive("outer_lr", self.outer_lr, most=1.0)


def train(algo: MAMLReinforce, cfg: RLConfig, run: Run, resume: dict | None = None) -> None:
    # 1: randomly initialise theta
    problem = Problem.build(cfg)
    theta = params_of(problem.policy)
    optimizer = torch.optim.Adam(theta.values(), lr=algo.outer_lr)
    start = load_state(theta, resume, optimizer)
    rules = problem.rules()

    # 2: while not done do
    for iteration in range(start, cfg.iterations):
        seed = problem.seed(iteration)
        # 3: sample a batch of tasks T_i ~ p(T)
        tasks = problem.sample_tasks(cfg.meta_batch, seed)
        # 4-7, for all T_i in lockstep: sample K trajectories D_i with f_theta, then the adapted
        #      params theta'_i = theta - alpha grad_theta L_Ti(f_theta) on them
        supports, adapted = problem.adapt(theta, tasks, seed, rules)
        # 8: sample trajectories D'_i with f_theta'_i in T_i
        query = problem.rollouts(adapted, tasks, seed + len(rules))
        # 10: theta <- theta - beta grad_theta sum_i L_Ti(f_theta'_i) (Adam), through step 7
        with problem.outer_step() as outer:
            adapted, _ = adapt_chain(problem.losses.reinforce, theta, [s.batch for s in supports],
                                     rules, len(tasks), first_order=algo.first_order)
            outer_loss = mean_over_tasks(problem.losses.reinforce, adapted, query.batch)
            optimizer.zero_grad(set_to_none=True)
            outer_loss.backward()
            grad_norm = torch.cat([p.grad.reshape(-1) for p in theta.values()]).norm()
            optimizer.step()

        run.end_iteration(iteration + 1,
                          lambda: {**iteration_scalars(supports, query, outer),
                                   "loss/outer": outer_loss.item(),
                                   "reinforce/grad_norm": grad_norm.item()},
                          lambda: checkpoint_state(theta, iteration + 1, optimizer),
                          videos=lambda: problem.videos(theta, rules))
