"""The meta-learner LSTM of Ravi & Larochelle (2017) as an update rule of ``adapt``: the
preprocessing, the SGD identity of its cell, gradients to every weight and to the initial
parameters, vmap over tasks against the per-task loop, and bad input."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from metarl.adapt import adapt, adapt_tasks, task_losses
from metarl.algos import ALGORITHMS
from metarl.algos.meta_lstm import MetaLSTM as MetaLSTMAlgorithm
from metarl.algos.meta_lstm import train as train_meta_lstm
from metarl.config import MetaConfig
from metarl.conv4 import Conv4
from metarl.params import forward_fn, params_of
from metarl.rules import SGD, MetaLSTM, preprocess
from metarl.scripts import presets, train
from metarl.scripts.experiments import Supervised
from metarl.tasks import TaskBatch
from oracles import adapt_reference


def _problem(tasks: int = 3, ways: int = 3, shots: int = 2):
    torch.manual_seed(0)
    model = Conv4(ways, in_channels=1, hidden=4, image_size=16).double()
    forward = forward_fn(model)

    def loss(params, data):
        return F.cross_entropy(forward(params, data[0]), data[1])

    x = torch.rand(tasks, 2, ways * shots, 1, 16, 16, dtype=torch.float64)
    y = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1)
    return model, loss, (x[:, 0], y), (x[:, 1], y)


def test_preprocessing_is_andrychowicz_et_al():
    x = torch.tensor([3.0, -0.5, 1e-6, -2e-5, 0.0], dtype=torch.float64)
    out = preprocess(x, p=10.0)
    assert out.shape == (5, 2)
    # |x| >= e^-10 (4.5e-5): (log|x| / 10, sign x); below: (-1, e^10 x)
    torch.testing.assert_close(out[:2], torch.tensor([[math.log(3) / 10, 1.0],
                                                      [math.log(0.5) / 10, -1.0]],
                                                     dtype=torch.float64))
    torch.testing.assert_close(out[2:], torch.tensor([[-1.0, math.exp(10) * 1e-6],
                                                      [-1.0, -math.exp(10) * 2e-5],
                                                      [-1.0, 0.0]], dtype=torch.float64))


def test_the_cell_with_forget_gate_one_and_input_gate_lr_is_an_sgd_step():
    """theta_t = sigmoid(f) theta - sigmoid(i) grad with sigmoid(f) = 1, sigmoid(i) = lr."""
    model, loss, support, _ = _problem(tasks=1)
    params = {k: v.detach() for k, v in params_of(model).items()}
    support = (support[0][0], support[1][0])
    lr = 0.3
    torch.manual_seed(1)
    rule = MetaLSTM.create(hidden=5, dtype=torch.float64)
    with torch.no_grad():
        rule.weights["forget.weight"].zero_()
        rule.weights["forget.bias"].fill_(50.0)  # sigmoid(50) is 1 in float64
        rule.weights["input.weight"].zero_()
        rule.weights["input.bias"].fill_(math.log(lr / (1 - lr)))  # sigmoid = lr
    for steps in (1, 3):
        lstm = adapt(loss, params, support, rule=rule, steps=steps, first_order=True)
        sgd = adapt(loss, params, support, rule=SGD(lr), steps=steps, first_order=True)
        for k in params:
            torch.testing.assert_close(lstm[k], sgd[k], rtol=1e-13, atol=1e-15)
        assert not torch.equal(lstm[next(iter(params))], params[next(iter(params))])


def test_initialisation_keeps_theta_and_takes_small_steps():
    torch.manual_seed(0)
    rule = MetaLSTM.create(hidden=20)
    w = rule.weights
    assert 4 <= w["forget.bias"].item() <= 6 and -5 <= w["input.bias"].item() <= -4
    assert w["forget.weight"].abs().max() <= 0.01 and w["input.weight"].abs().max() <= 0.01
    assert w["lstm.weight_x"].shape == (80, 4) and w["lstm.weight_h"].shape == (80, 20)
    assert set(rule.parameters()) == set(w) and all(v.requires_grad for v in w.values())


@pytest.mark.parametrize("steps", [2, 3])
def test_vmapped_over_tasks_equals_the_per_task_loop_and_reaches_every_weight(steps):
    model, loss, support, query = _problem()
    params = params_of(model)
    torch.manual_seed(2)
    rule = MetaLSTM.create(hidden=6, input_bias=(-2.0, -1.5), dtype=torch.float64)
    leaves = [*params.values(), *rule.parameters().values()]
    adapted = adapt_tasks(loss, params, support, rule=rule, steps=steps, first_order=True)
    g_vmap = torch.autograd.grad(task_losses(loss, adapted, query).mean(), leaves)
    n = support[0].shape[0]
    reference = adapt_reference(loss, params, [(support[0][i], support[1][i]) for i in range(n)],
                                rule=rule, steps=steps, first_order=True)
    for i, a in enumerate(reference):
        for k in params:
            torch.testing.assert_close(adapted[k][i], a[k], rtol=0, atol=1e-12)
    ref_loss = torch.stack([loss(a, (query[0][i], query[1][i])) for i, a in enumerate(reference)])
    g_loop = torch.autograd.grad(ref_loss.mean(), leaves)
    names = [*params, *rule.parameters()]
    for name, a, b in zip(names, g_vmap, g_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=name)
    # the meta-gradient reaches every LSTM weight and every initial parameter (the cell state's
    # learned start), though the learner's gradients are constants
    for name, g in zip(names, g_vmap):
        assert g.abs().sum() > 0, name


def test_the_learner_gradient_is_a_constant_to_the_rule():
    """Second-order adapt gives the same meta-gradient: the rule takes loss and gradient as
    inputs without differentiating through them (Ravi & Larochelle, Section 3.2)."""
    model, loss, support, query = _problem(tasks=2)
    params = params_of(model)
    torch.manual_seed(3)
    rule = MetaLSTM.create(hidden=4, input_bias=(-2.0, -1.5), dtype=torch.float64)
    leaves = [*params.values(), *rule.parameters().values()]
    grads = [torch.autograd.grad(task_losses(loss, adapt_tasks(
        loss, params, support, rule=rule, steps=2, first_order=fo), query).mean(), leaves)
        for fo in (True, False)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_meta_training_clips_and_learns_the_rule(tmp_path):
    """Two outer steps of the algorithm on a toy family: the LSTM's weights and theta_0 move,
    and the logged meta-gradient norm is the unclipped one."""

    @dataclass
    class Toy:
        tag: ClassVar[str] = "toy"

        def sample(self, n, generator, split="train"):
            x = torch.randn(n, 8, 3, generator=generator)
            y = (x[..., :1] > 0).long().squeeze(-1)
            return TaskBatch((x[:, :4], y[:, :4]), (x[:, 4:], y[:, 4:]))

        def model(self):
            return nn.Linear(3, 2)

        def loss(self, forward, params, data):
            return F.cross_entropy(forward(params, data[0]), data[1])

    class Record:
        def __init__(self):
            self.scalars, self.state = [], None

        def end_iteration(self, iteration, metrics, state):
            self.scalars.append(metrics())
            self.state = state()

    run = Record()
    algo = MetaLSTMAlgorithm(clip=1e-3, input_bias=(-2.0, -1.0))
    train_meta_lstm(algo, Toy(), MetaConfig(iterations=2, meta_batch=3, inner_steps=2), run)
    assert len(run.scalars) == 2 and all(s["meta-lstm/grad_norm"] > 1e-3 for s in run.scalars)
    torch.manual_seed(0)
    fresh = Toy().model()
    assert not torch.equal(run.state["params"]["weight"], fresh.weight)
    assert set(run.state["rule"]) == set(MetaLSTM.create().weights)
    assert ALGORITHMS[MetaLSTMAlgorithm] is train_meta_lstm


@dataclass(frozen=True)
class RunningStats:
    """A family whose model keeps running batch-norm statistics (unsupported by meta-lstm)."""

    tag: ClassVar[str] = "running-stats"

    def build(self):
        return self

    def model(self):
        return nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.parametrize("argv, match", [
    (["running-stats", "meta-lstm"], "keeps running statistics (1.running_mean"),
    (["omniglot-5w1s", "meta-lstm", "--input-bias", "1", "0"], "input_bias"),
    (["omniglot-5w1s", "meta-lstm", "--clip", "0"], "clip"),
    (["omniglot-5w1s", "meta-lstm", "--hidden", "0"], "hidden"),
    (["omniglot-5w1s-meta-lstm-cpu", "--task.ways", "424"], "ways N=424 exceeds the 423"),
    (["omniglot-5w1s-meta-lstm", "--task.shots", "10", "--task.query", "11"],
     "exceeds the 20 drawings"),
])
def test_bad_input_is_one_clear_line(argv, match, one_clear_line, tmp_path, monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "running-stats", (
        "A model with running statistics.", Supervised(task=RunningStats(), meta=MetaConfig())))
    one_clear_line(train.main, [*argv, "--out", str(tmp_path / "run")], match)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_presets_state_their_budget():
    doc, config = presets.PRESETS["omniglot-5w1s-meta-lstm-cpu"]
    assert "minutes" in doc and config.meta.inner_steps >= 1
    assert replace(config.algo).input_bias[1] < 0 < config.algo.forget_bias[0]
