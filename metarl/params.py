"""Functional parameters: a model's weights as a plain ``dict[str, Tensor]``.

Adapted weights are never written back into a module; every forward pass goes through
``torch.func.functional_call`` with the params it is given, so one module serves the
meta-parameters, each task's adapted params and a vmapped stack of them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

Params = dict[str, Tensor]


def params_of(module: nn.Module) -> Params:
    """The module's own (leaf, trainable) parameters, by name."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def forward_fn(module: nn.Module) -> Callable[..., Tensor]:
    """``f(params, *inputs)``: the module's forward pass with the given params."""

    def f(params: Mapping[str, Tensor], *inputs: Tensor) -> Tensor:
        return functional_call(module, dict(params), inputs)

    return f


def detach(params: Mapping[str, Tensor]) -> Params:
    return {k: v.detach() for k, v in params.items()}


def clone_params(params: Mapping[str, Tensor], requires_grad: bool = True) -> Params:
    """Fresh leaf tensors with the same values (e.g. meta-parameters loaded from a checkpoint)."""
    return {k: v.detach().clone().requires_grad_(requires_grad) for k, v in params.items()}


def expand(params: Mapping[str, Tensor], n: int) -> Params:
    """The same params for ``n`` tasks: each ``[...]`` becomes ``[n, ...]`` (a view, no copy)."""
    return {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in params.items()}


def flatten(params: Mapping[str, Tensor]) -> Tensor:
    """All params as one vector ``[P]`` in the dict's order."""
    return torch.cat([v.reshape(-1) for v in params.values()])


def unflatten(vector: Tensor, like: Mapping[str, Tensor]) -> Params:
    """Inverse of :func:`flatten`: split ``vector [P]`` into tensors shaped like ``like``."""
    out, i = {}, 0
    for k, v in like.items():
        out[k] = vector[i : i + v.numel()].view_as(v)
        i += v.numel()
    if i != vector.numel():
        raise ValueError(f"vector has {vector.numel()} elements, params need {i}")
    return out


def count(params: Mapping[str, Tensor]) -> int:
    return sum(v.numel() for v in params.values())
