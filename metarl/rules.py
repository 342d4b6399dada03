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


@dataclass(frozen=True)
class SGDOn:
    """``theta - lr * grad`` on the params named in ``keys`` only; the others stay as they are
    (a pretrained body under a new head fine-tuned alone)."""

    lr: float
    keys: frozenset[str]

    def init(self, params: Params) -> tuple[()]:
        return ()

    def update(self, params: Params, grads: Params, state: Any, loss: Tensor
               ) -> tuple[Params, Any]:
        return {k: p - self.lr * grads[k] if k in self.keys else p for k, p in params.items()}, \
            state

    def parameters(self) -> Params:
        return {}


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba, 2015) as an inner rule: its moments and step count are the rule's
    state, carried from step to step of one task (per task under vmap). Gu et al. (2018)
    adapt to each language with Adam steps.

    The epsilon sits inside the square root, ``m / sqrt(v + eps^2)``: a gradient entry of 0
    (an embedding row a batch does not use) then has a finite second derivative, so
    second-order meta-gradients through the rule stay finite.
    """

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def init(self, params: Params) -> dict[str, Any]:
        like = next(iter(params.values()))
        return {"m": {k: torch.zeros_like(p) for k, p in params.items()},
                "v": {k: torch.zeros_like(p) for k, p in params.items()},
                "t": like.new_zeros(())}

    def update(self, params: Params, grads: Params, state: Any, loss: Tensor
               ) -> tuple[Params, Any]:
        b1, b2 = self.betas
        t = state["t"] + 1
        m = {k: b1 * state["m"][k] + (1 - b1) * g for k, g in grads.items()}
        v = {k: b2 * state["v"][k] + (1 - b2) * g * g for k, g in grads.items()}
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        new = {k: p - self.lr * (m[k] / c1) / torch.sqrt(v[k] / c2 + self.eps ** 2)
               for k, p in params.items()}
        return new, {"m": m, "v": v, "t": t}

    def parameters(self) -> Params:
        return {}


def preprocess(x: Tensor, p: float = 10.0) -> Tensor:
    """Andrychowicz et al. (2016), Appendix A: ``x [...]`` -> ``[..., 2]``, ``(log|x| / p,
    sign x)`` where ``|x| >= e^-p``, else ``(-1, e^p x)``: inputs of every magnitude on one
    scale for an LSTM."""
    big = x.abs() >= math.exp(-p)
    log = torch.where(big, x.abs().clamp_min(math.exp(-p)).log() / p, -torch.ones_like(x))
    sign = torch.where(big, torch.sign(x), math.exp(p) * x)
    return torch.stack([log, sign], -1)


def lstm_cell(x: Tensor, h: Tensor, c: Tensor, weight_x: Tensor, weight_h: Tensor, bias: Tensor
              ) -> tuple[Tensor, Tensor]:
    """A standard LSTM cell in tensor ops (so it runs under vmap with exact second-order
    gradients): ``x [P, I]``, ``h, c [P, H]``, ``weight_x [4H, I]``, ``weight_h [4H, H]``,
    ``bias [4H]`` (gate order i, f, g, o as ``torch.nn.LSTMCell``) -> new ``h, c [P, H]``."""
    i, f, g, o = (x @ weight_x.T + h @ weight_h.T + bias).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


@dataclass(frozen=True, eq=False)
class MetaLSTM:
    """The meta-learner LSTM of Ravi & Larochelle (2017), "Optimization as a Model for Few-Shot
    Learning", as an update rule: its cell state is the learner's parameters.

    Coordinate-wise: every parameter entry is one row of a batch, so one small LSTM is shared by
    all of them. Per entry, a standard LSTM cell reads the preprocessed loss and gradient
    (Andrychowicz et al., p = 10) and its output ``h`` feeds the paper's cell::

        f_t = W_F [h_t, theta_{t-1}, f_{t-1}] + b_F
        i_t = W_I [h_t, theta_{t-1}, i_{t-1}] + b_I
        theta_t = sigmoid(f_t) * theta_{t-1} - sigmoid(i_t) * grad_t

    The learner's loss and gradients are inputs taken as constants (the paper's Section 3.2),
    so the meta-gradient reaches theta_0 (the cell state's learned start) through the forget
    path and the gates, and needs no second derivatives of the learner.
    ``weights`` holds the learnable tensors (see :meth:`create`).
    """

    weights: Mapping[str, Tensor]
    p: float = 10.0

    @classmethod
    def create(cls, hidden: int = 20, forget_bias: tuple[float, float] = (4.0, 6.0),
               input_bias: tuple[float, float] = (-5.0, -4.0), dtype: torch.dtype | None = None,
               device: torch.device | str | None = None) -> MetaLSTM:
        """Fresh learnable tensors (leaf, drawn from torch's global generator): the LSTM as
        ``torch.nn.LSTMCell`` initialises it, gate weights uniform in +-0.01, the forget bias
        uniform in ``forget_bias`` (high: theta is kept) and the input bias in ``input_bias``
        (low: small first steps), as the paper's code."""
        kw = dict(dtype=dtype or torch.get_default_dtype(), device=device)
        bound = 1 / math.sqrt(hidden)
        weights = {
            "lstm.weight_x": torch.empty(4 * hidden, 4, **kw).uniform_(-bound, bound),
            "lstm.weight_h": torch.empty(4 * hidden, hidden, **kw).uniform_(-bound, bound),
            "lstm.bias": torch.empty(4 * hidden, **kw).uniform_(-bound, bound),
            "forget.weight": torch.empty(hidden + 2, **kw).uniform_(-0.01, 0.01),
            "forget.bias": torch.empty((), **kw).uniform_(*forget_bias),
            "input.weight": torch.empty(hidden + 2, **kw).uniform_(-0.01, 0.01),
            "input.bias": torch.empty((), **kw).uniform_(*input_bias),
        }
        return cls({k: v.requires_grad_() for k, v in weights.items()})

    @property
    def hidden(self) -> int:
        return self.weights["lstm.weight_h"].shape[1]

    def init(self, params: Params) -> dict[str, Tensor]:
        """Zero LSTM state ``h, c [P, H]`` and previous gates ``f, i [P]`` for ``P`` entries."""
        n = sum(v.numel() for v in params.values())
        like = next(iter(params.values()))
        zeros = lambda *shape: like.new_zeros(*shape)
        return {"h": zeros(n, self.hidden), "c": zeros(n, self.hidden), "f": zeros(n),
                "i": zeros(n)}

    def update(self, params: Params, grads: Params, state: Any, loss: Tensor
               ) -> tuple[Params, Any]:
        w = self.weights
        theta = torch.cat([v.reshape(-1) for v in params.values()])  # the cell state [P]
        grad = torch.cat([g.reshape(-1) for g in grads.values()]).detach()
        loss = loss.detach().expand_as(grad)
        x = torch.cat([preprocess(loss, self.p), preprocess(grad, self.p)], -1)  # [P, 4]
        h, c = lstm_cell(x, state["h"], state["c"], w["lstm.weight_x"], w["lstm.weight_h"],
                         w["lstm.bias"])
        f = torch.cat([h, theta[:, None], state["f"][:, None]], -1) @ w["forget.weight"] \
            + w["forget.bias"]
        i = torch.cat([h, theta[:, None], state["i"][:, None]], -1) @ w["input.weight"] \
            + w["input.bias"]
        theta = torch.sigmoid(f) * theta - torch.sigmoid(i) * grad
        new, start = {}, 0
        for k, v in params.items():
            new[k] = theta[start : start + v.numel()].view_as(v)
            start += v.numel()
        return new, {"h": h, "c": c, "f": f, "i": i}

    def parameters(self) -> Params:
        return dict(self.weights)
