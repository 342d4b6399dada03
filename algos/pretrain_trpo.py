"""The pretraining baseline of Finn et al. (2017), Section 5.3, for meta-RL: one policy trained
with TRPO on the trajectories of all tasks jointly, without an inner step, then evaluated with
the same inner steps as MAML. It is MAML-TRPO without steps 5-7.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar

import tyro

from metarl.algos.maml_trpo import TrustRegion, trpo_step
from metarl.algos.meta_rl import Problem, checkpoint_state, iteration_scalars, load_state
from metarl.config import RLConfig
from metarl.logger import Run
from metarl.params import expand, params_of


@dataclass(frozen=True)
class PretrainTRPO:
    """The pretraining baseline: one policy on all tasks jointly, TRPO (Finn et al. 2017)."""

    trpo: Annotated[TrustRegion, tyro.conf.OmitArgPrefixes] = field(default_factory=TrustRegion)

    name: ClassVar[str] = "pretrain"
    kind: ClassVar[str] = "rl"


def train(algo: PretrainTRPO, cfg: RLConfig, run: Run, resume: dict | None = None) -> None:
    problem = Problem.build(cfg)
    theta = params_of(problem.policy)
    start = load_state(theta, resume)

    for iteration in range(start, cfg.iterations):
        seed = problem.seed(iteration)
        tasks = problem.sample_tasks(cfg.meta_batch, seed)
        # The trajectories of every task with the one policy f_theta.
        batch = problem.rollouts(expand(theta, len(tasks)), tasks, seed)
        with problem.outer_step() as outer:
            stats = trpo_step(algo.trpo, problem.losses, theta, [], batch.batch, [])

        run.end_iteration(iteration + 1,
                          lambda: {**iteration_scalars([], batch, outer), **stats},
                          lambda: checkpoint_state(theta, iteration + 1),
                          # at test time it adapts as MAML does
                          videos=lambda: problem.videos(theta, problem.rules()))
