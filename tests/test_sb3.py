"""stable-baselines3 interop: the SB3 VecEnv on the batched simulators (exactly the Gymnasium
envs' trajectories, SB3's checks, evaluate_policy), policy export and import (exact round
trip, PPO.load in a fresh process), the oracle baseline through metarl-evaluate, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common import env_checker
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import check_for_correct_spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan, VecNormalize
from torch.func import functional_call

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.algos.meta_rl import Problem
from metarl.algos.oracle import Oracle
from metarl.checkpoint import load_checkpoint
from metarl.config import RLConfig
from metarl.envs.sb3 import SB3VecEnv, run_to_sb3
from metarl.envs.tasks import DirectionTask, GoalTask, VelocityTask
from metarl.errors import CheckpointError, ConfigError
from metarl.params import params_of
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from metarl.policy_gradient import adapt_chain, mean_over_tasks
from metarl.sb3_io import from_sb3, matching_policy, to_sb3
from metarl.scripts import evaluate, oracle, train
from metarl.scripts.experiments import MetaRL

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAV, CHEETAH, ANT = "metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0", "metarl/AntDir-v0"
N, STEPS, HORIZON = 3, 25, 7
TASKS = {NAV: GoalTask((0.005, 0.0)), CHEETAH: VelocityTask(1.5), ANT: DirectionTask(-1.0)}


def _dummy(env_id: str, n: int = N, horizon: int = HORIZON) -> DummyVecEnv:
    """SB3's own VecEnv of the same Gymnasium envs, each monitored as SB3 wraps them."""
    return DummyVecEnv([lambda: Monitor(gym.make(env_id, max_episode_steps=horizon))
                        for _ in range(n)])


def _actions(env_id: str, steps: int = STEPS) -> np.ndarray:
    high, dim = {NAV: (0.02, 2), CHEETAH: (1.0, 6), ANT: (1.0, 8)}[env_id]
    return np.random.default_rng(0).uniform(-high, high, (steps, N, dim)).astype(np.float32)


def _trajectory(venv, actions: np.ndarray, task) -> list:
    """Everything SB3 sees: observations, rewards, dones, infos (the wall time aside), reset
    infos and tasks; env 1 gets its task by env_method, the others draw theirs from seeds."""
    venv.env_method("set_task", task, indices=[1])
    venv.seed(5)
    seen = [venv.reset(), [dict(i) for i in venv.reset_infos], venv.get_attr("task")]
    for a in actions:
        obs, rewards, dones, infos = venv.step(a)
        for info in infos:
            if "episode" in info:
                info["episode"] = {k: v for k, v in info["episode"].items() if k != "t"}
        seen += [obs, rewards, dones, infos, [dict(i) for i in venv.reset_infos]]
    return seen


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k])
                                                                    for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("env_id", [NAV, CHEETAH, ANT])
def test_vecenv_gives_the_gymnasium_envs_trajectories(env_id):
    ours, theirs = SB3VecEnv(env_id, N, max_episode_steps=HORIZON), _dummy(env_id)
    actions = _actions(env_id)
    a, b = (_trajectory(v, actions, TASKS[env_id]) for v in (ours, theirs))
    assert _equal(a, b)  # float64 observations, float32 rewards, infos: exactly
    ends = sum(int(x.sum()) for x in a if isinstance(x, np.ndarray) and x.dtype == bool)
    assert ends >= N * (STEPS // HORIZON)  # autoresets happened (and match)
    assert ours.get_attr("task")[1] == TASKS[env_id]
    # A second seeded reset redraws the unset envs' tasks from the new seeds, as theirs do.
    for v in (ours, theirs):
        v.seed(11)
        v.reset()
    assert ours.get_attr("task") == theirs.get_attr("task")


def test_vecenv_passes_sb3_checks_and_evaluate_policy():
    venv = SB3VecEnv(CHEETAH, 4, max_episode_steps=20)
    check_for_correct_spaces(venv, gym.make(CHEETAH).observation_space,
                             gym.make(CHEETAH).action_space)
    env_checker._check_box_obs(venv.observation_space)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3's checker warns about unsupported spaces
        assert not env_checker._check_unsupported_spaces(venv, venv.observation_space,
                                                         venv.action_space)
    checked = VecCheckNan(VecNormalize(venv), raise_exception=True)
    obs = venv.reset()
    for o in obs:
        env_checker._check_obs(o, venv.observation_space, "reset")
    checked.reset()
    for _ in range(25):
        obs, rewards, dones, infos = checked.step(np.stack([venv.action_space.sample()
                                                            for _ in range(4)]))
        assert rewards.shape == (4,) and dones.dtype == bool and len(infos) == 4
        for o in venv.step(np.zeros((4, 6), np.float32))[0]:
            env_checker._check_obs(o, venv.observation_space, "step")
    assert venv.env_is_wrapped(Monitor) == [True] * 4  # evaluate_policy reads its statistics

    # evaluate_policy reads the Monitor statistics: the same returns as on SB3's own VecEnv.
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=32, seed=0, device="cpu")
    model.learn(128)  # two iterations on the batched simulator
    assert len(model.ep_info_buffer) > 0  # episode statistics reached SB3's logger
    returns = []
    for v in (SB3VecEnv(CHEETAH, 4, max_episode_steps=20), _dummy(CHEETAH, 4, 20)):
        v.seed(3)
        returns.append(evaluate_policy(model, v, 8, return_episode_rewards=True))
    assert returns[0] == returns[1] and len(returns[0][0]) == 8


def test_resampled_tasks_differ_per_episode():
    venv = SB3VecEnv(NAV, 2, resample_tasks=True, max_episode_steps=3)
    venv.seed(0)
    venv.reset()
    first = venv.get_attr("task")
    for _ in range(3):
        venv.step(np.zeros((2, 2), np.float32))
    assert venv.get_attr("task") != first and len(set(first)) == 2


def _policy(hidden=(64, 64), nonlinearity="tanh", obs=2, act=2, seed=0) -> GaussianMLPPolicy:
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(obs, act, hidden, nonlinearity)
    with torch.no_grad():
        policy.log_std.copy_(torch.randn(act) * 0.5)
    return policy


@pytest.mark.parametrize("env_id, hidden, nonlinearity", [(NAV, (64, 64), "tanh"),
                                                           (CHEETAH, (100, 100), "relu"),
                                                           (NAV, (), "tanh")])
def test_export_import_round_trip_is_exact(env_id, hidden, nonlinearity):
    env = gym.make(env_id)
    dims = env.observation_space.shape[0], env.action_space.shape[0]
    policy = _policy(hidden, nonlinearity, *dims)
    params = params_of(policy)
    model = to_sb3(params, env.observation_space, env.action_space, nonlinearity)
    obs = torch.as_tensor(np.random.default_rng(1).normal(size=(9, dims[0])) * 3,
                          dtype=torch.float32)
    ours_mean, ours_log_std = policy(obs)
    dist = model.policy.get_distribution(obs).distribution
    assert torch.equal(dist.mean, ours_mean) and torch.equal(dist.stddev, ours_log_std.exp())
    back = from_sb3(model, policy)
    assert back.keys() == params.keys() and all(torch.equal(back[k], params[k]) for k in params)
    assert torch.equal(functional_call(matching_policy(model), back, (obs,))[0], ours_mean)
    assert model.metarl_export["value_head"].startswith("untrained")


def test_adapted_params_export_one_task_at_a_time():
    problem = Problem.build(RLConfig(meta_batch=2, episodes=2, horizon=10), seed=0)
    theta = params_of(problem.policy)
    tasks = problem.sample_tasks(2, 0)
    _, adapted = problem.adapt(theta, tasks, 0, problem.rules(1))
    env = problem.env
    with pytest.raises(ConfigError, match="leading task dimension"):
        to_sb3(adapted, env.observation_space, env.action_space)
    one = {k: v[1] for k, v in adapted.items()}
    model = to_sb3(one, env.observation_space, env.action_space)
    assert all(torch.equal(from_sb3(model)[k], one[k]) for k in one)
    assert not torch.equal(one["mean.0.weight"], theta["mean.0.weight"])  # it did adapt


def test_sb3_trained_policy_starts_our_adaptation():
    """An SB3-trained policy's params drive our policy and its second-order inner step."""
    venv = SB3VecEnv(NAV, 4, max_episode_steps=20)
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, seed=0, device="cpu",
                policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64])))
    model.learn(256)
    params = from_sb3(model)
    problem = Problem.build(RLConfig(meta_batch=2, episodes=2, horizon=10), seed=0)
    theta = params_of(problem.policy)
    params = from_sb3(model, problem.policy)  # the preset's policy: a match
    with torch.no_grad():
        for k in theta:
            theta[k].copy_(params[k])
    obs = torch.randn(5, 2)
    assert torch.equal(problem.policy(obs)[0], model.policy.get_distribution(obs).distribution.mean)
    supports, adapted = problem.adapt(theta, problem.sample_tasks(2, 1), 1, problem.rules(1))
    assert all(torch.isfinite(v).all() for v in adapted.values())
    # the outer gradient through the inner step (second order) reaches the SB3 weights
    leaf = {k: v.detach().clone().requires_grad_() for k, v in theta.items()}
    inner, _ = adapt_chain(problem.losses.reinforce, leaf, [supports[0].batch], problem.rules(1),
                           2, first_order=False)
    loss = mean_over_tasks(problem.losses.reinforce, inner, supports[0].batch)
    grads = torch.autograd.grad(loss, list(leaf.values()))
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.fixture(scope="module")
def nav_run(tmp_path_factory):
    """A one-iteration MAML-TRPO navigation run at the preset's horizon."""
    root = tmp_path_factory.mktemp("sb3")
    config = MetaRL(rl=RLConfig(iterations=1, meta_batch=2, episodes=2),
                    out=str(root / "nav-maml"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train.train(config, progress=False).parent
    finally:
        torch.set_num_threads(threads)


def test_exported_run_loads_in_a_fresh_process_and_predicts_our_mean(nav_run, tmp_path):
    model = run_to_sb3(nav_run)
    model.save(tmp_path / "nav.zip")
    obs = np.random.default_rng(2).uniform(-40, 40, (64, 2))
    np.save(tmp_path / "obs.npy", obs)
    script = ("import sys, numpy as np; from stable_baselines3 import PPO; "
              "m = PPO.load(sys.argv[1]); a, _ = m.predict(np.load(sys.argv[2]), "
              "deterministic=True); np.save(sys.argv[3], a); print(m.metarl_export['value_head'])")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "nav.zip"),
                           str(tmp_path / "obs.npy"), str(tmp_path / "a.npy")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("untrained")
    params = load_checkpoint(nav_run)["state"]["params"]
    mean, _ = functional_call(GaussianMLPPolicy(2, 2), params,
                              (torch.as_tensor(obs, dtype=torch.float32),))
    expected = np.clip(mean.detach().numpy(), -0.1, 0.1)
    predicted = np.load(tmp_path / "a.npy")
    assert np.array_equal(predicted, expected)
    assert (np.abs(expected) == 0.1).any() and (np.abs(expected) < 0.1).any()  # both cases
    assert all(torch.equal(from_sb3(tmp_path / "nav.zip")[k], params[k]) for k in params)


def test_two_iteration_oracle_on_navigation_is_plotted_by_evaluate(nav_run, tmp_path):
    out = tmp_path / "oracle"
    argv = ["nav2d", "--tasks", "3", "--env-steps", "128", "--n-envs", "4", "--n-steps", "16",
            "--batch-size", "32", "--eval-episodes", "2", "--out", str(out)]
    oracle.main(argv[:2] + ["2"] + argv[3:])  # two tasks, then a third by --resume
    oracle.main([*argv, "--resume"])
    saved = json.loads((out / "returns.json").read_text())
    # metarl-evaluate's held-out tasks (Problem.sample_tasks with its --seed), in order
    tasks = Problem.build(RLConfig(), num_tasks=3).sample_tasks(3, 12345)
    assert [r["task"] for r in saved["results"]] == [list(t.goal) for t in tasks]
    assert Oracle(env_steps=128, n_envs=4, n_steps=16).iterations == 2
    assert all(r["env_steps"] == 128 and math.isfinite(r["returns"]) for r in saved["results"])
    assert sorted(p.name for p in out.glob("*.zip")) == ["task00.zip", "task01.zip",
                                                        "task02.zip"]
    summary = evaluate.evaluate(evaluate.Evaluate(runs=(str(nav_run),), tasks=3, steps=1,
                                                  episodes=2, oracle=str(out),
                                                  out=str(tmp_path / "eval")))
    label = "oracle (PPO, 128 env-steps per task)"
    assert set(summary["methods"]) == {"maml-trpo", "random init", label}
    mean = summary["methods"][label]["return"]["mean"]
    expected = np.mean([r["returns"] for r in saved["results"]])
    assert mean[0] == mean[1] and math.isclose(mean[0], expected, rel_tol=1e-12)
    assert (tmp_path / "eval" / "curves.png").stat().st_size > 0
    # an oracle of more tasks than evaluated: its first ones, the same tasks
    two = evaluate.evaluate(evaluate.Evaluate(runs=(str(nav_run),), tasks=2, steps=0,
                                              episodes=2, oracle=str(out / "returns.json"),
                                              out=str(tmp_path / "eval2")))
    assert math.isclose(two["methods"][label]["return"]["mean"][0],
                        np.mean([r["returns"] for r in saved["results"][:2]]), rel_tol=1e-12)


def test_trpo_oracle(tmp_path):
    oracle.main(["nav2d", "--algo", "trpo", "--tasks", "2", "--env-steps", "64", "--n-envs",
                 "4", "--n-steps", "16", "--batch-size", "32", "--eval-episodes", "2",
                 "--no-save-models", "--out", str(tmp_path / "trpo")])
    saved = json.loads((tmp_path / "trpo" / "returns.json").read_text())
    assert saved["oracle"]["algo"] == "trpo" and len(saved["results"]) == 2
    assert not list((tmp_path / "trpo").glob("*.zip"))


# --- bad input: one line naming the option or file and the fix --------------------------


def _one_line_error(error, match, call, *args, **kwargs):
    with pytest.raises(error, match=match) as e:
        call(*args, **kwargs)
    assert "\n" not in str(e.value)


def test_export_bad_policies_are_one_line_errors(tmp_path):
    env = gym.make(NAV)
    torch.manual_seed(0)
    categorical = params_of(CategoricalMLPPolicy(2, 4))
    _one_line_error(ConfigError, "categorical", to_sb3, categorical, env.observation_space,
                    env.action_space)
    _one_line_error(ConfigError, "categorical", to_sb3, params_of(_policy()),
                    env.observation_space, gym.spaces.Discrete(4))
    cheetah = gym.make(CHEETAH)
    _one_line_error(ConfigError, "its own env's spaces", to_sb3, params_of(_policy()),
                    cheetah.observation_space, cheetah.action_space)
    _one_line_error(ConfigError, "unknown nonlinearity", to_sb3, params_of(_policy()),
                    env.observation_space, env.action_space, "gelu")
    broken = {**params_of(_policy()), "log_std": torch.tensor([float("nan"), 0.0])}
    _one_line_error(ConfigError, "NaN", to_sb3, broken, env.observation_space, env.action_space)
    _one_line_error(ConfigError, "GaussianMLPPolicy's params", to_sb3, {"w": torch.zeros(2)},
                    env.observation_space, env.action_space)

    model = to_sb3(params_of(_policy()), env.observation_space, env.action_space)
    _one_line_error(ConfigError, "does not match ours", from_sb3, model,
                    _policy((100, 100), "relu"))
    _one_line_error(ConfigError, "does not match ours", from_sb3, model,
                    _policy((64, 64), "relu"))
    discrete = PPO("MlpPolicy", "CartPole-v1", n_steps=8, batch_size=8, device="cpu")
    _one_line_error(ConfigError, "Categorical", from_sb3, discrete)
    sde = A2C("MlpPolicy", SB3VecEnv(NAV, 2), use_sde=True, device="cpu")
    _one_line_error(ConfigError, "Gaussian", from_sb3, sde)

    (tmp_path / "notes.zip").write_text("not a model")
    _one_line_error(CheckpointError, "not a stable-baselines3 model", from_sb3,
                    tmp_path / "notes.zip")
    torch.save({"params": params_of(_policy())}, tmp_path / "checkpoint.pt")
    _one_line_error(CheckpointError, "not a stable-baselines3 model", from_sb3,
                    tmp_path / "checkpoint.pt")
    _one_line_error(CheckpointError, "no SB3 model", from_sb3, tmp_path / "missing.zip")
    _one_line_error(ConfigError, "from_sb3 takes", from_sb3, params_of(_policy()))


@pytest.mark.parametrize("argv, match", [
    (["sinusoid"], "preset"),
    (["nav2d", "--env-steps", "0"], "env_steps must be a positive integer"),
    (["nav2d", "--algo", "sac"], "--algo"),
    (["nav2d", "--n-envs", "2", "--n-steps", "4", "--batch-size", "64"], "--batch-size 64"),
    (["nav2d", "--tasks", "1"], "--tasks must be an integer >= 2"),
    (["nav2d", "--learning-rate", "-1"], "learning_rate must be a positive number"),
    (["nav2d", "--resume", "--out", "{tmp}/none"], "holds no oracle run"),
])
def test_oracle_options(argv, match, one_clear_line, tmp_path):
    one_clear_line(oracle.main, [a.format(tmp=tmp_path) for a in argv], match)


def test_oracle_files_given_to_evaluate(nav_run, tmp_path, one_clear_line):
    out = tmp_path / "o"
    small = ["--tasks", "2", "--env-steps", "32", "--n-envs", "2", "--n-steps", "16",
             "--batch-size", "16", "--eval-episodes", "2", "--no-save-models"]
    oracle.main(["nav2d", *small, "--out", str(out)])
    one_clear_line(oracle.main, ["nav2d", *small, "--out", str(out)], "already holds")
    one_clear_line(oracle.main, ["nav2d", *small[:2], "--env-steps", "64", *small[4:],
                                 "--out", str(out), "--resume"], "oracle differ")
    run = [str(nav_run), "--tasks", "2", "--steps", "0", "--episodes", "2", "--out",
           str(tmp_path / "e")]
    one_clear_line(evaluate.main, [*run, "--oracle", str(tmp_path / "none")],
                   "no oracle returns")
    (tmp_path / "x.json").write_text("{}")
    one_clear_line(evaluate.main, [*run, "--oracle", str(tmp_path / "x.json")],
                   "not an oracle's returns.json")
    one_clear_line(evaluate.main, [*run, "--seed", "7", "--oracle", str(out)],
                   "same --seed as metarl-evaluate")
    data = json.loads((out / "returns.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({**data, "env_id": CHEETAH}))
    one_clear_line(evaluate.main, [*run, "--oracle", str(tmp_path / "c.json")],
                   "run metarl-oracle with the runs' preset")
    (tmp_path / "one.json").write_text(json.dumps({**data, "results": data["results"][:1]}))
    one_clear_line(evaluate.main, [*run, "--oracle", str(tmp_path / "one.json")],
                   "an interval needs 2")
