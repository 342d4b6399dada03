"""Policy-gradient pieces of MAML-RL (Finn et al., 2017, Algorithm 3), batched over tasks.

Episodes ``[T, N, E, ...]`` become a task-major :class:`PolicyBatch` ``[N, T, E, ...]`` with
baseline advantages; per-task losses (REINFORCE, the TRPO surrogate, the KL to the sampling
policy) are pure functions of ``(params, batch)`` that ``torch.func.vmap`` maps over tasks, and
:func:`inner_adapt` chains one :func:`metarl.adapt.adapt_tasks` step per support batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap

from metarl.adapt import InnerLR, adapt_tasks
from metarl.baseline import fit_predict
from metarl.config import RLConfig, torch_device
from metarl.episodes import Episodes
from metarl.params import Params, detach, expand, forward_fn
from metarl.policies import (
    CategoricalMLPPolicy,
    GaussianMLPPolicy,
    categorical_kl,
    gaussian_kl,
    log_prob,
)
from metarl.returns import discounted_returns, gae, normalize
from metarl.sampler import sample


class PolicyBatch(NamedTuple):
    """Task-major episodes with advantages: ``observations [N, T, E, obs]``, ``actions
    [N, T, E, act]``, ``advantages, mask, old_log_probs [N, T, E]`` (one task under vmap)."""

    observations: Tensor
    actions: Tensor
    advantages: Tensor
    mask: Tensor
    old_log_probs: Tensor

    def select_tasks(self, index: int | slice) -> PolicyBatch:
        """Tasks ``index`` of every field (an int drops the task dimension)."""
        return PolicyBatch(*(x[index] for x in self))


def advantages(episodes: Episodes, gamma: float, gae_lambda: float) -> Tensor:
    """Baseline advantages, normalised per task: ``[T, N, E]``.

    The linear feature baseline is fitted to each task's own discounted returns, then GAE;
    normalisation is per task, as in the public MAML-RL reference.
    """
    returns = discounted_returns(episodes.rewards, episodes.mask, gamma)
    values = fit_predict(episodes.observations, returns, episodes.mask)
    adv = gae(episodes.rewards, values, episodes.mask, gamma, gae_lambda)
    return vmap(normalize, in_dims=(1, 1), out_dims=1)(adv, episodes.mask)


def policy_batch(episodes: Episodes, gamma: float, gae_lambda: float) -> PolicyBatch:
    adv = advantages(episodes, gamma, gae_lambda)
    return PolicyBatch(*(x.transpose(0, 1).contiguous() for x in (
        episodes.observations, episodes.actions, adv, episodes.mask, episodes.log_probs)))


def make_policy(obs_dim: int, act_dim: int, hidden: Sequence[int], nonlinearity: str,
                discrete: bool = False) -> nn.Module:
    if discrete:
        return CategoricalMLPPolicy(obs_dim, act_dim, tuple(hidden), nonlinearity)
    return GaussianMLPPolicy(obs_dim, act_dim, tuple(hidden), nonlinearity)


class PolicyLosses:
    """Per-task losses of one policy architecture; every method maps ``(params, batch)`` of a
    single task (``[T, E, ...]`` fields) to a scalar, ready for ``adapt`` and ``vmap``."""

    def __init__(self, policy: nn.Module) -> None:
        self.forward = forward_fn(policy)
        self.distribution: str = getattr(policy, "distribution", "gaussian")

    def _mean(self, x: Tensor, mask: Tensor) -> Tensor:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)

    def reinforce(self, params: Params, batch: PolicyBatch) -> Tensor:
        """``-E[log pi(a|s) A]``: the inner-loop loss, and MAML-REINFORCE's outer loss."""
        logp = log_prob(self.distribution, self.forward(params, batch.observations), batch.actions)
        return -self._mean(logp * batch.advantages, batch.mask)

    def surrogate(self, params: Params, batch: PolicyBatch) -> Tensor:
        """TRPO's ``-E[pi(a|s) / pi_old(a|s) A]`` with ``pi_old`` the sampling policy."""
        return self._surrogate(self.forward(params, batch.observations), batch)

    def kl(self, params: Params, batch: PolicyBatch, old_outputs: tuple[Tensor, ...]) -> Tensor:
        """Mean ``KL(pi_old || pi)`` over the batch's states; ``old_outputs`` are the old
        policy's forward outputs on ``batch.observations`` (constants)."""
        return self._kl(old_outputs, self.forward(params, batch.observations), batch.mask)

    def surrogate_and_kl(self, params: Params, batch: PolicyBatch,
                         old_outputs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """:meth:`surrogate` and :meth:`kl` from one forward pass (the TRPO line search)."""
        new = self.forward(params, batch.observations)
        return self._surrogate(new, batch), self._kl(old_outputs, new, batch.mask)

    def _surrogate(self, outputs: tuple[Tensor, ...], batch: PolicyBatch) -> Tensor:
        logp = log_prob(self.distribution, outputs, batch.actions)
        ratio = torch.exp(logp - batch.old_log_probs)
        return -self._mean(ratio * batch.advantages, batch.mask)

    def _kl(self, old: tuple[Tensor, ...], new: tuple[Tensor, ...], mask: Tensor) -> Tensor:
        if self.distribution == "gaussian":
            kl = gaussian_kl(old[0], old[1], new[0], new[1])
        else:
            kl = categorical_kl(old[0], new[0])
        return self._mean(kl, mask)

    def outputs(self, params: Params, batch: PolicyBatch) -> tuple[Tensor, ...]:
        return self.forward(params, batch.observations)


def inner_adapt(loss_fn: Callable[[Params, Any], Tensor], params: Mapping[str, Tensor],
                supports: Sequence[PolicyBatch], num_tasks: int, *, inner_lr: InnerLR,
                first_order: bool = False) -> Params:
    """One inner step per support batch (batch ``k`` was sampled with the params after ``k``
    steps, as in Finn et al.'s multi-step MAML-RL): per-task params ``[N, ...]``.

    With no support batches (no adaptation) the shared params are expanded to every task.
    """
    adapted, per_task = dict(params), False
    for support in supports:
        adapted = adapt_tasks(loss_fn, adapted, support, inner_lr=inner_lr, steps=1,
                              first_order=first_order, per_task_params=per_task)
        per_task = True
    return adapted if per_task else expand(adapted, num_tasks)


def mean_over_tasks(fn: Callable[..., Tensor], params: Params, *args: Any) -> Tensor:
    """``fn`` of each task's params and data, averaged over tasks."""
    return vmap(fn)(params, *args).mean()


class MetaBatch(NamedTuple):
    """Everything one meta-iteration samples (Finn et al. 2017, Algorithm 3, lines 3-8)."""

    tasks: list[Any]
    supports: list[PolicyBatch]
    """One per inner step, sampled with the params after that many steps."""
    query: PolicyBatch
    """Sampled with each task's adapted params."""
    returns: Tensor
    """Mean undiscounted return per task before each inner step and after the last: [S+1, N]."""
    env_steps: int
    sample_seconds: float
    adapt_seconds: float


def sample_meta_batch(policy: nn.Module, losses: PolicyLosses, params: Mapping[str, Tensor],
                      tasks: Sequence[Any], sim: Any, *, episodes: int, horizon: int,
                      inner_steps: int, inner_lr: InnerLR, gamma: float, gae_lambda: float,
                      seed: int, device: str | torch.device = "cpu",
                      later_inner_lr: InnerLR | None = None) -> MetaBatch:
    """Sample support episodes, adapt (without a graph: the outer step re-adapts with one), and
    sample query episodes with the adapted params; each set seeded from ``seed``.

    ``later_inner_lr`` is the step size of inner steps after the first (default ``inner_lr``);
    Finn et al. (2017) evaluate with half the training step size after the first step."""
    n = len(tasks)
    p, supports, returns, steps = detach(params), [], [], 0
    sample_s = adapt_s = 0.0
    for s in range(inner_steps + 1):
        t0 = time.perf_counter()
        eps = sample(policy, p if s else expand(p, n), tasks, sim, episodes, horizon,
                     seed=seed + s, device=device)
        t1 = time.perf_counter()
        batch = policy_batch(eps, gamma, gae_lambda)
        returns.append(eps.total_rewards.mean(-1))
        steps += eps.num_steps
        if s < inner_steps:
            supports.append(batch)
            lr = inner_lr if s == 0 or later_inner_lr is None else later_inner_lr
            p = adapt_tasks(losses.reinforce, p, batch, inner_lr=lr, steps=1,
                            first_order=True, per_task_params=bool(s))
            p = detach(p)
        sample_s += t1 - t0
        adapt_s += time.perf_counter() - t1
    return MetaBatch(list(tasks), supports, batch, torch.stack(returns), steps, sample_s, adapt_s)


class Problem(NamedTuple):
    """A task family ready to sample: its Gymnasium env (for ``sample_tasks``), a lockstep
    simulator of ``meta_batch x episodes`` instances, the policy and the horizon."""

    env: Any
    sim: Any
    policy: nn.Module
    horizon: int


def setup(env_id: str, *, num_tasks: int, episodes: int, horizon: int | None,
          hidden: Sequence[int], nonlinearity: str, seed: int,
          device: str | torch.device = "cpu") -> Problem:
    """Build the env, simulator and a seeded, freshly initialised policy on ``device``."""
    import gymnasium

    from envs import ENV_IDS, make_batched
    from envs import horizon as default_horizon
    from metarl.errors import ConfigError

    if env_id not in ENV_IDS:
        raise ConfigError(f"unknown env id {env_id!r}; choose one of {', '.join(ENV_IDS)}")
    device = torch_device(device)
    env = gymnasium.make(env_id).unwrapped
    sim = make_batched(env_id, num_tasks * episodes)
    torch.manual_seed(seed)
    discrete = isinstance(env.action_space, gymnasium.spaces.Discrete)
    act_dim = env.action_space.n if discrete else env.action_space.shape[0]
    policy = make_policy(env.observation_space.shape[0], act_dim, hidden, nonlinearity,
                         discrete).to(device)
    return Problem(env, sim, policy, horizon or default_horizon(env_id))


def setup_for(cfg: RLConfig) -> Problem:
    return setup(cfg.env_id, num_tasks=cfg.meta_batch, episodes=cfg.episodes,
                 horizon=cfg.horizon, hidden=cfg.hidden, nonlinearity=cfg.nonlinearity,
                 seed=cfg.seed, device=cfg.device)


def sample_iteration(cfg: RLConfig, problem: Problem, losses: PolicyLosses,
                     theta: Mapping[str, Tensor], iteration: int) -> MetaBatch:
    """Algorithm 3, lines 3-8 of meta-iteration ``iteration``: sample a batch of tasks, their
    support episodes with f_theta, the adapted theta'_i and query episodes with f_theta'_i.
    The pretraining baseline samples its episodes with f_theta and does not adapt."""
    seed = iteration_seed(cfg.seed, iteration)
    tasks = problem.env.sample_tasks(cfg.meta_batch, np.random.default_rng(seed))
    return sample_meta_batch(problem.policy, losses, theta, tasks, problem.sim,
                             episodes=cfg.episodes, horizon=problem.horizon,
                             inner_steps=0 if cfg.pretrain else cfg.inner_steps,
                             inner_lr=cfg.inner_lr, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                             seed=seed, device=cfg.device)


def iteration_scalars(batch: MetaBatch) -> dict[str, float]:
    """What every MAML-RL iteration logs about its episodes and sampling."""
    return {"returns/before_adaptation": batch.returns[0].mean().item(),
            "returns/after_adaptation": batch.returns[-1].mean().item(),
            "time/sampling_s": batch.sample_seconds,
            "time/adaptation_s": batch.adapt_seconds,
            "time/env_steps_per_s": batch.env_steps / max(batch.sample_seconds, 1e-9)}


def checkpoint_state(theta: Mapping[str, Tensor], iteration: int,
                     optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    return {"params": {k: v.detach().cpu() for k, v in theta.items()},
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "iteration": iteration}


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block on ``n`` torch CPU threads (``None``: unchanged), then restore the count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def iteration_seed(seed: int, iteration: int) -> int:
    """Seed of one meta-iteration's tasks and episodes: a pure function of (seed, iteration),
    so a resumed run samples exactly what the uninterrupted run would have."""
    return int(torch.randint(2**31 - 1, (1,), generator=torch.Generator().manual_seed(
        seed * 1_000_003 + iteration)).item())


def load_state(theta: Params, state: Mapping[str, Any] | None,
               optimizer: torch.optim.Optimizer | None = None) -> int:
    """Load a checkpoint's policy params (and optimizer) into ``theta`` in place; returns the
    iteration to continue from (0 without a checkpoint)."""
    from metarl.errors import CheckpointError

    if state is None:
        return 0
    saved = state["params"]
    if set(saved) != set(theta) or any(saved[k].shape != v.shape for k, v in theta.items()):
        raise CheckpointError("checkpoint policy does not match this environment/policy "
                              "(different env id, hidden sizes or action space?)")
    with torch.no_grad():
        for k, v in theta.items():
            v.copy_(saved[k])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    return int(state["iteration"])
