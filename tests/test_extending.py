"""The extension story of the README: a new task family and a new algorithm, each written here
in under 60 lines, train and evaluate through the commands' own code path once registered
(a preset line for the family, a registry line for the algorithm)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn

from metarl import algos
from metarl.adapt import adapt_tasks, task_losses
from metarl.algos.supervised import build
from metarl.checkpoint import load_checkpoint
from metarl.config import MetaConfig
from metarl.scripts import evaluate, presets, train
from metarl.scripts.experiments import Supervised
from metarl.stats import Metric
from metarl.tasks import TaskBatch, loss_fn

# --- a scratch task family: lines y = a x + b, data as a dict pytree, two metrics -------------


@dataclass(frozen=True)
class Lines:
    """Regression of y = a x + b with a, b ~ U[-1, 1] per task; ``shots`` support points."""

    shots: int = 5
    tag: ClassVar[str] = "lines"
    metrics: ClassVar[tuple[Metric, ...]] = (Metric("mse"), Metric("mae"))

    def build(self) -> Lines:
        return self

    def sample(self, num_tasks: int, generator: torch.Generator, split: str = "train"
               ) -> TaskBatch:
        ab = 2 * torch.rand(num_tasks, 1, 2, generator=generator) - 1
        x = 4 * torch.rand(num_tasks, 2 * self.shots, 1, generator=generator) - 2
        y = ab[..., :1] * x + ab[..., 1:]
        k = self.shots
        return TaskBatch({"x": x[:, :k], "y": y[:, :k]}, {"x": x[:, k:], "y": y[:, k:]},
                         info=ab.squeeze(1))

    def model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))

    def loss(self, forward, params, data) -> Tensor:
        return (forward(params, data["x"]) - data["y"]).square().mean()

    def evaluate(self, forward, params, data) -> dict[str, Tensor]:
        error = forward(params, data["x"]) - data["y"]
        return {"mse": error.square().mean(), "mae": error.abs().mean()}


# --- a scratch algorithm: MAML with one learned inner rate, a rule of its own ------------------


@dataclass(frozen=True, eq=False)
class LearnedScalarRate:
    """``theta - alpha grad`` with one learnable ``alpha`` for every parameter."""

    lr: Tensor

    def init(self, params):
        return ()

    def update(self, params, grads, state, loss):
        return {k: p - self.lr * grads[k] for k, p in params.items()}, state

    def parameters(self):
        return {"alpha": self.lr}


@dataclass(frozen=True)
class ScalarRateMAML:
    """MAML that meta-learns a single inner rate beside theta."""

    outer_lr: float = 3e-3
    name: ClassVar[str] = "scalar-rate-maml"
    kind: ClassVar[str] = "supervised"

    def rule(self, params, cfg: MetaConfig) -> LearnedScalarRate:
        return LearnedScalarRate(torch.tensor(cfg.inner_lr, requires_grad=True))

    def optimizer(self, parameters) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=self.outer_lr)


def train_scalar_rate_maml(algo, family, cfg: MetaConfig, run, resume=None) -> None:
    model, learner = build(family, algo, cfg, resume)
    loss = loss_fn(family, model)
    for iteration in range(learner.iteration, cfg.iterations):
        tasks = family.sample(cfg.meta_batch, learner.generator).to(cfg.device)
        adapted = adapt_tasks(loss, learner.params, tasks.support, rule=learner.rule,
                              steps=cfg.inner_steps)
        outer = task_losses(loss, adapted, tasks.query).mean()
        learner.step(outer)
        learner.iteration = iteration + 1
        run.end_iteration(learner.iteration, lambda: {"loss/query": outer.item()},
                          learner.state_dict)


# --- registering and running them --------------------------------------------------------------


@pytest.fixture
def registered(monkeypatch):
    """The one line each extension adds: a preset for the family, a registry entry for the
    algorithm."""
    monkeypatch.setitem(presets.PRESETS, "lines", (
        "Lines y = a x + b, K=5.", Supervised(task=Lines(), meta=MetaConfig(
            iterations=300, meta_batch=10, inner_lr=0.1, log_every=50, checkpoint_every=100))))
    monkeypatch.setitem(algos.ALGORITHMS, ScalarRateMAML, train_scalar_rate_maml)


def _results(out) -> dict:
    return json.loads((out / "results.json").read_text())


def test_a_new_task_family_trains_and_evaluates_through_the_commands(tmp_path, registered,
                                                                     capsys):
    run = tmp_path / "lines-maml"
    train.main(["lines", "--out", str(run)])
    evaluate.main([str(run), "--tasks", "50", "--steps", "3", "--out", str(tmp_path / "eval")])
    table = capsys.readouterr().out
    assert "mse on 50 held-out lines tasks" in table and "mae on 50 held-out lines" in table
    summary = _results(tmp_path / "eval")
    assert summary["metrics"] == ["mse", "mae"]
    for metric in ("mse", "mae"):
        curve = summary["methods"]["maml"][metric]["mean"]
        assert curve[1] < 0.7 * curve[0] and curve[3] < curve[1]  # adapts in a few steps
    assert (tmp_path / "eval" / "curves-mae.png").stat().st_size > 0


def test_a_new_algorithm_trains_resumes_and_evaluates_through_the_commands(
        tmp_path, registered, resumed_equals_uninterrupted):
    config = replace(presets.PRESETS["lines"][1], algo=ScalarRateMAML(), out=str(tmp_path / "a"))
    path = train.train(config, progress=False)
    alpha = load_checkpoint(path)["state"]["rule"]["alpha"]
    assert alpha.shape == () and alpha.item() != pytest.approx(0.1)  # the rate was learned
    evaluate.main([str(path.parent), "--tasks", "50", "--steps", "2",
                   "--out", str(tmp_path / "eval")])
    curve = _results(tmp_path / "eval")["methods"]["scalar-rate-maml"]["mse"]["mean"]
    assert curve[2] < curve[1] < curve[0]
    short = replace(config, meta=replace(config.meta, iterations=6, checkpoint_every=3))
    resumed_equals_uninterrupted(replace(short, out=str(tmp_path / "full")),
                                 replace(short, out=str(tmp_path / "part")), crash_at=4)
