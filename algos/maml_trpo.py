"""MAML-TRPO: model-agnostic meta-learning for reinforcement learning with a trust-region
outer step (Finn, Abbeel & Levine, 2017, Algorithm 3 with TRPO, Section 5.3).

The meta-objective is the TRPO surrogate of each task's query episodes under its adapted policy
theta'_i = theta - alpha grad L_Ti(theta); its gradient and the Hessian of the mean KL both flow
through the inner step (second order unless ``first_order``).
"""

from __future__ import annotations

import math
import time

import torch
from torch.func import vmap

from metarl.config import RLConfig
from metarl.logger import Run
from metarl.params import flatten, params_of
from metarl.rl import (
    MetaBatch,
    PolicyBatch,
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
from metarl.trpo import (
    conjugate_gradient,
    hessian_vector_product,
    line_search,
    scale_to_trust_region,
)


def train(cfg: RLConfig, run: Run, resume: dict | None = None) -> None:
    assert cfg.algo == "maml-trpo", cfg.algo
    # 1: randomly initialise theta
    problem = setup_for(cfg)
    theta = params_of(problem.policy)
    losses = PolicyLosses(problem.policy)
    start = load_state(theta, resume)

    # 2: while not done do
    for iteration in range(start, cfg.iterations):
        # 3-8: sample tasks T_i, support episodes with f_theta, adapt theta'_i, sample query
        #      episodes with f_theta'_i (all tasks in lockstep, adapted params batched)
        batch = sample_iteration(cfg, problem, losses, theta, iteration)
        # 10: theta <- TRPO step on sum_i L_Ti(f_theta'_i), differentiating through step 7
        t0 = time.perf_counter()
        with torch_threads(cfg.outer_torch_threads):
            stats = trpo_step(cfg, losses, theta, batch)
        outer_seconds = time.perf_counter() - t0

        run.end_iteration(iteration + 1,
                          lambda: {**iteration_scalars(batch), **stats,
                                   "time/outer_step_s": outer_seconds},
                          lambda: checkpoint_state(theta, iteration + 1))


def trpo_step(cfg: RLConfig, losses: PolicyLosses, theta: dict, batch: MetaBatch
              ) -> dict[str, float]:
    """One trust-region step of theta in place (Schulman et al. 2015, Appendix C); returns the
    logged scalars. Every quantity is a function of theta through the inner adaptation."""
    leaves = list(theta.values())

    def adapt(supports: list[PolicyBatch]) -> dict:
        return inner_adapt(losses.reinforce, theta, supports, len(batch.tasks),
                           inner_lr=cfg.inner_lr, first_order=cfg.first_order)

    # The surrogate's gradient g, on all query episodes.
    adapted = adapt(batch.supports)
    reference = old_outputs(losses, adapted, batch.query)
    old_loss = mean_over_tasks(losses.surrogate, adapted, batch.query)
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(old_loss, leaves,
                                                              retain_graph=True)])
    # Curvature: the Hessian of the mean KL at theta_old (CG's matrix).
    kl = curvature_kl(cfg, losses, theta, batch, adapted, reference)
    Hvp = hessian_vector_product(kl, leaves, damping=cfg.cg_damping)
    # Step direction H^-1 g by conjugate gradient, scaled so 0.5 s^T H s = max_kl.
    direction, H_direction = conjugate_gradient(Hvp, g, iterations=cfg.cg_iters)
    step = scale_to_trust_region(direction, H_direction, cfg.max_kl)
    old = flatten(theta).detach().clone()

    def set_theta(vector: torch.Tensor) -> None:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(vector, leaves)

    def evaluate(fraction: float) -> tuple[float, float]:
        set_theta(old - fraction * step)
        with torch.no_grad():
            loss, kl = vmap(losses.surrogate_and_kl)(adapt(batch.supports), batch.query,
                                                     reference)
        return loss.mean().item(), kl.mean().item()

    # Backtracking line search on the exact surrogate and KL; keep theta_old if it fails.
    result = line_search(evaluate, old_loss.item(), cfg.max_kl, cfg.ls_ratio, cfg.ls_steps)
    if not result.accepted:
        set_theta(old)
    return {"loss/surrogate_before": old_loss.item(),
            "loss/surrogate_after": result.loss if result.accepted else old_loss.item(),
            "trpo/kl": result.kl if result.accepted else 0.0,
            "trpo/line_search_steps": float(result.steps),
            "trpo/accepted": float(result.accepted),
            "trpo/grad_norm": g.norm().item()}


def curvature_kl(cfg: RLConfig, losses: PolicyLosses, theta: dict, batch: MetaBatch,
                 adapted: dict, reference: tuple) -> torch.Tensor:
    """The mean KL whose Hessian at theta_old conjugate gradient uses: through the second-order
    adaptation (exact), or with the adapted params' dependence on theta taken as the identity
    (``cg_first_order``: the Fisher of the adapted policies); over ``cg_subsample`` of the
    tasks. ``adapted`` and ``reference`` are the full batch's adapted params and outputs."""
    if cfg.cg_subsample >= 1 and not cfg.cg_first_order:
        return mean_over_tasks(losses.kl, adapted, batch.query, reference)
    k = num_curvature_tasks(len(batch.tasks), cfg.cg_subsample)
    query = batch.query.select_tasks(slice(k))
    if cfg.cg_first_order:
        # theta'_i = theta + (theta'_i - theta) held constant: the same values, Jacobian I.
        params = {name: theta[name] + (adapted[name][:k] - theta[name]).detach()
                  for name in theta}
    else:
        # Re-adapt only these tasks, on all their support episodes: the same params as the
        # full batch's, with a graph k/N the size.
        supports = [s.select_tasks(slice(k)) for s in batch.supports]
        params = inner_adapt(losses.reinforce, theta, supports, k, inner_lr=cfg.inner_lr,
                             first_order=cfg.first_order)
    return mean_over_tasks(losses.kl, params, query, tuple(r[:k] for r in reference))


def num_curvature_tasks(num_tasks: int, fraction: float) -> int:
    """The curvature uses the first ``ceil(fraction * N)`` tasks: tasks are sampled i.i.d., so
    these are a uniform subset, and the mean of their exact KL Hessians is unbiased. (Fewer
    episodes per task instead would re-adapt on a smaller support set, whose noisier inner step
    inflated the curvature 2.7x on HalfCheetahDir at 0.2.)"""
    return max(1, math.ceil(fraction * num_tasks))


def old_outputs(losses: PolicyLosses, adapted: dict, query: PolicyBatch) -> tuple:
    """Each task's adapted policy outputs on its query states, as constants (the old policy)."""
    return tuple(o.detach() for o in vmap(losses.outputs)(adapted, query))
