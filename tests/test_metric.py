"""Metric meta-learners (Prototypical and Matching Networks) and the evaluation seam they use:
hand-checked logits and attention, vmap over tasks against a per-task loop, training with more
ways than testing, the pretraining baseline over all meta-training classes, and bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from metarl.adapt import adapt
from metarl.algos.matching_nets import MatchingNets, cosine_attention, matching_log_probs
from metarl.algos.pretrain import Pretrain
from metarl.algos.protonets import ProtoNets, proto_logits, prototypes
from metarl.algos.supervised import at_test, build, training_family
from metarl.config import MetaConfig
from metarl.conv4 import Conv4
from metarl.envs.omniglot import DRAWINGS, Omniglot, load
from metarl.evaluation import finetune_curve
from metarl.params import forward_fn, params_of
from metarl.rules import SGD, SGDOn
from metarl.scripts import evaluate, train
from metarl.scripts.presets import PRESETS

SHARED = Path(__file__).resolve().parents[2] / "shared/data/omniglot"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("omniglot-cache")
    load(SHARED, 28, str(path))
    return str(path)


def _family(cache_dir: str, **kw):
    return Omniglot(data_dir=str(SHARED), cache_dir=cache_dir, **kw).build()


def test_protonets_logits_equal_a_hand_computation():
    support_z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])
    support_y = torch.tensor([0, 0, 1, 1])
    protos = prototypes(support_z, support_y, 2)
    assert torch.equal(protos, torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # class means
    query_z = torch.tensor([[1.0, 1.0], [0.0, 2.0], [3.0, 0.0]])
    # -||q - c_k||^2 by hand: (1,1): -1, -2; (0,2): -5, 0; (3,0): -4, -13
    expected = torch.tensor([[-1.0, -2.0], [-5.0, 0.0], [-4.0, -13.0]])
    assert torch.equal(proto_logits(query_z, protos), expected)
    assert torch.equal(ProtoNets().logits(support_z, support_y, query_z, 2), expected)


def test_matching_attention_sums_to_one_and_picks_the_nearest_support_example():
    # Separable toy: three support examples pointing along three axes, labels 2, 0, 1.
    support_z = torch.tensor([[5.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
    support_y = torch.tensor([2, 0, 1])
    query_z = torch.tensor([[1.0, 0.1, 0.2], [0.1, 3.0, 0.0], [0.0, 0.3, 4.0]])
    for scale in (1.0, 10.0):
        attention = cosine_attention(query_z, support_z, scale)
        torch.testing.assert_close(attention.sum(-1), torch.ones(3))
        assert torch.equal(attention.argmax(-1), torch.tensor([0, 1, 2]))  # the nearest
        log_p = matching_log_probs(attention, support_y, 3)
        torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(3))
        assert torch.equal(log_p.argmax(-1), torch.tensor([2, 0, 1]))  # the nearest's label
    # the cosine, not the distance: a far query along an axis attends to that axis
    far = cosine_attention(torch.tensor([[0.0, 0.0, 100.0]]), support_z)
    torch.testing.assert_close(far[0], torch.softmax(torch.tensor([0.0, 0.0, 1.0]), 0))


@pytest.mark.parametrize("algo", [ProtoNets(), MatchingNets(scale=3.0)])
def test_episode_losses_vmapped_over_tasks_equal_a_per_task_loop(algo):
    torch.manual_seed(0)
    model = Conv4(None, 1, hidden=6, image_size=16).double()
    params = params_of(model)
    embed = forward_fn(model)
    tasks, ways, shots, query = 3, 3, 2, 2
    support = (torch.rand(tasks, ways * shots, 1, 16, 16, dtype=torch.float64),
               torch.arange(ways).repeat_interleave(shots).expand(tasks, -1))
    queries = (torch.rand(tasks, ways * query, 1, 16, 16, dtype=torch.float64),
               torch.arange(ways).repeat_interleave(query).expand(tasks, -1))

    class Family:  # the family's loss, as Omniglot's
        ways = 3

        @staticmethod
        def loss(forward, params, data):
            return F.cross_entropy(forward(params, data[0]), data[1])

    losses = algo.episode_losses(Family, model)(params, support, queries)
    g_vmap = torch.autograd.grad(losses.mean(), list(params.values()))
    loop = []
    for t in range(tasks):
        z = embed(params, torch.cat([support[0][t], queries[0][t]]))
        logits = algo.logits(z[: ways * shots], support[1][t], z[ways * shots:], ways)
        loop.append(F.cross_entropy(logits, queries[1][t]))
    loop = torch.stack(loop)
    g_loop = torch.autograd.grad(loop.mean(), list(params.values()))
    torch.testing.assert_close(losses, loop, rtol=0, atol=1e-12)
    for a, b in zip(g_vmap, g_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert all(g.abs().sum() > 0 for g in g_vmap)


def test_training_with_more_ways_than_testing(cache_dir):
    family = _family(cache_dir)
    algo = ProtoNets(train_ways=60, train_query=5)
    episodes = training_family(family, algo, algo.train_ways, algo.train_query)
    tasks = episodes.sample(2, torch.Generator().manual_seed(0))
    assert tasks.support[0].shape == (2, 60, 1, 28, 28) and tasks.query[1].shape == (2, 300)
    assert set(tasks.info[..., 0].flatten().tolist()) <= set(family.splits["train"].tolist())
    assert episodes.images is family.images  # the data is shared, not loaded again
    assert family.ways == 5  # the test tasks are untouched
    assert training_family(family, ProtoNets(), None, None) is family


def test_metric_methods_are_evaluated_from_the_support_set_without_steps(cache_dir):
    family = _family(cache_dir, hidden=8)
    cfg = MetaConfig(iterations=1, meta_batch=2)
    model, learner = build(family, ProtoNets(), cfg)
    test = at_test(ProtoNets(), family, model, learner)
    tasks = family.sample(6, torch.Generator().manual_seed(1), split="test")
    curve = finetune_curve(family, model, test.params, test.rule, tasks, 3, chunk=4,
                           predict=test.predict)["accuracy"]
    assert curve.shape == (6, 4) and (curve == curve[:, :1]).all()  # no steps: one value
    # the value is the accuracy of the prototype classifier of each task by hand
    embed = forward_fn(model)
    for t in range(6):
        (sx, sy), (qx, qy) = tasks[t : t + 1].support, tasks[t : t + 1].query
        z = embed(learner.params, torch.cat([sx[0], qx[0]])).detach()
        logits = proto_logits(z[5:], prototypes(z[:5], sy[0], 5))
        assert curve[t, 0].item() == pytest.approx(100 * (logits.argmax(-1) == qy[0]).float()
                                                   .mean().item())


def test_the_fine_tuning_curve_equals_adapting_afresh_for_each_number_of_steps(cache_dir):
    """Carrying the rule's state from step to step changes nothing for SGD: MAML's, Reptile's
    and Meta-SGD's evaluation figures are what they were."""
    family = _family(cache_dir, hidden=8)
    model, learner = build(family, Pretrain(), MetaConfig(iterations=1, inner_lr=0.4))
    tasks = family.sample(4, torch.Generator().manual_seed(2), split="test")
    curve = finetune_curve(family, model, learner.params, SGD(0.4), tasks, 3)["accuracy"]
    forward = forward_fn(model)
    loss = lambda p, d: family.loss(forward, p, d)
    for t in range(4):
        support, query = tasks[t : t + 1].support, tasks[t : t + 1].query
        support, query = (support[0][0], support[1][0]), (query[0][0], query[1][0])
        for s in range(4):
            p = adapt(loss, {k: v.detach() for k, v in learner.params.items()}, support,
                      rule=SGD(0.4), steps=s, first_order=True)
            assert curve[t, s].item() == pytest.approx(family.evaluate(forward, p, query)
                                                       ["accuracy"].item(), abs=1e-4)


def test_pretraining_over_all_classes_then_a_new_head(cache_dir):
    family = _family(cache_dir, hidden=8)
    assert family.classes == 4800  # 1200 characters x 4 rotations
    x, y = family.sample_classes(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,) and 0 <= y.min() <= y.max() < 4800
    for i in range(8):  # each drawing is one of its class's character's, in its rotation
        character = family.splits["train"][y[i] // 4]
        drawings = torch.rot90(family.images[character].float() / 255, int(y[i] % 4), (1, 2))
        assert (drawings == x[i, 0]).flatten(1).all(1).any()
    model, learner = build(family, Pretrain(), MetaConfig(iterations=1, inner_lr=0.4))
    assert learner.params["head.weight"].shape == (4800, 8)
    assert isinstance(learner.rule, SGDOn) and learner.rule.keys == {"head.weight", "head.bias"}
    test = at_test(Pretrain(), family, model, learner)
    assert test.params["head.weight"].shape == (5, 8) and not test.params["head.weight"].any()
    tasks = family.sample(1, torch.Generator().manual_seed(0), split="test")
    forward = forward_fn(model)
    loss = lambda p, d: family.loss(forward, p, d)
    support = (tasks.support[0][0], tasks.support[1][0])
    tuned = adapt(loss, test.params, support, rule=test.rule, steps=2, first_order=True)
    for k, v in tuned.items():  # only the head moves
        assert torch.equal(v, test.params[k]) != k.startswith("head.")
    body = at_test(Pretrain(finetune_body=True), family, model,
                     build(family, Pretrain(finetune_body=True), MetaConfig(iterations=1))[1])
    assert isinstance(body.rule, SGD)
    # the sinusoid family keeps the paper's pooled regression baseline
    sinusoid = PRESETS["sinusoid"][1].prepare()
    assert not hasattr(sinusoid, "sample_classes")


@pytest.mark.parametrize("method", ["protonets", "matchingnets", "pretrain", "meta-lstm"])
def test_every_method_has_presets_on_the_same_test_tasks_as_maml(method):
    for setting in ("5w1s", "5w5s", "20w1s", "20w5s"):
        maml = PRESETS[f"omniglot-{setting}"][1]
        for preset in (f"omniglot-{setting}-{method}", f"omniglot-{setting}-{method}-cpu"):
            doc, config = PRESETS[preset]
            assert config.algo.name == method and config.task == maml.task
            assert config.task.eval_tasks == 600
            assert ("minutes" in doc) == preset.endswith("-cpu")
    assert PRESETS["omniglot-5w1s-protonets"][1].algo.train_ways == 60
    assert PRESETS["omniglot-5w1s-protonets-cpu"][1].run_dir == "runs/omniglot-5w1s-cpu-protonets"


@pytest.mark.parametrize("argv, match", [
    (["sinusoid", "protonets"], "protonets classifies N-way tasks"),
    (["sinusoid", "matchingnets"], "not classification"),
    (["omniglot-5w1s", "protonets", "--train-ways", "5000"], "--train-ways 5000 exceeds the 1200"),
    (["omniglot-5w1s", "protonets", "--train-query", "20"], "lower --train-query"),
    (["omniglot-5w1s", "protonets", "--train-ways", "0"], "train_ways"),
    (["omniglot-5w1s", "matchingnets", "--scale", "0"], "scale"),
    (["omniglot-5w1s-protonets", "--task.ways", "500"], "ways N=500 exceeds the 423"),
    (["omniglot-5w5s-matchingnets", "--task.shots", "16"], "exceeds the 20 drawings"),
])
def test_bad_input_is_one_clear_line(argv, match, one_clear_line, tmp_path):
    one_clear_line(train.main, [*argv, "--out", str(tmp_path / "run")], match)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_metric_runs_train_and_evaluate_beside_maml_through_the_commands(tmp_path, cache_dir):
    runs = []
    for algo in (ProtoNets(train_ways=8, train_query=2), MatchingNets(), Pretrain(), None):
        base = PRESETS["omniglot-5w1s"][1]
        config = replace(base, task=replace(base.task, data_dir=str(SHARED), cache_dir=cache_dir,
                                            hidden=8, eval_tasks=12),
                         out=str(tmp_path / (algo.name if algo else "maml")),
                         meta=replace(base.meta, iterations=2, meta_batch=2))
        if algo is not None:
            config = replace(config, algo=algo)
        runs.append(str(train.train(config, progress=False).parent))
    summary = evaluate.evaluate(evaluate.Evaluate(runs=tuple(runs), steps=2,
                                                  out=str(tmp_path / "eval")))
    assert set(summary["methods"]) == {"protonets", "matchingnets", "pretrain", "maml"}
    for method in ("protonets", "matchingnets"):
        curve = summary["methods"][method]["accuracy"]["mean"]
        assert len(curve) == 3 and curve[0] == curve[1] == curve[2]
    assert summary["methods"]["pretrain"]["accuracy"]["mean"][0] == pytest.approx(20.0)
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["tasks"] == 12
    assert DRAWINGS == 20
