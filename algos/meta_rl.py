"""What every meta-RL algorithm does around its outer step (Finn et al., 2017, Algorithm 3):
the problem it trains on (env, lockstep simulator, policy), each meta-iteration's seeded tasks,
trajectories and inner steps, the logged scalars and the checkpointed state."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple, Protocol

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from metarl.config import RLConfig, torch_device
from metarl.envs import ENV_IDS, make_batched
from metarl.envs import horizon as default_horizon
from metarl.envs.ray_sampler import RaySampler
from metarl.envs.replay import make_env, replay
from metarl.episodes import Episodes
from metarl.errors import CheckpointError, ConfigError
from metarl.logger import NonFiniteState, non_finite
from metarl.params import Params, detach, expand
from metarl.policies import make_policy
from metarl.policy_gradient import PolicyBatch, PolicyLosses, adapt_chain, policy_batch
from metarl.rules import SGD, UpdateRule
from metarl.sampler import sample
from metarl.simulator import BatchedSim, instance_seeds
from metarl.stats import Metric
from metarl.video import Frame, label, side_by_side

RETURN = Metric("return", higher_is_better=True, label="mean return", decimals=(2, 2))
"""What meta-RL evaluation reports: the mean undiscounted return of a task's episodes."""


class RLAlgorithm(Protocol):
    """A meta-RL algorithm's config: a frozen dataclass of its own options."""

    name: ClassVar[str]
    kind: ClassVar[str]
    """``"rl"``."""


class Rollouts(NamedTuple):
    """Trajectories of every task, ready for the losses, and what is logged about them."""

    batch: PolicyBatch
    returns: Tensor
    """Mean undiscounted return of each task's episodes: ``[N]``."""
    env_steps: int
    sample_seconds: float
    episodes: Episodes
    """The trajectories as sampled (to replay and render them)."""
    seed: int
    """The sampler's seed: episode ``e`` of task ``i`` was reset with
    ``instance_seeds(seed, N * E)[i * E + e]``."""
    adapt_seconds: float = 0.0
    """Time of the inner step taken on these trajectories (support sets only)."""


@dataclass
class Problem:
    """A task family ready to sample: its Gymnasium env (for ``sample_tasks``), a lockstep
    simulator of ``num_tasks x episodes`` instances (or, with ``--sampler ray``, Ray actors
    holding one for their shard of the tasks), the policy and its losses."""

    cfg: RLConfig
    env: Any
    sim: BatchedSim | None
    policy: nn.Module
    losses: PolicyLosses
    horizon: int
    episodes: int
    _videos: Problem | None = field(default=None, repr=False)
    remote: RaySampler | None = None

    @classmethod
    def build(cls, cfg: RLConfig, num_tasks: int | None = None, episodes: int | None = None,
              seed: int | None = None, device: str | None = None) -> Problem:
        """The env, simulator and a seeded, freshly initialised policy (on ``cfg.device``)
        for ``num_tasks`` tasks (default ``cfg.meta_batch``) x ``episodes``."""
        if cfg.env_id not in ENV_IDS:
            raise ConfigError(f"unknown env id {cfg.env_id!r}; choose one of "
                              f"{', '.join(ENV_IDS)}")
        episodes = episodes or cfg.episodes
        env = gymnasium.make(cfg.env_id).unwrapped
        ray = cfg.sampler == "ray"
        sim = None if ray else make_batched(cfg.env_id, (num_tasks or cfg.meta_batch) * episodes)
        torch.manual_seed(cfg.seed if seed is None else seed)
        discrete = isinstance(env.action_space, gymnasium.spaces.Discrete)
        act_dim = env.action_space.n if discrete else env.action_space.shape[0]
        policy = make_policy(env.observation_space.shape[0], act_dim, cfg.hidden,
                             cfg.nonlinearity, discrete).to(torch_device(device or cfg.device))
        remote = RaySampler(cfg.env_id, policy, episodes, cfg.ray_actors, cfg.ray_address,
                            most=num_tasks or cfg.meta_batch) if ray else None
        return cls(cfg, env, sim, policy, PolicyLosses(policy),
                   cfg.horizon or default_horizon(cfg.env_id), episodes, remote=remote)

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def rules(self, steps: int | None = None, later_lr_scale: float = 1.0) -> list[UpdateRule]:
        """One inner SGD step per support batch (``cfg.inner_steps`` in training); steps after
        the first at ``later_lr_scale`` times the inner lr (Finn et al. evaluate with half)."""
        steps = self.cfg.inner_steps if steps is None else steps
        lr = self.cfg.inner_lr
        return [SGD(lr if k == 0 else later_lr_scale * lr) for k in range(steps)]

    def seed(self, iteration: int) -> int:
        """The seed of meta-iteration ``iteration``'s tasks and trajectories."""
        return iteration_seed(self.cfg.seed, iteration)

    @contextmanager
    def outer_step(self) -> Iterator[Stopwatch]:
        """The outer step's block: on ``outer_torch_threads`` torch threads (default: every
        core, :func:`all_cores`; MuJoCo is idle then), timed."""
        with torch_threads(self.cfg.outer_torch_threads or all_cores()), Stopwatch() as watch:
            yield watch

    def sample_tasks(self, num_tasks: int, seed: int) -> list:
        return self.env.sample_tasks(num_tasks, np.random.default_rng(seed))

    def rollouts(self, params: Mapping[str, Tensor], tasks: Sequence[Any], seed: int
                 ) -> Rollouts:
        """``episodes`` trajectories of each task with its own params ``[N, ...]``, with the
        baseline advantages the losses need."""
        t0 = time.perf_counter()
        if self.remote is not None:  # the same episodes, sampled on Ray actors
            episodes = self.remote.sample(params, tasks, self.horizon, seed, self.device)
        else:
            episodes = sample(self.policy, params, tasks, self.sim, self.episodes, self.horizon,
                              seed=seed, device=self.device)
        batch = policy_batch(episodes, self.cfg.gamma, self.cfg.gae_lambda)
        return Rollouts(batch, episodes.total_rewards.mean(-1), episodes.num_steps,
                        time.perf_counter() - t0, episodes, seed)

    def adapt(self, theta: Mapping[str, Tensor], tasks: Sequence[Any], seed: int,
              rules: Sequence[UpdateRule]) -> tuple[list[Rollouts], Params]:
        """Steps 5-7 of Algorithm 3 for every task at once, once per rule: sample trajectories
        with the current params (theta at first), then take the inner step on them. The steps
        are taken without a graph (the outer step re-adapts with one). Returns the support
        rollouts and the adapted params ``[N, ...]``."""
        params, state, supports = detach(theta), None, []
        _check_finite(params, "the policy's parameters", "--outer-lr or --max-kl")
        for k, rule in enumerate(rules):
            support = self.rollouts(params if k else expand(params, len(tasks)), tasks, seed + k)
            t0 = time.perf_counter()
            params, state = adapt_chain(self.losses.reinforce, params, [support.batch], [rule],
                                        len(tasks), first_order=True, per_task_params=k > 0,
                                        state=state)
            params = detach(params)
            _check_finite(params, f"the parameters after inner step {k + 1}", "--inner-lr")
            supports.append(support._replace(adapt_seconds=time.perf_counter() - t0))
        return supports, params if rules else expand(params, len(tasks))


    def videos(self, theta: Mapping[str, Tensor], rules: Sequence[UpdateRule]
               ) -> dict[str, tuple[list[Frame], float]]:
        """Rollouts of the same :data:`VIDEO_TASKS` held-out tasks at every call, before and
        after ``rules``' inner steps side by side: ``{tag: (frames, fps)}`` for TensorBoard.
        Sampled on a simulator of their own with a fixed seed, so training's tasks and random
        streams are untouched and successive videos differ only by theta."""
        if self._videos is None:
            self._videos = replace(self, sim=make_batched(self.cfg.env_id,
                                                          VIDEO_TASKS * self.episodes))
        seed = iteration_seed(self.cfg.seed, -1)  # no training iteration has it
        tasks = self.sample_tasks(VIDEO_TASKS, seed)
        steps = rollouts_after_steps(self._videos, theta, tasks, rules, seed)
        env = make_env(self.cfg.env_id, size=VIDEO_SIZE)
        try:
            return {f"rollouts/task_{i}": (side_by_side(
                [episode_frames(env, r, i, step_title(s), every=VIDEO_STRIDE)
                 for s, r in enumerate(steps)]),
                env.metadata["render_fps"] / VIDEO_STRIDE) for i in range(len(tasks))}
        finally:
            env.close()


VIDEO_TASKS = 2
"""Tasks shown in training videos."""
VIDEO_SIZE = 160
"""Their frames' side in pixels: small, since MuJoCo renders them in software here."""
VIDEO_STRIDE = 2
"""They show every second state (at real-time speed): rendering is most of their cost."""


def episode_frames(env: Any, rollouts: Rollouts, task: int, title: str, episode: int = 0,
                   every: int = 1) -> list[Frame]:
    """Episode ``episode`` of task ``task`` in ``rollouts``, replayed in ``env`` (the family's
    Gymnasium env) and rendered every ``every`` steps, each frame labelled with ``title``, the
    task and the episode's return so far."""
    episodes = rollouts.episodes
    run = replay(env, episodes.tasks[task], episode_seed(rollouts, task, episode),
                 episode_actions(rollouts, task, episode), every=every)
    so_far = np.concatenate([[0.0], np.cumsum(run.rewards)])[run.frame_steps]
    describe = episodes.tasks[task].describe()
    return [label(frame, [title, describe, f"return {r:.1f}"])
            for frame, r in zip(run.frames, so_far)]


def step_title(steps: int) -> str:
    """How a rollout after ``steps`` inner steps is labelled."""
    return f"after {steps} step{'s' * (steps != 1)}" if steps else "before adaptation"


def episode_seed(rollouts: Rollouts, task: int, episode: int = 0) -> int:
    """The reset seed of episode ``episode`` of task ``task`` in ``rollouts``."""
    n_tasks, n_eps = rollouts.episodes.rewards.shape[1:3]
    return instance_seeds(rollouts.seed, n_tasks * n_eps)[task * n_eps + episode]


def episode_actions(rollouts: Rollouts, task: int, episode: int = 0) -> np.ndarray:
    """Its actions up to its end: ``[steps, act_dim]``."""
    episodes = rollouts.episodes
    steps = int(episodes.mask[:, task, episode].sum().item())
    return episodes.actions[:steps, task, episode].cpu().numpy()


def _check_finite(params: Mapping[str, Tensor], what: str, options: str) -> None:
    bad = non_finite(dict(params))
    if bad is not None:
        raise NonFiniteState(f"{what} became NaN or infinite ({bad}); lower {options}")


class Stopwatch:
    """``with Stopwatch() as watch: ...``, then ``watch.seconds``."""

    seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def iteration_seed(seed: int, iteration: int) -> int:
    """Seed of one meta-iteration's tasks and episodes: a pure function of (seed, iteration),
    so a resumed run samples exactly what the uninterrupted run would have."""
    return int(torch.randint(2**31 - 1, (1,), generator=torch.Generator().manual_seed(
        seed * 1_000_003 + iteration)).item())


def iteration_scalars(supports: Sequence[Rollouts], query: Rollouts, outer: Stopwatch
                      ) -> dict[str, float]:
    """What every meta-RL iteration logs about its trajectories, sampling and outer step."""
    everything = [*supports, query]
    sample_seconds = sum(r.sample_seconds for r in everything)
    return {"returns/before_adaptation": everything[0].returns.mean().item(),
            "returns/after_adaptation": query.returns.mean().item(),
            # Early termination (Ant leaving its healthy height) shows here, not in returns.
            "episodes/length_before_adaptation": everything[0].episodes.lengths.mean().item(),
            "episodes/length_after_adaptation": query.episodes.lengths.mean().item(),
            "time/sampling_s": sample_seconds,
            "time/adaptation_s": sum(r.adapt_seconds for r in supports),
            "time/env_steps_per_s": sum(r.env_steps for r in everything)
            / max(sample_seconds, 1e-9),
            "time/outer_step_s": outer.seconds}


def checkpoint_state(theta: Mapping[str, Tensor], iteration: int,
                     optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    return {"params": {k: v.detach().cpu() for k, v in theta.items()},
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "iteration": iteration}


def load_state(theta: Params, state: Mapping[str, Any] | None,
               optimizer: torch.optim.Optimizer | None = None) -> int:
    """Load a checkpoint's policy params (and optimizer) into ``theta`` in place; returns the
    iteration to continue from (0 without a checkpoint)."""
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


def all_cores() -> int:
    """The cores this process may use: ``OMP_NUM_THREADS`` when it is set (the way to keep
    a run to one core on a shared machine), else every core of its CPU affinity."""
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:
        return int(limit)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def rollouts_after_steps(problem: Problem, theta: Mapping[str, Tensor], tasks: Sequence[Any],
                         rules: Sequence[UpdateRule], seed: int) -> list[Rollouts]:
    """Each held-out task's trajectories before adaptation and after each inner step of
    ``rules``, every step taken on the trajectories sampled with the params before it."""
    supports, adapted = problem.adapt(theta, tasks, seed, rules)
    return [*supports, problem.rollouts(adapted, tasks, seed + len(rules))]


def returns_after_steps(problem: Problem, theta: Mapping[str, Tensor], tasks: Sequence[Any],
                        steps: int, seed: int, later_lr_scale: float) -> Tensor:
    """Mean return of each held-out task before adaptation and after ``1..steps`` inner steps,
    the steps after the first at ``later_lr_scale`` times the inner lr: ``[N, steps + 1]``."""
    rollouts = rollouts_after_steps(problem, theta, tasks, problem.rules(steps, later_lr_scale),
                                    seed)
    return torch.stack([r.returns for r in rollouts], 1)
