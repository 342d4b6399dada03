"""MAML-TRPO math: conjugate gradient, Hessian-vector products through the adaptation,
the batched meta-gradient against a per-task loop, and the line search's guarantees."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import pytest
import torch
from torch._dynamo.utils import counters

from metarl import trpo
from metarl.algos.maml_trpo import TrustRegion, curvature_product, old_outputs
from metarl.params import flatten, params_of, unflatten
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from metarl.policy_gradient import PolicyBatch, PolicyLosses, adapt_chain, mean_over_tasks
from metarl.rules import SGD
from metarl.trpo import (
    conjugate_gradient,
    hessian_vector_product,
    line_search,
    scale_to_trust_region,
)
from oracles import Momentum, adapt_reference


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=g, dtype=torch.float64)
    A = a @ a.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x, Ax = conjugate_gradient(lambda v: A @ v, b, iterations=12)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-8)
    # The accumulated product is A x itself, so TRPO can skip one product.
    x, Ax = conjugate_gradient(lambda v: A @ v, b, iterations=5)
    torch.testing.assert_close(Ax, A @ x, rtol=1e-10, atol=1e-10)
    # 10 iterations of a well-conditioned 50-dim system get close, as TRPO relies on.
    A = torch.diag(torch.linspace(1, 3, 50, dtype=torch.float64))
    b = torch.ones(50, dtype=torch.float64)
    assert (A @ conjugate_gradient(lambda v: A @ v, b, iterations=10)[0] - b).norm() < 1e-3


def _tiny(tasks=3, T=4, E=3, seed=0, categorical=False):
    torch.manual_seed(seed)
    policy = (CategoricalMLPPolicy(2, 3, hidden_sizes=(3,)) if categorical
              else GaussianMLPPolicy(2, 2, hidden_sizes=(3,), nonlinearity="tanh")).double()
    g = torch.Generator().manual_seed(seed)

    def batch():
        obs = torch.randn(tasks, T, E, 2, generator=g, dtype=torch.float64)
        act = (torch.randint(0, 3, (tasks, T, E), generator=g) if categorical
               else torch.randn(tasks, T, E, 2, generator=g, dtype=torch.float64))
        adv = torch.randn(tasks, T, E, generator=g, dtype=torch.float64)
        mask = torch.ones(tasks, T, E, dtype=torch.float64)
        mask[:, -1, 0] = 0  # one padded step per task
        return PolicyBatch(obs, act, adv, mask, -torch.rand(tasks, T, E, generator=g,
                                                             dtype=torch.float64))

    return policy, PolicyLosses(policy), batch(), batch()


@pytest.mark.parametrize("first_order", [False, True])
def test_kl_hessian_vector_product_through_adaptation_equals_explicit_hessian(first_order):
    policy, losses, support, query = _tiny()
    theta = params_of(policy)
    n = support.mask.shape[0]

    def adapted_outputs(th):
        adapted, _ = adapt_chain(losses.reinforce, th, [support], [SGD(0.3)], n,
                                 first_order=first_order)
        return adapted, torch.func.vmap(losses.outputs)(adapted, query)

    old = tuple(o.detach() for o in adapted_outputs(theta)[1])

    def kl_of(vector):
        adapted, _ = adapted_outputs(unflatten(vector, theta))
        return mean_over_tasks(losses.kl, adapted, query, old)

    theta0 = flatten(theta).detach()
    H = torch.autograd.functional.hessian(kl_of, theta0)
    adapted, _ = adapted_outputs(theta)
    hvp = hessian_vector_product(mean_over_tasks(losses.kl, adapted, query, old),
                                 list(theta.values()), damping=0.1)
    v = torch.randn(theta0.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hvp(v), H @ v + 0.1 * v, rtol=1e-9, atol=1e-10)
    assert torch.linalg.eigvalsh(H).min() > -1e-10  # the KL Hessian at theta_old is PSD


def _curvature_products(categorical: bool, first_order: bool, setting: dict,
                        trusts: list[TrustRegion]) -> list[torch.Tensor]:
    """Each ``TrustRegion``'s curvature product (with ``setting``) of one random vector, on a
    tiny two-step MAML problem in float64."""
    policy, losses, support, query = _tiny(tasks=4, categorical=categorical)
    theta, rules = params_of(policy), [SGD(0.3), SGD(0.15)]
    supports = [support, support]

    def adapt(supports, num_tasks, params=theta):
        return adapt_chain(losses.reinforce, params, supports, rules, num_tasks,
                           first_order=first_order)[0]

    adapted = adapt(supports, 4)
    reference = old_outputs(losses, adapted, query)
    v = torch.randn(flatten(theta).numel(), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(3))
    return [curvature_product(replace(trust, cg_damping=1e-3, **setting), losses, theta,
                              supports, query, adapted, reference, adapt)(v)
            for trust in trusts]


@pytest.mark.parametrize("categorical", [False, True], ids=["gaussian", "categorical"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("setting", [{}, {"cg_subsample": 0.5}, {"cg_first_order": True},
                                     {"cg_first_order": True, "cg_subsample": 0.5}],
                         ids=["exact", "subsample", "fisher", "fisher-subsample"])
def test_gauss_newton_curvature_equals_the_double_backward_product(categorical, first_order,
                                                                  setting):
    """J^T F J through the inner steps is the KL's Hessian at theta_old (its gradient is zero
    there): the same product as differentiating the KL gradient's graph, to round-off. (The
    suite runs with torch.compile disabled, so the default, compiled form runs eagerly here.)"""
    products = _curvature_products(categorical, first_order, setting, [
        TrustRegion(curvature="double-backward"),
        TrustRegion(curvature="gauss-newton", compile_curvature=False),
        TrustRegion()])
    assert products[0].norm() > 1e-3
    for product in products[1:]:
        torch.testing.assert_close(product, products[0], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(("categorical", "first_order", "setting"), [
    (False, False, {}), (True, False, {"cg_subsample": 0.5}),
    (False, True, {"cg_subsample": 0.5}), (True, True, {})],
    ids=["gaussian-second-order", "categorical-second-order-subsample",
         "gaussian-first-order-subsample", "categorical-first-order"])
def test_compiled_curvature_equals_the_double_backward_product(categorical, first_order,
                                                              setting, monkeypatch):
    """The default product, compiled by inductor as users run it, is still the KL's Hessian
    (each compilation takes 10-30 s, so each option appears in two of the four cases; the
    eager test above runs all sixteen through the same function)."""
    graphs = counters["stats"]["unique_graphs"]
    monkeypatch.delenv("TORCHDYNAMO_DISABLE")  # as conftest set it for the rest of the suite
    with torch._dynamo.config.patch(disable=False):
        compiled, exact = _curvature_products(categorical, first_order, setting, [
            TrustRegion(), TrustRegion(curvature="double-backward")])
    assert not trpo._compile_failed, trpo._compile_failed
    assert counters["stats"]["unique_graphs"] > graphs  # compiled here, not just run eagerly
    torch.testing.assert_close(compiled, exact, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2])
def test_batched_meta_gradient_equals_per_task_loop(steps):
    policy, losses, support, query = _tiny(tasks=4)
    theta = params_of(policy)
    n = support.mask.shape[0]
    supports = [support] * steps
    adapted, _ = adapt_chain(losses.reinforce, theta, supports, [SGD(0.2)] * steps, n)
    batched = torch.autograd.grad(mean_over_tasks(losses.surrogate, adapted, query),
                                  list(theta.values()))

    per_task = []
    for i in range(n):
        one = support.select_tasks(i)
        a = adapt_reference(losses.reinforce, theta, [one], rule=SGD(0.2), steps=steps)[0]
        per_task.append(losses.surrogate(a, query.select_tasks(i)))
    loop = torch.autograd.grad(torch.stack(per_task).mean(), list(theta.values()))
    for a, b in zip(batched, loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_line_search_never_accepts_above_max_kl_or_non_finite():
    # Improving but too far, then NaN, then a valid step: only the valid one is accepted.
    outcomes = iter([(-1.0, 0.5), (float("nan"), 0.001), (-0.5, float("inf")), (-0.2, 0.009)])
    seen = []

    def evaluate(fraction):
        seen.append(fraction)
        return next(outcomes)

    result = line_search(evaluate, old_loss=0.0, max_kl=0.01, ratio=0.5, max_steps=10)
    assert result.accepted and result.steps == 3 and result.kl <= 0.01
    assert seen == [1.0, 0.5, 0.25, 0.125]
    # Never improving: rejected after max_steps, the caller keeps the old params.
    result = line_search(lambda f: (1.0, 0.0), old_loss=0.0, max_kl=0.01, max_steps=15)
    assert not result.accepted and result.steps == 15
    # Always above the bound: rejected.
    assert not line_search(lambda f: (-1.0, 0.02), 0.0, 0.01).accepted


def test_step_is_scaled_to_the_trust_region():
    A = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    d = torch.tensor([1.0, 1.0], dtype=torch.float64)
    s = scale_to_trust_region(d, A @ d, 0.01)
    assert math.isclose(0.5 * (s @ A @ s).item(), 0.01, rel_tol=1e-9)
    zero = scale_to_trust_region(torch.zeros(2), torch.full((2,), float("nan")), 0.01)
    assert torch.equal(zero, torch.zeros(2))


def test_one_chain_stepped_at_once_or_one_support_at_a_time():
    """Sampling steps the chain one support batch at a time, the outer step all at once: the
    same params, with a different rule per step and the rules' state carried between calls."""
    policy, losses, first, second = _tiny(tasks=3)
    theta = params_of(policy)
    rules = [Momentum(0.2, mu=0.5), Momentum(0.05, mu=0.5)]
    at_once, _ = adapt_chain(losses.reinforce, theta, [first, second], rules, 3)
    step, state = adapt_chain(losses.reinforce, theta, [first], rules[:1], 3)
    stepwise, _ = adapt_chain(losses.reinforce, step, [second], rules[1:], 3,
                              per_task_params=True, state=state)
    for k in theta:
        torch.testing.assert_close(at_once[k], stepwise[k], rtol=0, atol=1e-12)
    restarted, _ = adapt_chain(losses.reinforce, step, [second], rules[1:], 3,
                               per_task_params=True)  # the velocity forgotten
    assert not torch.allclose(restarted["mean.0.weight"], at_once["mean.0.weight"])
    with pytest.raises(ValueError, match="one rule per inner step"):
        adapt_chain(losses.reinforce, theta, [first, second], rules[:1], 3)


def test_a_failed_compilation_warns_once_and_runs_the_product_uncompiled(monkeypatch):
    """Without a C++ compiler (say) inductor raises on the first call; the run goes on."""
    def broken_compile(fn, **kwargs):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(trpo, "_compile_failed", [])
    with pytest.warns(UserWarning, match="No working C.. compiler.*--no-compile-curvature"):
        first = _curvature_products(False, False, {}, [TrustRegion(),
                                                       TrustRegion(curvature="double-backward")])
    torch.testing.assert_close(first[0], first[1], rtol=1e-8, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time: no attempt, no warning
        _curvature_products(False, False, {}, [TrustRegion()])
