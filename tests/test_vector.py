"""The batched simulators as Gymnasium vector environments (``gym.make_vec``): exactly the sync
vector env's results in every autoreset mode, per-env tasks, Gymnasium's vector wrappers,
rendering, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import vector as wrappers

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.envs.tasks import DirectionTask, GoalTask, VelocityTask
from metarl.envs.vector import TaskVectorEnv

NAV, CHEETAH, ANT = "metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0", "metarl/AntDir-v0"
N, STEPS, HORIZON = 3, 25, 7  # several truncations (and, on navigation, terminations)
TASKS = {NAV: [GoalTask((0.005, 0.0)), GoalTask((0.0, -0.01)), GoalTask((0.3, 0.2))],
         CHEETAH: [VelocityTask(0.5), VelocityTask(1.5), VelocityTask(2.0)],
         ANT: [DirectionTask(1.0), DirectionTask(-1.0), DirectionTask(1.0)]}


def _make(env_id, mode, native, **kwargs):
    if native:
        return gym.make_vec(env_id, num_envs=N, vectorization_mode="vector_entry_point",
                            max_episode_steps=HORIZON, autoreset_mode=mode, **kwargs)
    return gym.make_vec(env_id, num_envs=N, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": mode}, max_episode_steps=HORIZON,
                        **kwargs)


def _rollout(envs, actions, explicit_tasks, native):
    """Everything a rollout shows, step by step (disabled autoreset: the ended envs reset)."""
    tasks = explicit_tasks and TASKS[envs.spec.id]
    if tasks and native:
        obs, infos = envs.reset(seed=5, options={"tasks": tasks})
    else:
        if tasks:
            envs.set_attr("task", tasks)
        obs, infos = envs.reset(seed=5)
    seen = [obs, list(infos["task"])]
    for a in actions:
        obs, reward, terminated, truncated, infos = envs.step(a)
        seen += [obs, reward, terminated, truncated, list(infos["task"])]
        if "final_obs" in infos:
            seen += [infos["_final_obs"], [o for o in infos["final_obs"] if o is not None]]
        ended = terminated | truncated
        if envs.metadata["autoreset_mode"] == AutoresetMode.DISABLED and ended.any():
            obs, infos = envs.reset(options={"reset_mask": ended})
            seen += [obs, list(infos["_task"])]
    return seen


@pytest.mark.parametrize("mode", list(AutoresetMode))
@pytest.mark.parametrize("explicit_tasks", [True, False])
@pytest.mark.parametrize("env_id", [NAV, CHEETAH, ANT])
def test_native_vector_env_equals_the_sync_one(env_id, explicit_tasks, mode):
    high = 0.02 if env_id == NAV else 1.0  # small steps: the near goals are reached
    actions = np.random.default_rng(0).uniform(-high, high, (STEPS, N, 8 if env_id == ANT else
                                                               6 if env_id == CHEETAH else 2))
    native, sync = _make(env_id, mode, True), _make(env_id, mode, False)
    assert isinstance(native.unwrapped, TaskVectorEnv)
    a, b = (_rollout(e, actions.astype(np.float32), explicit_tasks, e is native)
            for e in (native, sync))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, list):
            assert len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
        else:
            assert x.dtype == y.dtype and np.array_equal(x, y)  # float64, exactly
    ended = np.concatenate([x for x in a if isinstance(x, np.ndarray) and x.dtype == bool])
    assert ended.sum() >= N * (STEPS // HORIZON)  # the episodes did end and restart
    if explicit_tasks:
        assert list(native.get_attr("task")) == TASKS[env_id] == list(sync.get_attr("task"))


def test_seeds_pick_tasks_until_tasks_are_set():
    envs = gym.make_vec(CHEETAH, num_envs=4)  # the native env is the default
    assert isinstance(envs, TaskVectorEnv)
    envs.reset(seed=0)
    first = envs.get_attr("task")
    assert len(set(first)) == 4  # each sub-env its own task
    envs.reset(seed=0)
    assert envs.get_attr("task") == first
    envs.reset(seed=1)
    assert envs.get_attr("task") != first
    envs.set_attr("task", VelocityTask(0.25))
    envs.reset(seed=2)
    assert envs.get_attr("task") == (VelocityTask(0.25),) * 4
    _, infos = envs.reset(options={"tasks": TASKS[CHEETAH] + [VelocityTask(0.0)]})
    assert list(infos["task"]) == TASKS[CHEETAH] + [VelocityTask(0.0)]


def test_gymnasium_vector_wrappers_run_on_it():
    envs = gym.make_vec(NAV, num_envs=4, vectorization_mode="vector_entry_point",
                        max_episode_steps=5)
    envs = wrappers.RecordEpisodeStatistics(envs)
    envs = wrappers.NormalizeObservation(envs)
    envs = wrappers.NormalizeReward(envs)
    envs = wrappers.RescaleAction(envs, -1.0, 1.0)
    envs = wrappers.ClipAction(envs)
    envs.reset(seed=0)
    episodes = 0
    for _ in range(12):
        _, reward, _, _, infos = envs.step(envs.action_space.sample())
        assert np.isfinite(reward).all()
        if "episode" in infos:
            episodes += infos["_episode"].sum()
            assert (infos["episode"]["l"][infos["_episode"]] == 5).all()
    assert episodes == 8  # two episodes of 5 steps each, four sub-envs


@pytest.mark.parametrize("env_id, shape", [(NAV, (64, 64, 3)), (CHEETAH, (48, 64, 3))])
def test_rgb_array_frames_and_a_recorded_video(tmp_path, env_id, shape):
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point",
                        render_mode="rgb_array", width=shape[1], height=shape[0],
                        max_episode_steps=4)
    envs.reset(seed=0)
    frames = envs.render()
    assert len(frames) == 2 and all(f.shape == shape and f.dtype == np.uint8 for f in frames)
    assert all(f.std() > 0 for f in frames)  # something is drawn
    # A full step: a random one can move the point less than a pixel.
    envs.step(envs.action_space.high)
    moved = envs.render()
    assert not np.array_equal(moved[0], frames[0])
    video = wrappers.RecordVideo(envs, str(tmp_path), episode_trigger=lambda e: e == 0)
    video.reset(seed=1)
    for _ in range(5):
        video.step(video.action_space.sample())
    video.close()
    assert [p.suffix for p in tmp_path.iterdir()] == [".mp4"]


@pytest.mark.parametrize("make, match", [
    (lambda: gym.make_vec(CHEETAH, num_envs=0), "num_envs must be a positive integer"),
    (lambda: gym.make_vec(CHEETAH, num_envs=-2), "num_envs must be a positive integer"),
    (lambda: gym.make_vec(CHEETAH, num_envs=2, autoreset_mode="Sometimes"),
     "unknown autoreset_mode 'Sometimes'"),
    (lambda: gym.make_vec(CHEETAH, num_envs=2).reset(options={"tasks": [VelocityTask(1.0)]}),
     r"options\['tasks'\] has 1 tasks for 2 sub-envs"),
    (lambda: gym.make_vec(CHEETAH, num_envs=2).reset(options={"task": VelocityTask(7.0)}),
     r"outside the family's tasks \(each number in \[0, 2\]\)"),
    (lambda: gym.make_vec(NAV, num_envs=2).set_attr("task", [GoalTask((0.9, 0.0))] * 2),
     r"outside the family's tasks"),
    (lambda: gym.make_vec(NAV, num_envs=2).set_attr("task", [GoalTask((0.1, 0.0))]),
     "got 1 tasks for 2 sub-envs"),
    (lambda: gym.make_vec(ANT, num_envs=2).step(np.zeros((2, 8))), r"call reset\(\) before"),
])
def test_bad_input_is_one_clear_error(make, match):
    with pytest.raises((ValueError, RuntimeError, TypeError), match=match):
        make()


def test_the_sampler_and_the_vector_env_share_one_simulator():
    """No second implementation: both step the family's batched simulator."""
    envs = gym.make_vec(ANT, num_envs=2)
    assert type(envs.unwrapped._sim) is type(metarl.envs.make_batched(ANT, 2))
