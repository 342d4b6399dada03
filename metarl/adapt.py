"""Inner-loop adaptation: K gradient steps on a task's support loss (Finn et al., 2017).

``adapt`` is the one verb for supervised and RL meta-learning. Its loss is any
``loss_fn(params, support) -> scalar``; its inner learning rate is a scalar (MAML) or a
dict of learned per-parameter rates (Meta-SGD, Li et al., 2017).

The gradient is taken with ``torch.func.grad``, so ``adapt`` composes with ``torch.func.vmap``:
``adapt_tasks`` adapts a whole meta-batch (support data stacked on a leading task dimension)
in one call, and the outer loss backpropagates through it with ordinary autograd, including
the second-order (Hessian) term unless ``first_order=True``.

``adapt_reference`` is the plain per-task path the way learn2learn and higher do it
(``torch.autograd.grad(..., create_graph=True)`` per task, a Python loop over tasks); the
tests use it to prove the batched path computes the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, vmap

from metarl.params import Params

InnerLR = float | Tensor | Mapping[str, Tensor]
LossFn = Callable[[Params, Any], Tensor]


def _rate(inner_lr: InnerLR, name: str) -> float | Tensor:
    return inner_lr[name] if isinstance(inner_lr, Mapping) else inner_lr


def sgd_step(params: Mapping[str, Tensor], grads: Mapping[str, Tensor], inner_lr: InnerLR
             ) -> Params:
    """``params - inner_lr * grads``, with a per-parameter rate when ``inner_lr`` is a dict."""
    return {k: p - _rate(inner_lr, k) * grads[k] for k, p in params.items()}


def adapt(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    support: Any,
    *,
    inner_lr: InnerLR,
    steps: int = 1,
    first_order: bool = False,
) -> Params:
    """Adapt ``params`` to one task with ``steps`` gradient steps on ``loss_fn(params, support)``.

    With ``first_order=True`` the inner gradients are treated as constants (FOMAML), so the
    outer gradient skips the Hessian term; the default keeps it (second-order MAML).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    grad_fn = grad(loss_fn)
    params = dict(params)
    for _ in range(steps):
        grads = grad_fn(params, support)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        params = sgd_step(params, grads, inner_lr)
    return params


def adapt_tasks(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    support: Any,
    *,
    inner_lr: InnerLR,
    steps: int = 1,
    first_order: bool = False,
    per_task_params: bool = False,
) -> Params:
    """:func:`adapt` for a meta-batch in one vmapped call.

    ``support`` is a pytree whose tensors carry a leading task dimension ``[N, ...]``.
    ``params`` are shared by all tasks (or already per task, ``[N, ...]``, when
    ``per_task_params``). Returns per-task params, each ``[N, *param.shape]``.
    """

    def one(p: Params, s: Any) -> Params:
        return adapt(loss_fn, p, s, inner_lr=inner_lr, steps=steps, first_order=first_order)

    return vmap(one, in_dims=(0 if per_task_params else None, 0))(dict(params), support)


def adapt_reference(
    loss_fn: LossFn,
    params: Mapping[str, Tensor],
    supports: list[Any],
    *,
    inner_lr: InnerLR,
    steps: int = 1,
    first_order: bool = False,
) -> list[Params]:
    """Per-task loop with ``torch.autograd.grad`` (the learn2learn/higher style); reference only."""
    adapted = []
    for support in supports:
        p = dict(params)
        for _ in range(steps):
            with torch.enable_grad():
                loss = loss_fn(p, support)
                gs = torch.autograd.grad(loss, list(p.values()), create_graph=not first_order)
            p = sgd_step(p, dict(zip(p.keys(), gs)), inner_lr)
        adapted.append(p)
    return adapted


def task_losses(loss_fn: LossFn, params: Mapping[str, Tensor], data: Any) -> Tensor:
    """Each task's loss on its own data: per-task params ``[N, ...]`` -> losses ``[N]``."""
    return vmap(loss_fn)(dict(params), data)


def reptile_direction(params: Mapping[str, Tensor], adapted: Mapping[str, Tensor]) -> Params:
    """Reptile's pseudo-gradient ``theta - mean_i phi_i`` (Nichol et al., 2018).

    ``adapted`` holds per-task params ``[N, ...]``; feeding this as ``.grad`` to SGD with
    rate ``epsilon`` gives Reptile's update ``theta + epsilon * (mean phi - theta)``.
    """
    return {k: (p - adapted[k].mean(0)).detach() for k, p in params.items()}
