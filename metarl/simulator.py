"""The batched-simulator contract: ``B`` instances stepped in lockstep, each with its own task.

The sampler (:mod:`metarl.sampler`) drives any :class:`BatchedSim`; the task families in
``metarl.envs`` implement it. Arrays are ``[B, ...]`` numpy float64 on the CPU. The sampler lays
instances out task-major (instance ``i`` runs task ``i // episodes`` and its episode
``i % episodes``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np


class BatchedSim(ABC):
    """``n`` instances of one task family; rewards from the family's single reward function."""

    name: str  # the Gymnasium id it mirrors, for error messages
    n: int
    obs_dim: int
    act_dim: int
    task_type: type

    @abstractmethod
    def reset(self, tasks: Sequence[Any], seeds: Sequence[int] | None = None) -> np.ndarray:
        """Start every instance (``tasks``, ``seeds``: length ``n``); returns obs ``[B, obs]``.

        Instance ``i`` with seed ``s`` starts exactly as ``env.reset(seed=s, options={"task": t})``
        of the Gymnasium env; without seeds each instance continues its own random stream.
        """

    @abstractmethod
    def step(
        self, actions: np.ndarray, active: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step with ``actions [B, act]``; returns ``obs [B, obs], rewards [B], terminated [B]``.

        Instances with ``active[i] == False`` (already terminated) may be skipped; their outputs
        are then meaningless and must be masked by the caller.
        """


def instance_seeds(seed: int, n: int) -> list[int]:
    """``n`` distinct reset seeds derived from one seed (``SeedSequence``, so no overlap)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)]
