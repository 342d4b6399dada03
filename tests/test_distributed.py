"""Scaling out: the sampler's per-instance and per-task random streams (a meta-batch sampled in
shards is the meta-batch sampled whole), Ray actors (identical episodes, a killed actor does
not hang the run), torchrun meta-batches (the same meta-gradient as one process, rank 0 alone
writes, resume), and the bad input of each.

Run as a script under torchrun, this file is also the worker of the torchrun test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
import torch.utils._pytree as pytree

from metarl import distributed
from metarl.adapt import adapt_tasks, task_losses
from metarl.algos.reptile import Reptile
from metarl.checkpoint import load_checkpoint
from metarl.config import MetaConfig, RLConfig
from metarl.envs import make_batched
from metarl.envs.omniglot import DRAWINGS, Omniglot, OmniglotFamily
from metarl.envs.sinusoid import Sinusoid
from metarl.errors import ConfigError
from metarl.learner import Learner
from metarl.params import params_of
from metarl.policies import make_policy
from metarl.rules import SGD, MetaSGD
from metarl.sampler import sample, task_granularity
from metarl.scripts import train
from metarl.scripts.experiments import MetaRL
from metarl.scripts.presets import PRESETS
from metarl.tasks import loss_fn

CHEETAH, NAV = "metarl/HalfCheetahVel-v0", "metarl/Navigation2D-v0"
FIELDS = ("observations", "actions", "rewards", "log_probs", "mask")


def _policy_and_params(env_id: str, n: int, hidden=(64, 64), nonlinearity="tanh",
                       shared=False):
    env = gymnasium.make(env_id).unwrapped
    torch.manual_seed(0)
    policy = make_policy(env.observation_space.shape[0], env.action_space.shape[0], hidden,
                         nonlinearity)
    if shared:  # theta expanded, as in the first inner step's phase
        params = {k: v.detach().expand(n, *v.shape) for k, v in params_of(policy).items()}
    else:  # per-task adapted params
        params = {k: v.detach() + 0.05 * torch.randn(n, *v.shape)
                  for k, v in params_of(policy).items()}
    return env.sample_tasks(n, np.random.default_rng(1)), policy, params


def _assert_same_episodes(a, b) -> None:
    for field in FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert a.tasks == b.tasks


@pytest.mark.parametrize("env_id, hidden, nonlinearity, episodes, shared", [
    (CHEETAH, (64, 64), "tanh", 3, False),
    (CHEETAH, (100, 100), "relu", 20, True),
    (CHEETAH, (100, 100), "tanh", 5, False),
    (NAV, (64, 64), "tanh", 1, False),
    (NAV, (33,), "relu", 3, True),
])
def test_a_meta_batch_sampled_in_shards_is_the_meta_batch(env_id, hidden, nonlinearity,
                                                          episodes, shared, one_torch_thread):
    """Each instance resets with its own seed and each task draws its own noise, so tasks
    a..b sampled alone give exactly their part of the whole meta-batch's episodes."""
    n, horizon = 7, 12
    tasks, policy, params = _policy_and_params(env_id, n, hidden, nonlinearity, shared)
    whole = sample(policy, params, tasks, make_batched(env_id, n * episodes), episodes, horizon,
                   seed=5)
    unit = task_granularity(policy, episodes)
    for parts in (2, 3, n):
        pieces = [sample(policy, {k: v[s] for k, v in params.items()}, tasks[s],
                         make_batched(env_id, (s.stop - s.start) * episodes), episodes,
                         horizon, seed=5, first_task=s.start, meta_batch=n)
                  for s in distributed.shards(n, parts, unit)]
        for field in FIELDS:
            joined = torch.cat([getattr(p, field) for p in pieces], 1)
            assert torch.equal(joined, getattr(whole, field)), (parts, field)
    # and the streams are really per task: another task's params change only that task
    other = {k: v.clone() for k, v in params.items()}
    other["log_std"][0] += 0.5
    changed = sample(policy, other, tasks, make_batched(env_id, n * episodes), episodes,
                     horizon, seed=5)
    assert not torch.equal(changed.actions[:, 0], whole.actions[:, 0])
    assert torch.equal(changed.actions[:, 1:], whole.actions[:, 1:])


def test_shards_and_their_granularity():
    assert [(s.start, s.stop) for s in distributed.shards(40, 3)] == [(0, 14), (14, 27),
                                                                       (27, 40)]
    assert [(s.start, s.stop) for s in distributed.shards(10, 3, unit=4)] == [(0, 4), (4, 8),
                                                                              (8, 10)]
    assert len(distributed.shards(5, 8)) == 5  # never an empty shard
    policy = make_policy(17, 6, (64, 64), "tanh")
    assert task_granularity(policy, 20) == 1 and task_granularity(policy, 1) == 1
    assert task_granularity(make_policy(17, 6, (100, 100), "relu"), 20) == 2
    assert task_granularity(make_policy(17, 6, (100, 100), "relu"), 3) == 8


# --- Ray ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for this module, shut down after it; 4 logical CPUs on the machine's 2
    cores, so that a run's 2 actors start beside the fixture's 2 (idle) ones."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, logging_level="ERROR",
             object_store_memory=80 * 2**20)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def cheetah_on_ray(ray_local):
    """A Ray sampler of 2 actors for HalfCheetahVel meta-batches of 5 tasks x 3 episodes."""
    from metarl.envs.ray_sampler import RaySampler

    tasks, policy, params = _policy_and_params(CHEETAH, 5)
    sampler = RaySampler(CHEETAH, policy, 3, actors=2, timeout=120)
    local = make_batched(CHEETAH, 15)
    expected = {seed: sample(policy, params, tasks, local, 3, 20, seed=seed)
                for seed in (1, 2, 3, 4)}
    yield sampler, tasks, params, expected
    sampler.close()


def test_ray_actors_give_the_local_samplers_episodes(cheetah_on_ray, one_torch_thread):
    sampler, tasks, params, expected = cheetah_on_ray
    assert len(sampler.actors) == 2
    _assert_same_episodes(sampler.sample(params, tasks, 20, seed=1), expected[1])
    # fewer tasks than actors: one actor samples them, still the same episodes
    few = sample(sampler._policy, {k: v[:1] for k, v in params.items()}, tasks[:1],
                 make_batched(CHEETAH, 3), 3, 20, seed=1)
    _assert_same_episodes(sampler.sample({k: v[:1] for k, v in params.items()}, tasks[:1], 20,
                                         seed=1), few)


def test_a_killed_actor_is_restarted_and_its_shard_sampled_again(cheetah_on_ray):
    ray = pytest.importorskip("ray")
    sampler, tasks, params, expected = cheetah_on_ray
    # Killed by the system mid-phase (as the OOM killer would): Ray restarts it and retries.
    pid = ray.get(sampler.actors[0].pid.remote())
    calls = sampler.submit(params, tasks, 20, seed=2)
    os.kill(pid, signal.SIGKILL)
    _assert_same_episodes(sampler.gather(calls), expected[2])
    _assert_same_episodes(sampler.sample(params, tasks, 20, seed=1), expected[1])  # restarted
    assert ray.get(sampler.actors[0].pid.remote()) != pid
    # Dead for good (no restart left): the driver starts another actor for its shard.
    ray.kill(sampler.actors[1], no_restart=True)
    _assert_same_episodes(sampler.sample(params, tasks, 20, seed=3), expected[3])


def test_a_dead_or_silent_actor_fails_the_iteration_in_one_line(cheetah_on_ray, monkeypatch):
    ray = pytest.importorskip("ray")
    from metarl.envs.ray_sampler import RaySamplerError

    sampler, tasks, params, expected = cheetah_on_ray
    monkeypatch.setattr(sampler, "timeout", 1e-3)
    start = time.monotonic()
    with pytest.raises(RaySamplerError, match=r"sent no episodes within 0.001 s"):
        sampler.sample(params, tasks, 20, seed=4)
    assert time.monotonic() - start < 10
    monkeypatch.setattr(sampler, "timeout", 120)

    def dead_actor():  # its replacement dies too
        actor = sampler._remote.remote(CHEETAH, sampler._policy, 3)
        ray.kill(actor, no_restart=True)
        return actor

    monkeypatch.setattr(sampler, "_start", dead_actor)
    ray.kill(sampler.actors[0], no_restart=True)
    with pytest.raises(RaySamplerError, match=r"actor 0 \(tasks 0\.\.2\) died again") as error:
        sampler.sample(params, tasks, 20, seed=4)
    assert "\n" not in str(error.value)
    monkeypatch.undo()
    _assert_same_episodes(sampler.sample(params, tasks, 20, seed=4), expected[4])


def test_training_on_ray_gives_the_local_run(ray_local, tmp_path):
    """--sampler ray with 2 actors: the same checkpoint as sampling in the process; and a
    local run resumes on Ray."""
    rl = RLConfig(iterations=2, meta_batch=4, episodes=2, horizon=8, checkpoint_every=1)
    local = train.train(MetaRL(rl=rl, out=str(tmp_path / "local")), progress=False)
    remote = train.train(MetaRL(rl=replace(rl, sampler="ray", ray_actors=2),
                                out=str(tmp_path / "ray")), progress=False)
    a, b = load_checkpoint(local)["state"]["params"], load_checkpoint(remote)["state"]["params"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    half = train.train(MetaRL(rl=replace(rl, iterations=1), out=str(tmp_path / "half")),
                       progress=False)
    resumed = train.train(MetaRL(rl=replace(rl, sampler="ray", ray_actors=2),
                                 out=str(half.parent), resume=True), progress=False)
    c = load_checkpoint(resumed)["state"]["params"]
    assert all(torch.equal(a[k], c[k]) for k in a)


# --- torch.distributed ----------------------------------------------------------------------

TINY_OMNIGLOT = Omniglot(ways=3, shots=1, query=2, train_characters=20, hidden=8)


def _tiny_omniglot() -> OmniglotFamily:
    """Omniglot's sampler and Conv4 on 30 random characters (no data set needed)."""
    images = torch.randint(0, 256, (30, DRAWINGS, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    return OmniglotFamily(TINY_OMNIGLOT, images, [f"images_background/A/c{i}" for i in range(30)])


def meta_step(name: str, meta_batch: int = 4) -> dict[str, torch.Tensor]:
    """One float64 MAML step (Meta-SGD for Omniglot: its rates are meta-parameters too) on
    this process's share of a meta-batch, through :func:`metarl.distributed.step` with plain
    SGD at lr 1: the meta-gradient of every tensor and the meta-parameters after the step."""
    torch.manual_seed(0)
    family = Sinusoid().build() if name == "sinusoid" else _tiny_omniglot()
    model = family.model().double()
    params = params_of(model)
    rule = SGD(0.01) if name == "sinusoid" else MetaSGD.create(params, 0.1)
    learner = Learner.create(params, rule, lambda ps: torch.optim.SGD(ps, lr=1.0), seed=3)
    mine = distributed.my_tasks(meta_batch)
    tasks = family.sample(meta_batch, learner.generator)[mine]
    tasks = pytree.tree_map(lambda t: t.double() if t.is_floating_point() else t, tasks)
    loss = loss_fn(family, model)
    adapted = adapt_tasks(loss, learner.params, tasks.support, rule=learner.rule, steps=1)
    total = distributed.step(learner, task_losses(loss, adapted, tasks.query).mean(), mine,
                             meta_batch)
    tensors = {**learner.params, **{f"rate.{k}": v for k, v in rule.parameters().items()}}
    return {"loss": total.detach(), **{f"grad.{k}": v.grad for k, v in tensors.items()},
            **{f"after.{k}": v.detach() for k, v in tensors.items()}}


def _sinusoid_run(out: Path, iterations: int, resume: bool = False, algo=None):
    preset = PRESETS["sinusoid"][1]
    return replace(preset, out=str(out), resume=resume, algo=algo or preset.algo,
                   meta=MetaConfig(iterations=iterations, meta_batch=5, log_every=1,
                                   checkpoint_every=2))


def worker(out: Path) -> None:
    """Under torchrun: the meta-steps, then a 3-iteration run, and a 2-iteration run resumed
    to 3; rank 0 saves what the test compares."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    steps = {name: meta_step(name) for name in ("sinusoid", "omniglot")}
    whole = train.train(_sinusoid_run(out / "whole", 3), progress=False)
    train.train(_sinusoid_run(out / "resumed", 2), progress=False)
    resumed = train.train(_sinusoid_run(out / "resumed", 3, resume=True), progress=False)
    reptile = train.train(_sinusoid_run(out / "reptile", 3, algo=Reptile()), progress=False)
    rank, size = distributed.world()
    if rank == 0:
        torch.save({"size": size, "steps": steps, "whole": load_checkpoint(whole)["state"],
                    "resumed": load_checkpoint(resumed)["state"],
                    "reptile": load_checkpoint(reptile)["state"]}, out / "worker.pt")
    torch.distributed.destroy_process_group()


def test_torchrun_gives_one_process_meta_gradients_and_rank_0_writes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", __file__, str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    got = torch.load(tmp_path / "worker.pt", weights_only=False)
    assert got["size"] == 2
    for name in ("sinusoid", "omniglot"):  # float64: equal to round-off
        one = meta_step(name)
        assert set(one) == set(got["steps"][name])
        for key, value in one.items():
            torch.testing.assert_close(got["steps"][name][key], value, rtol=1e-12, atol=1e-14,
                                       msg=f"{name} {key}")
    # The same runs in one process: the same meta-parameters up to float32 round-off.
    for run, algo in (("whole", None), ("reptile", Reptile())):
        alone = load_checkpoint(train.train(_sinusoid_run(tmp_path / f"alone-{run}", 3,
                                                          algo=algo), progress=False))["state"]
        for k, v in alone["params"].items():
            torch.testing.assert_close(got[run]["params"][k], v, rtol=1e-4, atol=1e-5,
                                       msg=f"{run} {k}")
    assert got["whole"]["iteration"] == 3
    # Resuming under torchrun continues exactly.
    for k, v in got["whole"]["params"].items():
        assert torch.equal(got["resumed"]["params"][k], v), k
    # Rank 0 alone wrote each run folder: one event file, one config, one checkpoint.
    for run in ("whole", "resumed", "reptile"):
        files = sorted(p.name for p in (tmp_path / run).iterdir())
        events = [f for f in files if f.startswith("events.out.tfevents")]
        assert len(events) == (2 if run == "resumed" else 1), files  # one per launch
        assert set(files) - set(events) == {"config.json", "checkpoint.pt"}, files


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, match", [
    (["nav2d", "--sampler", "ray", "--ray-address", "127.0.0.1:1"],
     "--ray-address 127.0.0.1:1: no Ray cluster answers"),
    (["nav2d", "--sampler", "ray", "--ray-address", "localhost:port"], "is not an address"),
    (["nav2d", "--sampler", "ray", "--ray-actors", "30", "--meta-batch", "4"], "ray_actors"),
    (["nav2d", "--sampler", "ray", "--ray-actors", "0"], "ray_actors"),
    (["nav2d", "--ray-actors", "2"], "apply to --sampler ray"),
    (["nav2d", "--sampler", "dask"], "--sampler"),
])
def test_ray_options_bad_input_is_one_line(argv, match, one_clear_line, tmp_path):
    if "--ray-address" in argv:
        pytest.importorskip("ray")
    one_clear_line(train.main, [*argv, "--out", str(tmp_path / "run")], match)
    assert not (tmp_path / "run").exists()


def test_sampler_ray_without_ray_is_one_line(one_clear_line, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as without the extra
    one_clear_line(train.main, ["nav2d", "--sampler", "ray", "--out", str(tmp_path / "run")],
                   "pip install 'metarl[ray]'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, match", [
    (["nav2d"], "maml-trpo trains in one process"),
    (["omniglot-5w1s", "protonets"], "protonets trains in one process"),
])
def test_torchrun_of_an_algorithm_that_does_not_split_is_one_line(argv, match, one_clear_line,
                                                                   monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    one_clear_line(train.main, [*argv, "--out", str(tmp_path / "run")], match)


def test_more_processes_than_tasks_is_one_line(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: (0, 8))
    with pytest.raises(ConfigError, match="8 processes for a meta-batch of 5 tasks; each needs "
                                          "at least one task: lower --nproc-per-node"):
        distributed.my_tasks(5)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
