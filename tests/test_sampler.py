"""Lockstep sampler: shapes, determinism, per-task params, agreement with Gymnasium, masks."""

from __future__ import annotations

import math
import threading

import gymnasium
import numpy as np
import pytest
import torch
from torch.func import functional_call, vmap

from metarl.distributions import gaussian_log_prob
from metarl.envs import make_batched, point_nav
from metarl.envs.tasks import GoalTask, VelocityTask
from metarl.episodes import Episodes
from metarl.params import expand, params_of
from metarl.policies import GaussianMLPPolicy
from metarl.sampler import sample
from metarl.simulator import instance_seeds

NAV = "metarl/Navigation2D-v0"
CHEETAH = "metarl/HalfCheetahVel-v0"


def nav(n: int):
    return make_batched(NAV, n)


def policy_and_params(obs_dim, act_dim, n, std=0.5, seed=0):
    torch.manual_seed(seed)
    pol = GaussianMLPPolicy(obs_dim, act_dim, hidden_sizes=(16,), init_std=std)
    params = {k: v.detach().clone() for k, v in expand(params_of(pol), n).items()}
    # different params per task, so a mix-up of tasks would show
    params["mean.2.bias"] = params["mean.2.bias"] + torch.arange(n).float().unsqueeze(1) * 0.01
    return pol, params


def test_shapes_determinism_and_log_probs():
    tasks = point_nav.sample_tasks(3, 0)
    pol, params = policy_and_params(2, 2, 3)
    ep = sample(pol, params, tasks, nav(12), episodes_per_task=4, horizon=10, seed=1)
    assert ep.observations.shape == (10, 3, 4, 2) and ep.actions.shape == (10, 3, 4, 2)
    assert ep.rewards.shape == ep.log_probs.shape == ep.mask.shape == (10, 3, 4)
    assert ep.tasks == tuple(tasks)
    again = sample(pol, params, tasks, nav(12), episodes_per_task=4, horizon=10, seed=1)
    other = sample(pol, params, tasks, nav(12), episodes_per_task=4, horizon=10, seed=2)
    for f in ("observations", "actions", "rewards", "log_probs", "mask"):
        torch.testing.assert_close(getattr(ep, f), getattr(again, f), rtol=0, atol=0)
    assert not torch.equal(ep.actions, other.actions)
    # the stored log-probs are those of each task's own params on the stored observations
    forward = vmap(lambda p, o: functional_call(pol, p, (o,)), in_dims=(0, 1), out_dims=1)
    out = forward(params, ep.observations)
    torch.testing.assert_close(
        ep.log_probs, gaussian_log_prob(*out, ep.actions) * ep.mask, atol=1e-4, rtol=1e-4
    )


def test_matches_gymnasium_replay_on_half_cheetah():
    tasks = [VelocityTask(0.5), VelocityTask(1.5)]
    E, T, seed = 2, 15, 3
    pol, params = policy_and_params(17, 6, 2)
    sim = make_batched(CHEETAH, 4, nthread=2)
    ep = sample(pol, params, tasks, sim, episodes_per_task=E, horizon=T, seed=seed)
    seeds = instance_seeds(seed, 4)
    env = gymnasium.make(CHEETAH).unwrapped
    for i, task in enumerate(tasks):
        for e in range(E):
            o, _ = env.reset(seed=seeds[i * E + e], options={"task": task})
            for t in range(T):
                np.testing.assert_allclose(ep.observations[t, i, e].numpy(), o, atol=1e-5)
                o, r, *_ = env.step(ep.actions[t, i, e].double().numpy())
                assert abs(ep.rewards[t, i, e].item() - r) < 1e-5


def test_mask_after_termination():
    tasks = [GoalTask((0.005, 0.0)), GoalTask((0.4, 0.4))]
    pol, params = policy_and_params(2, 2, 2, std=1e-3)
    with torch.no_grad():  # mean 0, std 1e-3: the first task is reached at the first step
        for k in params:
            if k.startswith("mean.2"):
                params[k].zero_()
    ep = sample(pol, params, tasks, nav(6), episodes_per_task=3, horizon=8, seed=0)
    assert ep.mask[0].eq(1).all() and ep.mask[1:, 0].eq(0).all() and ep.mask[:, 1].eq(1).all()
    assert ep.rewards[1:, 0].eq(0).all() and ep.log_probs[1:, 0].eq(0).all()
    torch.testing.assert_close(ep.lengths, torch.tensor([[1.0] * 3, [8.0] * 3]))


def test_vmap_over_tasks_of_episodes():
    ep = Episodes(
        observations=torch.randn(5, 3, 2, 4),
        actions=torch.randn(5, 3, 2, 1),
        rewards=torch.randn(5, 3, 2),
        log_probs=torch.randn(5, 3, 2),
        mask=torch.ones(5, 3, 2),
        tasks=("a", "b", "c"),
    )

    def per_task(e: Episodes) -> torch.Tensor:
        assert e.rewards.shape == (5, 2) and e.observations.shape == (5, 2, 4)
        return (e.rewards * e.mask).sum()

    torch.testing.assert_close(torch.func.vmap(per_task, in_dims=1)(ep), ep.rewards.sum((0, 2)))


def test_bad_input():
    tasks = point_nav.sample_tasks(2, 0)
    pol, params = policy_and_params(2, 2, 2)
    with pytest.raises(ValueError, match="per-task"):
        sample(pol, params_of(pol), tasks, nav(4), episodes_per_task=2, horizon=3, seed=0)
    with pytest.raises(ValueError, match="instances"):
        sample(pol, params, tasks, make_batched(NAV, 5), episodes_per_task=2, horizon=3, seed=0)
    with pytest.raises(TypeError, match="expects a GoalTask"):
        sample(pol, params, [VelocityTask(1.0)] * 2, nav(4), episodes_per_task=2, horizon=3,
               seed=0)
    with pytest.raises(TypeError, match="needs a BatchedSim.*make_batched"):
        sample(pol, params, tasks, NAV, episodes_per_task=2, horizon=3, seed=0)
    params["log_std"] = torch.full_like(params["log_std"], math.inf)
    with pytest.raises(ValueError, match="NaN or inf"):
        sample(pol, params, tasks, nav(4), episodes_per_task=2, horizon=3, seed=0)


def test_native_threads_do_not_hang():
    """mujoco.batch runs a native thread pool; repeated builds and samples must finish."""
    done = threading.Event()

    def work():
        pol, params = policy_and_params(17, 6, 2)
        for s in range(5):
            sim = make_batched(CHEETAH, 6, nthread=2)
            sample(pol, params, [VelocityTask(1.0)] * 2, sim, 3, 5, seed=s)
        done.set()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert done.is_set(), "sampling with mujoco.batch threads did not finish in 60 s"
