"""Typed, frozen configs of the supervised meta-learners, and config (de)serialisation."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from metarl.errors import ConfigError

Method = Literal["maml", "fomaml", "metasgd", "reptile", "pretrain"]
METHODS: tuple[str, ...] = typing.get_args(Method)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_positive(name: str, value: float) -> None:
    check(isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
          f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class MetaConfig:
    """Hyperparameters of a supervised meta-learner (defaults: Finn et al. 2017, sinusoid)."""

    method: Method = "maml"
    """maml (second order), fomaml (first order), metasgd (learned per-parameter inner rates),
    reptile, or pretrain (one network trained on all tasks jointly, fine-tuned at test time)."""
    iterations: int = 10_000
    """Outer (meta) iterations."""
    meta_batch: int = 25
    """Tasks per outer step."""
    inner_lr: float = 0.01
    """Inner-loop SGD step size (Meta-SGD: initial value of the learned rates); also the
    fine-tuning step size at test time."""
    inner_steps: int = 1
    """Inner gradient steps during meta-training."""
    outer_lr: float = 1e-3
    """Adam step size of the outer loop (maml, fomaml, metasgd, pretrain)."""
    reptile_epsilon: float = 0.1
    """Reptile's outer step size, annealed linearly to 0 (Nichol et al. 2018)."""
    seed: int = 0
    device: str = "cpu"
    """torch device for the model and adaptation, e.g. cpu or cuda."""
    log_every: int = 100
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        check(self.method in METHODS, f"unknown method {self.method!r}; choose one of {METHODS}")
        for name in ("iterations", "meta_batch", "log_every", "checkpoint_every"):
            check(isinstance(getattr(self, name), int) and getattr(self, name) > 0,
                  f"{name} must be a positive integer, got {getattr(self, name)!r}")
        check(isinstance(self.inner_steps, int) and self.inner_steps >= 0,
              f"inner_steps must be a non-negative integer, got {self.inner_steps!r}")
        for name in ("inner_lr", "outer_lr", "reptile_epsilon"):
            check_positive(name, getattr(self, name))


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON-able data; nested configs keep their class name."""
    out: dict[str, Any] = {"__class__": type(config).__name__}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def from_dict(data: dict[str, Any], types: dict[str, type]) -> Any:
    """Inverse of :func:`to_dict`; ``types`` maps class names to the config classes allowed."""
    data = dict(data)
    name = data.pop("__class__", None)
    if name not in types:
        raise ConfigError(f"unknown config class {name!r}; known: {sorted(types)}")
    cls = types[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} for {name}; known keys: {sorted(known)}")
    kwargs = {k: from_dict(v, types) if isinstance(v, dict) and "__class__" in v else v
              for k, v in data.items()}
    for k, v in kwargs.items():  # JSON turns tuples into lists
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    return cls(**kwargs)
