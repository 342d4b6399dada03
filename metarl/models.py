"""Multilayer perceptrons for the supervised task families and the policies."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """``sizes = (in, h1, ..., out)``; activation between layers, none after the last."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown nonlinearity {activation!r}; "
                         f"choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
