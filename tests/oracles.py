"""Reference implementations the tests hold the batched core to (not part of the package).

``adapt_reference`` is the plain per-task path the way learn2learn and higher do it: a Python
loop over tasks, ``torch.autograd.grad(..., create_graph=True)`` per step. The benchmarks time
the core against it too. ``Momentum`` is an update rule with state, as a learned optimizer is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from metarl.adapt import LossFn
from metarl.params import Params
from metarl.rules import UpdateRule


def adapt_reference(loss_fn: LossFn, params: Mapping[str, Tensor], supports: list[Any], *,
                    rule: UpdateRule, steps: int = 1, first_order: bool = False) -> list[Params]:
    """Each support set's adapted params, one task at a time, with ``torch.autograd.grad``."""
    adapted = []
    for support in supports:
        p = dict(params)
        state = rule.init(p)
        for _ in range(steps):
            with torch.enable_grad():
                loss = loss_fn(p, support)
                gs = torch.autograd.grad(loss, list(p.values()), create_graph=not first_order)
            p, state = rule.update(p, dict(zip(p.keys(), gs)), state, loss)
        adapted.append(p)
    return adapted


@dataclass(frozen=True, eq=False)
class Momentum:
    """``v <- mu v + g``, ``theta <- theta - lr v``: the velocity is the rule's state (per task
    under vmap); ``lr`` may be a learnable tensor."""

    lr: float | Tensor
    mu: float = 0.9

    def init(self, params):
        return {k: torch.zeros_like(p) for k, p in params.items()}

    def update(self, params, grads, state, loss):
        v = {k: self.mu * state[k] + grads[k] for k in params}
        return {k: p - self.lr * v[k] for k, p in params.items()}, v

    def parameters(self):
        return {"lr": self.lr} if isinstance(self.lr, Tensor) else {}
