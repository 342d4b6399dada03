"""MAML-TRPO: model-agnostic meta-learning for reinforcement learning with a trust-region
outer step (Finn, Abbeel & Levine, 2017, Algorithm 3 with TRPO, Section 5.3).

The meta-objective is the TRPO surrogate of each task's query trajectories under its adapted
policy theta'_i = theta - alpha grad L_Ti(theta); its gradient and the Hessian of the mean KL
both flow through the inner step (second order unless ``first_order``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

import torch
import tyro
from torch.func import vmap

from metarl.algos.meta_rl import Problem, checkpoint_state, iteration_scalars, load_state
from metarl.config import RLConfig, check, check_positive, check_positive_ints
from metarl.logger import Run
from metarl.params import Params, flatten, params_of
from metarl.policy_gradient import PolicyBatch, PolicyLosses, adapt_chain, mean_over_tasks
from metarl.rules import UpdateRule
from metarl.trpo import (
    conjugate_gradient,
    gauss_newton_product,
    hessian_vector_product,
    line_search,
    scale_to_trust_region,
)


@dataclass(frozen=True)
class TrustRegion:
    """TRPO's step (Schulman et al. 2015): conjugate gradient on the KL's curvature, scaled to
    the KL bound, and a backtracking line search on the exact surrogate and KL."""

    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    cg_subsample: float = 1.0
    """Fraction of the meta-batch's tasks whose KL Hessian-vector products conjugate gradient
    uses (Schulman et al. 2015, Sec. 6); the gradient, the line search and its KL check always
    use every task. Each kept task keeps all its episodes and its exact curvature, so the mean
    is unbiased: on HalfCheetahDir at 0.2 it came within 0.95-1.09x of the full curvature along
    the step, where keeping every task but 20% of its episodes inflated it 2.7x. 1.0 is the
    public reference's exact setting."""
    cg_first_order: bool = False
    """Curvature for conjugate gradient without differentiating through the inner step: the
    Fisher of each task's adapted policy on its query episodes (``cg_subsample`` of the tasks), at
    about a plain TRPO step's cost; the line search still checks the exact KL through the
    adaptation. It misses the inner step's Jacobian, which grows as meta-training makes the
    policy sensitive to that step: on HalfCheetahDir the line search backtracked 1 step at
    first and ~11 of 15 by iteration 150, so the direction, not just the scale, degrades."""
    curvature: Literal["gauss-newton", "double-backward"] = "gauss-newton"
    """How conjugate gradient's KL curvature products are taken, both exact: the Gauss-Newton
    form J^T F J (at theta_old the KL's gradient is zero, so its Hessian is J^T F J with J the
    Jacobian of the adapted policy's outputs through the inner step and F the Fisher of the
    output distribution: one forward-mode and one reverse pass per product), or a backward pass
    through the KL gradient's graph, which holds the inner step's double backward (the public
    reference's way)."""
    compile_curvature: bool = True
    """``torch.compile`` the Gauss-Newton products (the first outer step pays the compilation,
    which is cached on disk; it needs a C++ compiler, and without one the products run
    uncompiled after a warning)."""
    ls_steps: int = 15
    ls_ratio: float = 0.8

    def __post_init__(self) -> None:
        check_positive_ints(self, ("cg_iters", "ls_steps"))
        check_positive("max_kl", self.max_kl)
        check(0 < self.ls_ratio < 1, f"ls_ratio must be in (0, 1), got {self.ls_ratio}")
        check(self.cg_damping == 0 or math.isfinite(self.cg_damping) and self.cg_damping > 0,
              f"cg_damping must be a finite number >= 0, got {self.cg_damping}")
        check(0 < self.cg_subsample <= 1,
              f"cg_subsample must be in (0, 1], got {self.cg_subsample}")


@dataclass(frozen=True)
class MAMLTRPO:
    """MAML-TRPO (Finn et al. 2017, Algorithm 3): a TRPO step through the adaptation."""

    first_order: bool = False
    """Treat the inner gradient as a constant in the outer step (first-order MAML)."""
    trpo: Annotated[TrustRegion, tyro.conf.OmitArgPrefixes] = field(default_factory=TrustRegion)

    name: ClassVar[str] = "maml-trpo"
    kind: ClassVar[str] = "rl"

    @property
    def label(self) -> str:
        """The name with its curvature setting (evaluation tables tell runs apart by it)."""
        return (self.name + ", cg-first-order" * self.trpo.cg_first_order
                + f", cg-subsample {self.trpo.cg_subsample:g}" * (self.trpo.cg_subsample < 1))


def train(algo: MAMLTRPO, cfg: RLConfig, run: Run, resume: dict | None = None) -> None:
    # 1: randomly initialise theta
    problem = Problem.build(cfg)
    theta = params_of(problem.policy)
    start = load_state(theta, resume)
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
        # 10: theta <- TRPO step on sum_i L_Ti(f_theta'_i) over the D'_i, through step 7
        with problem.outer_step() as outer:
            stats = trpo_step(algo.trpo, problem.losses, theta, [s.batch for s in supports],
                              query.batch, rules, first_order=algo.first_order)

        run.end_iteration(iteration + 1,
                          lambda: {**iteration_scalars(supports, query, outer), **stats},
                          lambda: checkpoint_state(theta, iteration + 1),
                          videos=lambda: problem.videos(theta, rules))


def trpo_step(trust: TrustRegion, losses: PolicyLosses, theta: Params,
              supports: Sequence[PolicyBatch], query: PolicyBatch, rules: Sequence[UpdateRule],
              first_order: bool = False) -> dict[str, float]:
    """One trust-region step of theta in place (Schulman et al. 2015, Appendix C); returns the
    logged scalars. Every quantity is a function of theta through the inner adaptation: one
    step of ``rules[k]`` on ``supports[k]``, then the losses on ``query``."""
    leaves = list(theta.values())

    def adapt(supports: Sequence[PolicyBatch], num_tasks: int, params: Params = theta) -> Params:
        return adapt_chain(losses.reinforce, params, supports, rules, num_tasks,
                           first_order=first_order)[0]

    # The surrogate's gradient g, on all query episodes.
    adapted = adapt(supports, query.num_tasks)
    reference = old_outputs(losses, adapted, query)
    old_loss = mean_over_tasks(losses.surrogate, adapted, query)
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(old_loss, leaves,
                                                              retain_graph=True)])
    # Curvature: the Hessian of the mean KL at theta_old (CG's matrix).
    Hvp = curvature_product(trust, losses, theta, supports, query, adapted, reference, adapt)
    # Step direction H^-1 g by conjugate gradient, scaled so 0.5 s^T H s = max_kl.
    direction, H_direction = conjugate_gradient(Hvp, g, iterations=trust.cg_iters)
    step = scale_to_trust_region(direction, H_direction, trust.max_kl)
    old = flatten(theta).detach().clone()

    def set_theta(vector: torch.Tensor) -> None:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(vector, leaves)

    def evaluate(fraction: float) -> tuple[float, float]:
        set_theta(old - fraction * step)
        with torch.no_grad():
            loss, kl = vmap(losses.surrogate_and_kl)(adapt(supports, query.num_tasks), query,
                                                     reference)
        return loss.mean().item(), kl.mean().item()

    # Backtracking line search on the exact surrogate and KL; keep theta_old if it fails.
    result = line_search(evaluate, old_loss.item(), trust.max_kl, trust.ls_ratio,
                         trust.ls_steps)
    if not result.accepted:
        set_theta(old)
    return {"loss/surrogate_before": old_loss.item(),
            "loss/surrogate_after": result.loss if result.accepted else old_loss.item(),
            "trpo/kl": result.kl if result.accepted else 0.0,
            "trpo/line_search_steps": float(result.steps),
            "trpo/accepted": float(result.accepted),
            "trpo/grad_norm": g.norm().item()}


def curvature_product(trust: TrustRegion, losses: PolicyLosses, theta: Params,
                      supports: Sequence[PolicyBatch], query: PolicyBatch, adapted: Params,
                      reference: tuple, adapt) -> Callable[[torch.Tensor], torch.Tensor]:
    """Conjugate gradient's matrix-vector product ``v [P] -> (H + damping I) v``, ``H`` the
    Hessian at theta_old of the mean KL of :func:`curvature_kl`, taken as ``trust.curvature``
    says; ``adapt(supports, num_tasks, params)`` adapts ``params`` with a graph."""
    if trust.curvature == "double-backward":
        kl = curvature_kl(trust, losses, theta, supports, query, adapted, reference, adapt)
        return hessian_vector_product(kl, list(theta.values()), damping=trust.cg_damping)
    params_of, query, reference = curvature_tasks(trust, theta, supports, query, adapted,
                                                  reference, adapt)

    def outputs(params: Params) -> tuple[torch.Tensor, ...]:
        return vmap(losses.outputs)(params_of(params), query)

    def divergence(outputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return vmap(losses.divergence)(outputs, query, reference).mean()

    return gauss_newton_product(outputs, theta, divergence, damping=trust.cg_damping,
                                compiled=trust.compile_curvature)


def curvature_kl(trust: TrustRegion, losses: PolicyLosses, theta: Params,
                 supports: Sequence[PolicyBatch], query: PolicyBatch, adapted: Params,
                 reference: tuple, adapt) -> torch.Tensor:
    """The mean KL whose Hessian at theta_old conjugate gradient uses, a function of theta
    through :func:`curvature_tasks`; ``adapted`` and ``reference`` are the full batch's adapted
    params and outputs, ``adapt(supports, num_tasks, params)`` adapts ``params`` with a graph."""
    if trust.cg_subsample >= 1 and not trust.cg_first_order:
        return mean_over_tasks(losses.kl, adapted, query, reference)  # the graph g used
    params_of, query, reference = curvature_tasks(trust, theta, supports, query, adapted,
                                                  reference, adapt)
    return mean_over_tasks(losses.kl, params_of(theta), query, reference)


def curvature_tasks(trust: TrustRegion, theta: Params, supports: Sequence[PolicyBatch],
                    query: PolicyBatch, adapted: Params, reference: tuple, adapt
                    ) -> tuple[Callable[[Params], Params], PolicyBatch, tuple]:
    """The tasks the curvature uses (the first ``cg_subsample`` of them): their adapted params
    as a function of theta, their query batch and their old outputs. The params go through the
    inner step (exact: these tasks re-adapted on all their support episodes, the same values as
    the full batch's with a graph k/N the size), or are theta plus its step held constant
    (``cg_first_order``: the same values, Jacobian I, the Fisher of the adapted policies)."""
    k = num_curvature_tasks(query.num_tasks, trust.cg_subsample)
    query, reference = query.select_tasks(slice(k)), tuple(r[:k] for r in reference)
    if trust.cg_first_order:
        steps = {name: (adapted[name][:k] - theta[name]).detach() for name in theta}
        return (lambda params: {name: params[name] + steps[name] for name in params}), \
            query, reference
    supports = [s.select_tasks(slice(k)) for s in supports]
    return (lambda params: adapt(supports, k, params)), query, reference


def num_curvature_tasks(num_tasks: int, fraction: float) -> int:
    """The curvature uses the first ``ceil(fraction * N)`` tasks: tasks are sampled i.i.d., so
    these are a uniform subset, and the mean of their exact KL Hessians is unbiased. (Fewer
    episodes per task instead would re-adapt on a smaller support set, whose noisier inner step
    inflated the curvature 2.7x on HalfCheetahDir at 0.2.)"""
    return max(1, math.ceil(fraction * num_tasks))


def old_outputs(losses: PolicyLosses, adapted: Params, query: PolicyBatch) -> tuple:
    """Each task's adapted policy outputs on its query states, as constants (the old policy)."""
    return tuple(o.detach() for o in vmap(losses.outputs)(adapted, query))
