"""A batch of episodes for a meta-batch of tasks, as ``[T, tasks, episodes, ...]`` tensors.

Registered as a pytree, so ``torch.func.vmap(per_task_loss, in_dims=1)(episodes)`` maps a
per-task loss over the task dimension (each call then sees ``[T, E, ...]`` fields).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch.utils._pytree as pytree
from torch import Tensor

_TENSOR_FIELDS = ("observations", "actions", "rewards", "log_probs", "mask")


@dataclass(frozen=True)
class Episodes:
    """``observations [T, N, E, obs]``, ``actions [T, N, E, act]`` (``[T, N, E]`` if discrete),
    ``rewards, log_probs, mask [T, N, E]``; ``mask`` is 1.0 for steps that happened (0.0 after
    termination). ``log_probs`` are the sampling policy's (detached). ``tasks`` (length ``N``)
    is metadata, not mapped by ``vmap``."""

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    log_probs: Tensor
    mask: Tensor
    tasks: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        t = self.rewards.shape
        for name in ("log_probs", "mask"):
            if getattr(self, name).shape != t:
                shape = tuple(getattr(self, name).shape)
                raise ValueError(f"Episodes.{name} has shape {shape}, rewards {tuple(t)}")
        if self.observations.shape[: len(t)] != t or self.actions.shape[: len(t)] != t:
            raise ValueError(
                f"Episodes: observations {tuple(self.observations.shape)} and actions "
                f"{tuple(self.actions.shape)} must start with the rewards' shape {tuple(t)}"
            )

    @property
    def lengths(self) -> Tensor:
        """Steps each episode lasted: ``[..., E]`` (the mask summed over time)."""
        return self.mask.sum(0)

    @property
    def total_rewards(self) -> Tensor:
        """Undiscounted return of each episode: ``[..., E]``."""
        return (self.rewards * self.mask).sum(0)

    @property
    def num_steps(self) -> int:
        """Environment steps that happened."""
        return int(self.mask.sum().item())


def _flatten(e: Episodes) -> tuple[list[Tensor], Any]:
    return [getattr(e, f) for f in _TENSOR_FIELDS], e.tasks


def _unflatten(values: Any, tasks: Any) -> Episodes:
    # Bypasses __post_init__: pytree transforms (vmap) rebuild with placeholder leaves.
    obj = object.__new__(Episodes)
    for name, v in zip(_TENSOR_FIELDS, values):
        object.__setattr__(obj, name, v)
    object.__setattr__(obj, "tasks", tasks)
    return obj


def _flatten_with_keys(e: Episodes) -> tuple[list[tuple[Any, Tensor]], Any]:
    return [(pytree.GetAttrKey(f), getattr(e, f)) for f in _TENSOR_FIELDS], e.tasks


assert {f.name for f in fields(Episodes)} == {*_TENSOR_FIELDS, "tasks"}
pytree.register_pytree_node(
    Episodes,
    _flatten,
    _unflatten,
    serialized_type_name="metarl.episodes.Episodes",
    flatten_with_keys_fn=_flatten_with_keys,
)
