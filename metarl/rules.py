"""Inner-loop update rules: how one adaptation step turns a task's gradient into new params.

A rule is an init/update pair in the style of torchopt and optax, written for the functional
inner loop of :func:`metarl.adapt.adapt`::

    state = rule.init(params)
    params, state = rule.update(params, grads, state, loss)   # once per inner step

``state`` is any pytree of tensors (``()`` for stateless rules), so a rule runs under
``torch.func.vmap`` over tasks. Rules are plain differentiable tensor code: second-order
meta-gradients flow through them to the meta-parameters and to the rule's own learnable tensors
(``rule.parameters()``), which the outer optimizer trains beside the meta-parameters and the
checkpoint stores. A learned optimizer is one more rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from metarl.params import Params


class UpdateRule(Protocol):
    def init(self, params: Params) -> Any:
        """The rule's state before the first step (a pytree of tensors)."""
        ...

    def update(self, params: Params, grads: Params, state: Any, loss: Tensor
               ) -> tuple[Params, Any]:
        """One step: the new params and state from the support ``loss`` and its ``grads``."""
        ...

    def parameters(self) -> Params:
        """The rule's learnable tensors, trained by the outer optimizer (``{}`` if none)."""
        ...


@dataclass(frozen=True)
class SGD:
    """``theta - lr * grad``: MAML's inner step (Finn et al., 2017) with a fixed rate."""

    lr: float

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, Tensor) or math.isfinite(self.lr)):
            raise ValueError(f"the inner learning rate must be finite, got {self.lr!r}")

    def init(self, params: Params) -> tuple[()]:
        return ()

    def update(self, params: Params, grads: Params, state: Any, loss: Tensor
               ) -> tuple[Params, Any]:
        return {k: p - self.lr * grads[k] for k, p in params.items()}, state

    def parameters(self) -> Params:
        return {}


@dataclass(frozen=True, eq=False)
class MetaSGD:
    """``theta - alpha * grad`` with a learned rate ``alpha`` per parameter entry (Meta-SGD,
    Li et al., 2017). ``lr`` holds one tensor per parameter, shaped like it."""

    lr: Mapping[str, Tensor]

    @classmethod
    def create(cls, params: Mapping[str, Tensor], init: float) -> MetaSGD:
        """Learnable rates (leaf tensors), every entry ``init``."""
        return cls({k: torch.full_like(p, init).detach().requires_grad_() for k, p in
                    params.items()})

    def init(self, params: Params) -> tuple[()]:
        return ()

    def update(self, params: Params, grads: Params, state: Any, loss: Tensor
               ) -> tuple[Params, Any]:
        return {k: p - self.lr[k] * grads[k] for k, p in params.items()}, state

    def parameters(self) -> Params:
        return dict(self.lr)
