"""Lockstep episode sampler: all tasks x episodes step together, one batched policy forward
per time step with each task's own (adapted) params, the simulator stepping natively in batch.

No worker processes: the public MAML-RL sampler's subprocess workers are its most reported
source of hangs; here the MuJoCo families parallelise inside ``mujoco.batch`` (native threads)
and the policy runs in the calling thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metarl.episodes import Episodes
from metarl.simulator import BatchedSim, instance_seeds


def _check_params(params: Mapping[str, Tensor], policy: nn.Module, n_tasks: int) -> None:
    names = {n for n, _ in policy.named_parameters()}
    if set(params) != names:
        raise ValueError(
            f"params keys {sorted(params)} do not match the policy's parameters {sorted(names)}"
        )
    for k, v in params.items():
        want = (n_tasks, *dict(policy.named_parameters())[k].shape)
        if tuple(v.shape) != want:
            raise ValueError(
                f"params[{k!r}] has shape {tuple(v.shape)}, expected per-task {want}; "
                f"use metarl.params.expand(params, {n_tasks}) to share one set of params"
            )


def sample(
    policy: nn.Module,
    params: Mapping[str, Tensor],
    tasks: Sequence[Any],
    sim: BatchedSim,
    episodes_per_task: int,
    horizon: int,
    seed: int,
    device: str | torch.device = "cpu",
) -> Episodes:
    """Roll out ``episodes_per_task`` episodes of each task for ``horizon`` steps.

    ``params`` are per task, ``[N, ...]`` each (``N = len(tasks)``); ``sim`` is a
    :class:`BatchedSim` with ``N * episodes_per_task`` instances (e.g.
    ``metarl.envs.make_batched(env_id, N * E)``, reused across calls). Reset seeds and action
    noise both derive from ``seed``, so a call is deterministic; episode ``e`` of task ``i``
    starts as the Gymnasium env reset with seed ``instance_seeds(seed, N * E)[i * E + e]``.
    Returns :class:`Episodes` ``[T, N, E, ...]`` on ``device``, without gradients (the losses
    recompute log-probs from the observations).
    """
    n_tasks, n_eps = len(tasks), episodes_per_task
    if n_tasks == 0 or n_eps < 1 or horizon < 1:
        raise ValueError(
            f"need tasks, episodes_per_task >= 1 and horizon >= 1; got {n_tasks} tasks, "
            f"{n_eps} episodes, horizon {horizon}"
        )
    B = n_tasks * n_eps
    if not isinstance(sim, BatchedSim):
        raise TypeError(f"sample needs a BatchedSim, got {type(sim).__name__} ({sim!r}); build "
                        "one with metarl.envs.make_batched(env_id, tasks * episodes)")
    if sim.n != B:
        raise ValueError(
            f"the simulator has {sim.n} instances, but {n_tasks} tasks x {n_eps} episodes = {B}"
        )
    _check_params(params, policy, n_tasks)
    device = torch.device(device)
    params = {k: v.detach().to(device) for k, v in params.items()}
    distribution = policy.distribution

    def forward(p: Mapping[str, Tensor], obs: Tensor) -> tuple[Tensor, ...]:
        return functional_call(policy, dict(p), (obs,))

    batched_forward = vmap(forward, in_dims=(0, 0))
    generator = torch.Generator(device=device).manual_seed(seed)

    instance_tasks = [t for t in tasks for _ in range(n_eps)]
    obs = sim.reset(instance_tasks, instance_seeds(seed, B))
    T = horizon
    observations = np.zeros((T, B, sim.obs_dim), dtype=np.float32)
    rewards = np.zeros((T, B), dtype=np.float32)
    mask = np.zeros((T, B), dtype=np.float32)
    actions_out: Tensor | None = None
    log_probs = torch.zeros(T, B, device=device)
    active = np.ones(B, dtype=bool)

    with torch.no_grad():
        for t in range(T):
            observations[t] = obs
            mask[t] = active
            obs_t = torch.from_numpy(observations[t]).to(device).view(n_tasks, n_eps, -1)
            actions, logp = distribution.sample(batched_forward(params, obs_t), generator)
            actions = actions.reshape(B, *actions.shape[2:])
            if actions_out is None:
                actions_out = torch.zeros(T, *actions.shape, device=device, dtype=actions.dtype)
            actions_out[t] = actions
            log_probs[t] = logp.reshape(B)
            obs, reward, terminated = sim.step(
                actions.to("cpu", torch.float64).numpy(), None if active.all() else active
            )
            rewards[t] = reward
            active = active & ~terminated
            if not active.any():
                break

    def shaped(x: Tensor) -> Tensor:
        return x.reshape(T, n_tasks, n_eps, *x.shape[2:])

    def from_np(x: np.ndarray) -> Tensor:
        return shaped(torch.from_numpy(x).to(device))

    assert actions_out is not None
    return Episodes(
        observations=from_np(observations),
        actions=shaped(actions_out).float(),
        rewards=from_np(rewards) * from_np(mask),
        log_probs=shaped(log_probs) * from_np(mask),
        mask=from_np(mask),
        tasks=tuple(tasks),
    )
