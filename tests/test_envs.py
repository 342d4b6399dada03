"""Task environments: registration, env_checker, determinism, batched == Gymnasium, bad input."""

from __future__ import annotations

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metarl.envs as envs
from metarl.envs import ENV_IDS, make_batched
from metarl.envs.tasks import DirectionTask, GoalTask, VelocityTask

BASE_IDS = [i for i in ENV_IDS if "H200" not in i]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_and_horizon(env_id):
    env = gymnasium.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps == (200 if "H200" in env_id or "Finn" in env_id else 100)
    assert envs.horizon(env_id) == env.spec.max_episode_steps


@pytest.mark.parametrize("env_id", BASE_IDS)
def test_seeded_tasks_and_resets_are_deterministic(env_id):
    env = gymnasium.make(env_id).unwrapped
    assert env.sample_tasks(5, 3) == env.sample_tasks(5, np.random.default_rng(3))
    assert env.sample_tasks(5, 3) != env.sample_tasks(5, 4)
    task = env.sample_tasks(1, 0)[0]
    a, _ = env.reset(seed=7, options={"task": task})
    b, _ = env.reset(seed=7, options={"task": task})
    np.testing.assert_array_equal(a, b)
    assert env.task == task


@pytest.mark.parametrize("env_id", BASE_IDS)
def test_batched_matches_gymnasium(env_id):
    n, steps = 3, 25
    env = gymnasium.make(env_id).unwrapped
    tasks = env.sample_tasks(n, 0)
    seeds = [11, 12, 13]
    sim = make_batched(env_id, n, nthread=1)
    obs = [sim.reset(tasks, seeds)]
    high = env.action_space.high
    actions = np.random.default_rng(1).uniform(-1.5 * high, 1.5 * high, (steps, n, len(high)))
    rewards, dones = [], []
    for t in range(steps):
        o, r, d = sim.step(actions[t])
        obs.append(o), rewards.append(r), dones.append(d)
    for i in range(n):
        o, _ = env.reset(seed=seeds[i], options={"task": tasks[i]})
        np.testing.assert_allclose(o, obs[0][i], atol=1e-6)
        for t in range(steps):
            o, r, term, trunc, _ = env.step(actions[t, i])
            np.testing.assert_allclose(o, obs[t + 1][i], atol=1e-6)
            assert abs(r - rewards[t][i]) < 1e-6
            assert term == dones[t][i] and not trunc


def test_navigation_reward_and_termination_by_hand():
    env = gymnasium.make("metarl/Navigation2D-v0").unwrapped
    env.reset(options={"task": GoalTask((0.15, 0.0))})
    o, r, term, _, _ = env.step(np.array([0.5, 0.0]))  # clipped to 0.1
    np.testing.assert_allclose(o, [0.1, 0.0])
    assert r == pytest.approx(-0.05) and not term
    o, r, term, _, _ = env.step(np.array([0.045, 0.005]))
    assert r == pytest.approx(-np.hypot(0.005, 0.005)) and term


def test_normalized_navigation_is_the_same_task_in_tenth_steps():
    """Finn et al.'s code (rllab's normalize): actions in [-1, 1]^2, scaled by 0.1, clipped."""
    plain = gymnasium.make("metarl/Navigation2D-v0").unwrapped
    unit = gymnasium.make("metarl/Navigation2DNormalized-v0").unwrapped
    np.testing.assert_array_equal(unit.action_space.high, [1.0, 1.0])
    task = GoalTask((0.3, -0.2))
    actions = np.random.default_rng(0).normal(0.0, 1.0, (30, 2))
    sims = [make_batched(i, 1) for i in ("metarl/Navigation2D-v0",
                                         "metarl/Navigation2DNormalized-v0")]
    for env, sim in zip((plain, unit), sims):
        env.reset(options={"task": task})
        sim.reset([task], [None])
    for a in actions:
        want = plain.step(0.1 * a)[:3]
        got = unit.step(a)[:3]
        np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-15)
        assert got[1:] == want[1:]
        batched = [sim.step(x[None]) for sim, x in zip(sims, (0.1 * a, a))]
        np.testing.assert_array_equal(batched[1][0], batched[0][0])
        np.testing.assert_array_equal(batched[1][1], batched[0][1])


def test_half_cheetah_rewards_by_hand():
    env = gymnasium.make("metarl/HalfCheetahVel-v0").unwrapped
    env.reset(seed=0, options={"task": VelocityTask(1.5)})
    a = np.full(6, 0.5)
    x0 = env.data.qpos[0]
    _, r, _, _, _ = env.step(a)
    v = (env.data.qpos[0] - x0) / 0.05
    assert r == pytest.approx(-abs(v - 1.5) - 0.05 * 6 * 0.25)
    env = gymnasium.make("metarl/HalfCheetahDir-v0").unwrapped
    env.reset(seed=0, options={"task": DirectionTask(-1.0)})
    x0 = env.data.qpos[0]
    _, r, _, _, _ = env.step(4 * a)  # the torque is clipped to 1.0, the cost is on the action
    v = (env.data.qpos[0] - x0) / 0.05
    assert r == pytest.approx(-v - 0.05 * 6 * 4)
    np.testing.assert_allclose(env.data.ctrl, 1.0)


def test_finn_ant_runs_at_rllab_timing_from_rllab_start():
    """AntDirFinn: one 0.02 s RK4 step per action from the bent-leg pose; the Gymnasium-timed
    AntDir, sharing the XML, keeps five 0.01 s steps."""
    finn = gymnasium.make("metarl/AntDirFinn-v0").unwrapped
    gym_timed = gymnasium.make("metarl/AntDir-v0").unwrapped
    assert (finn.dt, finn.model.opt.timestep) == (0.02, 0.02)
    assert (gym_timed.dt, gym_timed.model.opt.timestep) == (0.05, 0.01)
    assert finn.metadata["render_fps"] == 50
    finn.reset(seed=3, options={"task": DirectionTask(-1.0)})
    init_qpos = finn.model.numeric("init_qpos").data
    assert init_qpos[2] == 0.55
    np.testing.assert_allclose(finn.data.qpos, init_qpos, atol=0.05)
    assert np.abs(finn.data.qpos - init_qpos).max() > 0  # the start is noisy
    # by hand: one MuJoCo step of 0.02 s from the same state
    data = mujoco.MjData(finn.model)
    data.qpos[:], data.qvel[:] = finn.data.qpos, finn.data.qvel
    a = np.linspace(-0.8, 0.8, 8)
    data.ctrl[:] = a
    x0 = data.qpos[0]
    mujoco.mj_step(finn.model, data)
    _, r, _, _, _ = finn.step(a)
    np.testing.assert_array_equal(finn.data.qpos, data.qpos)
    assert r == pytest.approx(-(data.qpos[0] - x0) / 0.02 - 0.005 * np.square(a).sum() + 0.05)


def test_unknown_env_id():
    with pytest.raises(gymnasium.error.Error):
        gymnasium.make("metarl/HalfCheetahSpeed-v0")
    with pytest.raises(ValueError, match="unknown env id"):
        make_batched("metarl/HalfCheetahSpeed-v0", 4)
    for n in (0, 2.5, True):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            make_batched("metarl/HalfCheetahVel-v0", n)
    with pytest.raises(ValueError, match="nthread must be an integer >= 0"):
        make_batched("metarl/HalfCheetahVel-v0", 2, nthread=-1)


def test_task_of_the_wrong_family():
    env = gymnasium.make("metarl/HalfCheetahVel-v0").unwrapped
    with pytest.raises(TypeError, match="expects a VelocityTask"):
        env.set_task(DirectionTask(1.0))
    with pytest.raises(TypeError, match="expects a VelocityTask"):
        env.reset(options={"task": GoalTask((0.1, 0.1))})
    with pytest.raises(TypeError, match="expects a GoalTask"):
        make_batched("metarl/Navigation2D-v0", 2).reset([GoalTask((0, 0)), VelocityTask(1.0)])
    with pytest.raises(ValueError, match="direction"):
        DirectionTask(0.5)


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0"])
def test_bad_actions(env_id):
    env = gymnasium.make(env_id).unwrapped
    env.reset(seed=0)
    act = env.action_space.shape[0]
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(act + 1))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(act, np.nan))
    sim = make_batched(env_id, 2, nthread=1)
    sim.reset(env.sample_tasks(2, 0), [0, 1])
    with pytest.raises(ValueError, match="shape"):
        sim.step(np.zeros(2 * act))
    with pytest.raises(ValueError, match="NaN"):
        sim.step(np.full((2, act), np.nan))


def test_a_seeded_reset_picks_the_task_until_one_is_set():
    env = gymnasium.make("metarl/HalfCheetahDir-v0").unwrapped
    tasks = [env.reset(seed=s)[1]["task"] for s in range(12)]
    assert {t.direction for t in tasks} == {-1.0, 1.0}  # the seed draws it
    assert env.reset(seed=3)[1]["task"] == tasks[3]
    env.set_task(DirectionTask(-1.0))
    assert all(env.reset(seed=s)[1]["task"] == DirectionTask(-1.0) for s in range(4))
    nav = gymnasium.make("metarl/Navigation2D-v0", task=GoalTask((0.1, 0.1))).unwrapped
    assert nav.reset(seed=0)[1]["task"] == GoalTask((0.1, 0.1))  # set at construction
    nav.task = GoalTask((-0.2, 0.3))  # what VectorEnv.set_attr("task", ...) does
    assert nav.reset()[1]["task"] == GoalTask((-0.2, 0.3))


@pytest.mark.parametrize("env_id, task, match", [
    ("metarl/HalfCheetahVel-v0", VelocityTask(2.5), r"each number in \[0, 2\]"),
    ("metarl/AntVel-v0", VelocityTask(float("nan")), r"each number in \[0, 3\]"),
    ("metarl/Navigation2D-v0", GoalTask((0.6, 0.0)), r"\[-0.5, 0.5\], \[-0.5, 0.5\]"),
])
def test_tasks_outside_the_family_are_refused(env_id, task, match):
    env = gymnasium.make(env_id).unwrapped
    with pytest.raises(ValueError, match=match):
        env.set_task(task)
    with pytest.raises(ValueError, match=match):
        make_batched(env_id, 1).reset([task], [0])


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/AntDir-v0"])
def test_rgb_array_rendering(env_id):
    env = gymnasium.make(env_id, render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    first = env.render()
    env.step(env.action_space.high)  # a full step: a random one may move less than a pixel
    second = env.render()
    assert first.shape == second.shape == (48, 64, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, second)
    env.close()
    with pytest.raises(ValueError, match="render_mode must be None or one of"):
        type(env.unwrapped)(render_mode="ansi")
