"""The meta-learner core: second-order meta-gradients, first-order variant, vmap vs loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarl.adapt import adapt, adapt_tasks, reptile_direction, task_losses
from metarl.models import mlp
from metarl.params import flatten, forward_fn, params_of, unflatten
from metarl.rules import SGD, MetaSGD
from oracles import Momentum, adapt_reference


def _problem(seed: int = 0, tasks: int = 4, hidden: tuple[int, ...] = (8, 8), act="tanh"):
    torch.manual_seed(seed)
    model = mlp((1, *hidden, 1), act).double()
    f = forward_fn(model)

    def loss(params, data):
        x, y = data
        return ((f(params, x) - y) ** 2).mean()

    x = torch.randn(tasks, 2, 6, 1, dtype=torch.float64)
    y = torch.sin(3 * x) + 0.1 * torch.randn(tasks, 2, 6, 1, dtype=torch.float64)
    support, query = (x[:, 0], y[:, 0]), (x[:, 1], y[:, 1])
    return model, loss, support, query


def _meta_loss(loss, params, support, query, **kw):
    adapted = adapt_tasks(loss, params, support, **kw)
    return task_losses(loss, adapted, query).mean()


def _reference_meta_loss(loss, params, support, query, **kw):
    n = support[0].shape[0]
    supports = [(support[0][i], support[1][i]) for i in range(n)]
    adapted = adapt_reference(loss, params, supports, **kw)
    return torch.stack([loss(a, (query[0][i], query[1][i])) for i, a in enumerate(adapted)]).mean()


def test_second_order_meta_gradient_matches_finite_differences():
    model, loss, support, query = _problem(hidden=(5,))
    params = params_of(model)
    kw = dict(rule=SGD(0.3), steps=2)
    g = torch.autograd.grad(_meta_loss(loss, params, support, query, **kw), list(params.values()))
    analytic = torch.cat([t.reshape(-1) for t in g])

    theta, eps = flatten(params).detach(), 1e-6
    numeric = torch.zeros_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = eps
        up = _meta_loss(loss, unflatten(theta + e, params), support, query, **kw)
        down = _meta_loss(loss, unflatten(theta - e, params), support, query, **kw)
        numeric[i] = (up - down) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)
    # The first-order gradient is measurably different: the Hessian term matters here.
    g_fo = torch.autograd.grad(_meta_loss(loss, params, support, query, first_order=True, **kw),
                               list(params.values()))
    assert (torch.cat([t.reshape(-1) for t in g_fo]) - numeric).abs().max() > 1e-3


def test_first_order_equals_detached_inner_gradient():
    model, loss, support, query = _problem()
    params = params_of(model)
    kw = dict(rule=SGD(0.1), steps=3)
    got = torch.autograd.grad(_meta_loss(loss, params, support, query, first_order=True, **kw),
                              list(params.values()))

    def manual(x_s, y_s, x_q, y_q):
        p = dict(params)
        for _ in range(kw["steps"]):
            g = torch.autograd.grad(loss(p, (x_s, y_s)), list(p.values()))  # no create_graph
            p = {k: v - 0.1 * gi.detach() for (k, v), gi in zip(p.items(), g)}
        return loss(p, (x_q, y_q))

    n = support[0].shape[0]
    ref = torch.stack([manual(support[0][i], support[1][i], query[0][i], query[1][i])
                       for i in range(n)]).mean()
    want = torch.autograd.grad(ref, list(params.values()))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_path_equals_per_task_loop(steps, first_order):
    model, loss, support, query = _problem(tasks=5, hidden=(16, 16), act="relu")
    params = params_of(model)
    kw = dict(rule=SGD(0.05), steps=steps, first_order=first_order)
    g_vmap = torch.autograd.grad(_meta_loss(loss, params, support, query, **kw),
                                 list(params.values()))
    g_loop = torch.autograd.grad(_reference_meta_loss(loss, params, support, query, **kw),
                                 list(params.values()))
    for a, b in zip(g_vmap, g_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("steps", [1, 3])
def test_meta_sgd_vmap_equals_loop_and_rates_get_gradients(steps):
    model, loss, support, query = _problem()
    params = params_of(model)
    rule = MetaSGD.create(params, 0.05)
    leaves = list(params.values()) + list(rule.parameters().values())
    kw = dict(rule=rule, steps=steps)
    g_vmap = torch.autograd.grad(_meta_loss(loss, params, support, query, **kw), leaves)
    g_loop = torch.autograd.grad(_reference_meta_loss(loss, params, support, query, **kw), leaves)
    for a, b in zip(g_vmap, g_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    for g in g_vmap:
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_adaptation_lowers_support_loss_and_gradients_reach_meta_params():
    model, loss, support, query = _problem(tasks=3)
    params = params_of(model)
    before = task_losses(loss, {k: v.expand(3, *v.shape) for k, v in params.items()}, support)
    adapted = adapt_tasks(loss, params, support, rule=SGD(0.05), steps=5)
    after = task_losses(loss, adapted, support)
    assert (after < before).all()
    task_losses(loss, adapted, query).mean().backward()
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_adapt_single_task_matches_batched_and_zero_steps_is_identity():
    model, loss, support, _ = _problem(tasks=2)
    params = params_of(model)
    batched = adapt_tasks(loss, params, support, rule=SGD(0.1), steps=2)
    single = adapt(loss, params, (support[0][1], support[1][1]), rule=SGD(0.1), steps=2)
    for k in params:
        torch.testing.assert_close(batched[k][1], single[k], rtol=0, atol=1e-12)
    same = adapt(loss, params, (support[0][0], support[1][0]), rule=SGD(0.1), steps=0)
    assert all(same[k] is params[k] for k in params)
    with pytest.raises(ValueError, match="steps"):
        adapt(loss, params, support, rule=SGD(0.1), steps=-1)


def test_reptile_direction_is_theta_minus_mean_phi():
    params = {"w": torch.tensor([1.0, 2.0])}
    phi = {"w": torch.tensor([[0.0, 0.0], [1.0, 1.0]])}
    torch.testing.assert_close(reptile_direction(params, phi)["w"], torch.tensor([0.5, 1.5]))


def test_params_flatten_roundtrip_and_functional_call_leaves_module_untouched():
    model = nn.Linear(3, 2).double()
    params = params_of(model)
    flat = flatten(params)
    back = unflatten(flat * 2, params)
    x = torch.ones(1, 3, dtype=torch.float64)
    out = forward_fn(model)(back, x)
    torch.testing.assert_close(out, model(x) * 2)
    torch.testing.assert_close(flatten(params_of(model)), flat)  # module weights unchanged
    with pytest.raises(ValueError):
        unflatten(torch.zeros(flat.numel() + 1), params)


@pytest.mark.parametrize("first_order", [False, True])
def test_a_rule_with_state_runs_batched_and_second_order(first_order):
    """Any init/update pair plugs into adapt: the vmapped path equals the per-task loop, and
    the meta-gradient reaches both theta and the rule's own learnable tensor."""
    model, loss, support, query = _problem(tasks=4)
    params = params_of(model)
    rule = Momentum(torch.tensor(0.05, dtype=torch.float64, requires_grad=True))
    leaves = list(params.values()) + [rule.lr]
    kw = dict(rule=rule, steps=3, first_order=first_order)
    g_vmap = torch.autograd.grad(_meta_loss(loss, params, support, query, **kw), leaves)
    g_loop = torch.autograd.grad(_reference_meta_loss(loss, params, support, query, **kw), leaves)
    for a, b in zip(g_vmap, g_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert g_vmap[-1].abs() > 0
    # three momentum steps differ from three plain SGD steps at the same rate
    plain = adapt_tasks(loss, params, support, rule=SGD(0.05), steps=3)
    momentum = adapt_tasks(loss, params, support, **kw)
    assert not torch.allclose(plain["0.weight"], momentum["0.weight"])
