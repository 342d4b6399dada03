"""MAML-TRPO, MAML-REINFORCE and the RL pretraining baseline end to end: every environment,
resume, evaluation, bad input."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any, NamedTuple

import pytest
import torch

from metarl.algos import of_kind
from metarl.algos.maml_trpo import MAMLTRPO, TrustRegion, curvature_kl, old_outputs, trpo_step
from metarl.algos.meta_rl import (
    Problem,
    Rollouts,
    Stopwatch,
    all_cores,
    iteration_scalars,
    torch_threads,
)
from metarl.checkpoint import load_checkpoint
from metarl.config import RLConfig
from metarl.envs import ENV_IDS
from metarl.episodes import Episodes
from metarl.errors import CheckpointError, ConfigError
from metarl.params import Params, params_of
from metarl.policy_gradient import PolicyBatch, PolicyLosses, adapt_chain, mean_over_tasks
from metarl.scripts import evaluate, train
from metarl.scripts.experiments import MetaRL
from metarl.scripts.presets import PRESETS
from metarl.trpo import hessian_vector_product

FAMILIES = [i for i in ENV_IDS if "H200" not in i]  # the H200 ids share their family's code
ALGORITHMS = {cls.name: cls for cls in of_kind("rl")}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path, env_id="metarl/Navigation2D-v0", algo="maml-trpo", algo_config=None,
            **kw):
    rl = RLConfig(env_id=env_id, **{"iterations": 2, "meta_batch": 2, "episodes": 2,
                                    "horizon": 8, "checkpoint_every": 1, **kw})
    return MetaRL(algo=algo_config or ALGORITHMS[algo](), rl=rl,
                  out=str(tmp_path / f"{env_id.split('/')[-1]}-{algo}"))


@pytest.mark.parametrize("algo", ALGORITHMS)
@pytest.mark.parametrize("env_id", FAMILIES)
def test_two_meta_iterations_on_every_environment(tmp_path, env_id, algo, scalars):
    path = train.train(_config(tmp_path, env_id, algo), progress=False)
    state = load_checkpoint(path)["state"]
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["params"].values())
    logged = scalars(path.parent)
    assert {"returns/before_adaptation", "returns/after_adaptation", "time/sampling_s",
            "time/env_steps_per_s", "time/outer_step_s", "episodes/length_before_adaptation",
            "episodes/length_after_adaptation"} <= set(logged)
    assert all(math.isfinite(v) for v in logged.values())


def test_iteration_scalars_log_the_mean_episode_length_before_and_after_adaptation():
    def rollouts(lengths):  # one episode per task, each ending after its length
        steps = torch.arange(4.0)[:, None, None]
        mask = (steps < torch.tensor(lengths, dtype=torch.float32)[None, :, None]).float()
        zeros = torch.zeros(4, len(lengths), 1)
        episodes = Episodes(zeros[..., None], zeros[..., None], zeros, zeros, mask)
        return Rollouts(None, torch.zeros(len(lengths)), int(mask.sum()), 0.1, episodes, 0)

    logged = iteration_scalars([rollouts([4, 2])], rollouts([1, 2]), Stopwatch())
    assert logged["episodes/length_before_adaptation"] == 3.0
    assert logged["episodes/length_after_adaptation"] == 1.5


class NavBatch(NamedTuple):
    theta: Params
    losses: PolicyLosses
    supports: list[PolicyBatch]
    query: PolicyBatch
    rules: list[Any]


def _nav_batch(inner_lr, seed=0) -> NavBatch:
    cfg = RLConfig(meta_batch=4, episodes=5, horizon=20, hidden=(16, 16), inner_lr=inner_lr,
                   seed=seed)
    problem = Problem.build(cfg)
    theta = params_of(problem.policy)
    tasks = problem.sample_tasks(4, seed)
    rules = problem.rules()
    supports, adapted = problem.adapt(theta, tasks, seed, rules)
    query = problem.rollouts(adapted, tasks, seed + 1)
    return NavBatch(theta, problem.losses, [s.batch for s in supports], query.batch, rules)


def _adapt(batch: NavBatch, theta: Params, supports=None, num_tasks=4) -> Params:
    return adapt_chain(batch.losses.reinforce, theta,
                       batch.supports if supports is None else supports, batch.rules,
                       num_tasks)[0]


def _kl_through_adaptation(batch: NavBatch, before: Params) -> float:
    """The mean KL between the policies adapted from ``before`` and from the current theta,
    measured afresh through the (second-order) inner step."""
    with torch.no_grad():
        old, new = _adapt(batch, before), _adapt(batch, batch.theta)
        return mean_over_tasks(batch.losses.kl, new, batch.query,
                               old_outputs(batch.losses, old, batch.query)).item()


def _trpo_step(batch: NavBatch, trust: TrustRegion) -> dict[str, float]:
    return trpo_step(trust, batch.losses, batch.theta, batch.supports, batch.query, batch.rules)


@pytest.mark.parametrize("curvature", ["double-backward", "gauss-newton"])
def test_trpo_step_respects_the_kl_bound_and_improves_the_surrogate(curvature):
    trust = TrustRegion(max_kl=0.01, curvature=curvature)
    batch = _nav_batch(inner_lr=0.1)
    before = {k: v.detach().clone() for k, v in batch.theta.items()}
    stats = _trpo_step(batch, trust)
    assert stats["trpo/accepted"] == 1.0
    assert stats["loss/surrogate_after"] < stats["loss/surrogate_before"]
    assert 0 < stats["trpo/kl"] <= trust.max_kl
    assert any(not torch.equal(before[k], batch.theta[k]) for k in batch.theta)
    # The KL measured independently agrees with what the line search accepted.
    assert math.isclose(_kl_through_adaptation(batch, before), stats["trpo/kl"], rel_tol=1e-4)


@pytest.mark.parametrize("later_lr_scale", [0.0, 0.5])
def test_later_inner_steps_use_their_own_step_size(later_lr_scale):
    """Finn et al. evaluate with half the step size after the first step: the trajectories
    after two steps must come from params adapted with ``inner_lr`` and then the later rate,
    the same chain of inner steps the outer step differentiates through."""
    cfg = RLConfig(meta_batch=3, episodes=4, horizon=10, hidden=(8,), inner_lr=0.1)
    problem = Problem.build(cfg)
    theta = params_of(problem.policy)
    tasks = problem.sample_tasks(3, 0)
    rules = problem.rules(2, later_lr_scale)
    assert [r.lr for r in rules] == [0.1, 0.1 * later_lr_scale]
    supports, adapted = problem.adapt(theta, tasks, 0, rules)
    query = problem.rollouts(adapted, tasks, 2).batch
    second, _ = adapt_chain(problem.losses.reinforce, theta, [s.batch for s in supports], rules,
                            3)
    with torch.no_grad():
        logp = torch.func.vmap(lambda p, b: problem.losses.distribution.log_prob(
            problem.losses.outputs(p, b), b.actions))(second, query)
    torch.testing.assert_close(logp * query.mask, query.old_log_probs, rtol=1e-5, atol=1e-5)


def test_first_order_curvature_is_exact_without_adaptation():
    """With inner_lr -> 0 the adapted params are theta itself, so the Fisher of the adapted
    policies is the exact KL Hessian; with inner_lr = 0.1 the two differ (the Jacobian of the
    inner step is dropped)."""
    gaps = []
    for inner_lr in (1e-9, 0.1):
        batch = _nav_batch(inner_lr=inner_lr)
        leaves = list(batch.theta.values())
        v = torch.randn(sum(x.numel() for x in leaves), generator=torch.Generator().manual_seed(1))
        adapted = _adapt(batch, batch.theta)
        reference = old_outputs(batch.losses, adapted, batch.query)
        products = []
        for cg_first_order in (False, True):
            kl = curvature_kl(TrustRegion(cg_first_order=cg_first_order), batch.losses,
                              batch.theta, batch.supports, batch.query, adapted, reference,
                              lambda s, n, p, b=batch: _adapt(b, p, s, n))
            products.append(hessian_vector_product(kl, leaves)(v))
        gaps.append(((products[0] - products[1]).norm() / products[0].norm()).item())
    assert gaps[0] < 1e-5 < 1e-3 < gaps[1]


@pytest.mark.parametrize("cg_first_order", [False, True])
def test_subsampled_curvature_is_the_exact_curvature_of_a_subset_of_tasks(cg_first_order):
    """``cg_subsample`` keeps whole tasks: its Hessian-vector product is the mean of those
    tasks' own products, each adapted alone on all its support episodes (a per-task loop)."""
    batch = _nav_batch(inner_lr=0.1)
    leaves = list(batch.theta.values())
    v = torch.randn(sum(x.numel() for x in leaves), generator=torch.Generator().manual_seed(2))

    def curvature(trust, supports, query, num_tasks):
        adapted = _adapt(batch, batch.theta, supports, num_tasks)
        kl = curvature_kl(trust, batch.losses, batch.theta, supports, query, adapted,
                          old_outputs(batch.losses, adapted, query),
                          lambda s, n, p: _adapt(batch, p, s, n))
        return hessian_vector_product(kl, leaves)(v)

    trust = TrustRegion(cg_subsample=0.5, cg_first_order=cg_first_order)
    subsampled = curvature(trust, batch.supports, batch.query, 4)
    per_task = []
    for i in range(2):  # ceil(0.5 * 4) tasks
        one = slice(i, i + 1)
        per_task.append(curvature(replace(trust, cg_subsample=1.0),
                                  [s.select_tasks(one) for s in batch.supports],
                                  batch.query.select_tasks(one), 1))
    torch.testing.assert_close(subsampled, torch.stack(per_task).mean(0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cg_subsample", [1.0, 0.4])
def test_first_order_curvature_step_respects_the_exact_kl_bound(cg_subsample):
    batch = _nav_batch(inner_lr=0.1)
    trust = TrustRegion(cg_first_order=True, cg_subsample=cg_subsample)
    before = {k: v.detach().clone() for k, v in batch.theta.items()}
    stats = _trpo_step(batch, trust)
    assert stats["trpo/accepted"] == 1.0
    assert stats["loss/surrogate_after"] < stats["loss/surrogate_before"]
    assert 0 < _kl_through_adaptation(batch, before) <= trust.max_kl


def test_outer_step_threads_are_scoped():
    before = torch.get_num_threads()
    with torch_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="outer_torch_threads"):
        RLConfig(outer_torch_threads=0)


def test_the_outer_step_uses_every_core_unless_omp_num_threads_says_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert all_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the README's advice on a shared machine
    assert all_cores() == 1
    problem = Problem.build(RLConfig(iterations=1, meta_batch=2, episodes=2, horizon=5))
    with problem.outer_step():
        assert torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert all_cores() == len(os.sched_getaffinity(0))


def test_trpo_with_subsampled_curvature_still_respects_the_bound(tmp_path, scalars):
    config = _config(tmp_path, algo_config=MAMLTRPO(trpo=TrustRegion(cg_subsample=0.5)),
                     episodes=4)
    path = train.train(config, progress=False)
    assert scalars(path.parent)["trpo/kl"] <= 0.01


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_resume_equals_an_uninterrupted_run(tmp_path, algo, resumed_equals_uninterrupted):
    resumed_equals_uninterrupted(_config(tmp_path / "full", algo=algo, iterations=3),
                                 _config(tmp_path / "part", algo=algo, iterations=3), crash_at=2)


def test_evaluate_reports_every_step_beside_random_init(tmp_path):
    runs = [train.train(_config(tmp_path, algo=a), progress=False) for a in ("maml-trpo",
                                                                             "pretrain")]
    summary = evaluate.evaluate(evaluate.Evaluate(runs=tuple(str(r.parent) for r in runs),
                                                  tasks=3, steps=2, episodes=2,
                                                  out=str(tmp_path / "eval")))
    assert set(summary["methods"]) == {"maml-trpo", "pretrain", "random init"}
    for r in summary["methods"].values():
        assert len(r["return"]["mean"]) == 3 and all(math.isfinite(m) for m in r["return"]["mean"])
    assert summary["published"]  # the paper's navigation curve is drawn beside ours
    assert (tmp_path / "eval" / "curves.png").stat().st_size > 0


def test_evaluate_inner_lr_sets_the_first_step_for_every_run(tmp_path):
    run = str(train.train(_config(tmp_path), progress=False).parent)

    def returns(**kw):
        summary = evaluate.evaluate(evaluate.Evaluate(runs=(run,), tasks=3, steps=2, episodes=2,
                                                      out=str(tmp_path / "eval"), **kw))
        return summary["methods"]["maml-trpo"]["return"]["mean"]

    own = returns()
    assert returns(inner_lr=RLConfig(env_id="metarl/Navigation2D-v0").inner_lr) == own
    smaller = returns(inner_lr=0.01)
    assert smaller[0] == own[0] and smaller[1:] != own[1:]


def test_mismatched_checkpoints_and_configs_are_refused(tmp_path):
    nav = train.train(_config(tmp_path), progress=False)
    cheetah = train.train(_config(tmp_path, "metarl/HalfCheetahVel-v0"), progress=False)
    with pytest.raises(ConfigError, match="different tasks"):
        evaluate.evaluate(evaluate.Evaluate(runs=(str(nav.parent), str(cheetah.parent)),
                                            tasks=2, out=str(tmp_path / "e")))
    other_env = replace(_config(tmp_path), resume=True,
                        rl=replace(_config(tmp_path).rl, env_id="metarl/AntDir-v0"))
    with pytest.raises(CheckpointError, match="env_id"):
        train.train(other_env, progress=False)
    with pytest.raises(ConfigError, match="unknown env id"):
        train.train(_config(tmp_path / "x", env_id="metarl/Nope-v0"), progress=False)
    with pytest.raises(ConfigError, match="cg_subsample"):
        TrustRegion(cg_subsample=0.0)


@pytest.mark.parametrize("argv, match", [
    (["no-such-preset"], "Available subcommands"),
    (["nav2d", "--max-kl", "abc"], "--max-kl"),
    (["nav2d", "--not-a-key", "1"], "Unrecognized options: --not-a-key"),
    (["nav2d", "ppo"], "Unrecognized options: ppo"),
    (["nav2d", "--algo", "maml-reinforce"], "the algorithm is a subcommand"),
    (["nav2d", "--pretrain"], "the pretraining baseline is an algorithm"),
    (["nav2d", "--inner-lr", "-0.1"], "inner_lr must be a positive number"),
    (["nav2d", "maml-reinforce", "--outer-lr", "0"], "outer_lr must be a positive number"),
])
def test_cli_bad_input_is_one_line(argv, match, capsys):
    with pytest.raises(SystemExit):
        train.main(argv)
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1


def test_cli_picks_the_algorithm_and_its_options(monkeypatch):
    """The algorithm is a subcommand after the preset; its options follow it, or the preset
    alone when they belong to the preset's default algorithm."""
    seen = []
    monkeypatch.setattr(train, "train", lambda config: seen.append(config) or "")
    train.main(["nav2d", "--cg-subsample", "0.2", "--iterations", "7"])
    train.main(["nav2d", "maml-reinforce", "--outer-lr", "3e-4", "--first-order"])
    train.main(["cheetah-dir-paper", "pretrain", "--max-kl", "0.02"])
    trpo, reinforce, pretrain = seen
    assert trpo.algo == MAMLTRPO(trpo=TrustRegion(cg_subsample=0.2)) and trpo.rl.iterations == 7
    assert reinforce.algo == ALGORITHMS["maml-reinforce"](outer_lr=3e-4, first_order=True)
    assert pretrain.algo.trpo.max_kl == 0.02 and pretrain.rl.hidden == (100, 100)
    assert pretrain.run_dir == "runs/HalfCheetahDirH200-pretrain"


def test_help_lists_every_algorithm_with_its_options(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    out = capsys.readouterr().out
    for cls in (*of_kind("supervised"), *of_kind("rl")):
        assert cls.name in out, cls.name
    for option in ("--outer-lr", "--epsilon", "--first-order", "--max-kl", "--cg-subsample"):
        assert option in out, option


def test_presets_carry_the_published_settings():
    nav, cheetah = PRESETS["nav2d"][1].rl, PRESETS["cheetah-dir-paper"][1].rl
    assert (nav.meta_batch, nav.episodes, nav.inner_lr, nav.iterations) == (20, 20, 0.1, 500)
    assert cheetah.meta_batch == 40 and cheetah.env_id.endswith("H200-v0")
    assert cheetah.hidden == (100, 100) and cheetah.nonlinearity == "relu"
    trust = PRESETS["cheetah-dir-paper"][1].algo.trpo
    assert (trust.max_kl, trust.ls_ratio, trust.ls_steps, trust.cg_iters) == (0.01, 0.8, 15, 10)


@pytest.mark.slow
def test_navigation_returns_improve_after_adaptation(tmp_path):
    """A short MAML-TRPO run on 2D navigation: one inner step raises the return."""
    config = _config(tmp_path, iterations=40, meta_batch=10, episodes=10, horizon=100,
                     checkpoint_every=40)
    path = train.train(config, progress=False)
    summary = evaluate.evaluate(evaluate.Evaluate(runs=(str(path.parent),), tasks=20, steps=1,
                                                  out=str(tmp_path / "e")))
    maml = summary["methods"]["maml-trpo"]["return"]["mean"]
    assert maml[1] > maml[0] + 3
