"""Inner-loop adaptation: K steps of an update rule on a task's support loss (Finn et al., 2017).

``adapt`` is the one verb for supervised and RL meta-learning. Its loss is any
``loss_fn(params, support) -> scalar``; each step hands the loss and its gradient to an
:class:`~metarl.rules.UpdateRule`: :class:`~metarl.rules.SGD` (MAML),
:class:`~metarl.rules.MetaSGD` (learned per-parameter rates) or any rule with state.

The gradient is taken with ``torch.func``, so ``adapt`` composes with ``torch.func.vmap``:
``adapt_tasks`` adapts a whole meta-batch (support data stacked on a leading task dimension)
in one call, and the outer loss backpropagates through it with ordinary autograd, including
the second-order (Hessian) term unless ``first_order=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor
from torch.func import grad_and_value, vmap

from metarl.params import Params, detach
from metarl.rules import UpdateRule

LossFn = Callable[[Params, Any], Tensor]


def adapt_step(loss_fn: LossFn, params: Mapping[str, Tensor], support: Any, rule: UpdateRule,
               state: Any, first_order: bool = False) -> tuple[Params, Any]:
    """One step of ``rule`` on ``loss_fn(params, support)``: ``(params, state)`` after it.

    With ``first_order=True`` the gradient is treated as a constant (FOMAML), so the outer
    gradient skips the Hessian term.
    """
    grads, loss = grad_and_value(loss_fn)(dict(params), support)
    if first_order:
        grads = detach(grads)
    return rule.update(dict(params), grads, state, loss)


def adapt(loss_fn: LossFn, params: Mapping[str, Tensor], support: Any, *, rule: UpdateRule,
          steps: int = 1, first_order: bool = False) -> Params:
    """Adapt ``params`` to one task with ``steps`` steps of ``rule`` on its support set."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    params = dict(params)
    state = rule.init(params)
    for _ in range(steps):
        params, state = adapt_step(loss_fn, params, support, rule, state, first_order)
    return params


def adapt_tasks(loss_fn: LossFn, params: Mapping[str, Tensor], support: Any, *,
                rule: UpdateRule, steps: int = 1, first_order: bool = False) -> Params:
    """:func:`adapt` for a meta-batch in one vmapped call.

    ``support`` is a pytree whose tensors carry a leading task dimension ``[N, ...]``;
    ``params`` are shared by all tasks. Returns per-task params, each ``[N, *param.shape]``.
    """

    def one(p: Params, s: Any) -> Params:
        return adapt(loss_fn, p, s, rule=rule, steps=steps, first_order=first_order)

    return vmap(one, in_dims=(None, 0))(dict(params), support)


def task_losses(loss_fn: LossFn, params: Mapping[str, Tensor], data: Any) -> Tensor:
    """Each task's loss on its own data: per-task params ``[N, ...]`` -> losses ``[N]``."""
    return vmap(loss_fn)(dict(params), data)


def reptile_direction(params: Mapping[str, Tensor], adapted: Mapping[str, Tensor]) -> Params:
    """Reptile's pseudo-gradient ``theta - mean_i phi_i`` (Nichol et al., 2018).

    ``adapted`` holds per-task params ``[N, ...]``; feeding this as ``.grad`` to SGD with
    rate ``epsilon`` gives Reptile's update ``theta + epsilon * (mean phi - theta)``.
    """
    return {k: (p - adapted[k].mean(0)).detach() for k, p in params.items()}
