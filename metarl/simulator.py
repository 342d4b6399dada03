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
    def reset(self, tasks: Sequence[Any], seeds: Sequence[int | None] | None = None,
              ids: Sequence[int] | None = None) -> np.ndarray:
        """Start instances ``ids`` (default: all) with one task and one seed each; returns
        their observations ``[len(ids), obs]``.

        Instance ``i`` with seed ``s`` starts exactly as ``env.reset(seed=s, options={"task": t})``
        of the Gymnasium env; a seed of ``None`` (or no seeds) continues the instance's own
        random stream, as ``env.reset()`` does. The first reset of an instance needs a seed.
        """

    @abstractmethod
    def step(
        self, actions: np.ndarray, active: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step with ``actions [B, act]``; returns ``obs [B, obs], rewards [B], terminated [B]``.

        Instances with ``active[i] == False`` (already terminated) may be skipped; their outputs
        are then meaningless and must be masked by the caller.
        """

    @abstractmethod
    def set_tasks(self, tasks: Sequence[Any], ids: Sequence[int] | None = None) -> None:
        """Give instances ``ids`` (default: all) new tasks; their next rewards use them."""

    def load_into(self, i: int, env: Any) -> None:
        """Set ``env``, a Gymnasium env of the same family, to instance ``i``'s state and task,
        e.g. to render that instance."""
        raise NotImplementedError(f"{type(self).__name__} cannot hand an instance to an env")

    def _reset_ids(self, tasks: Sequence[Any], seeds: Sequence[int | None] | None,
                   ids: Sequence[int] | None) -> np.ndarray:
        """``ids`` as an index array, checked against the tasks and seeds given for them."""
        index = np.arange(self.n) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids is not None and (len(np.unique(index)) != len(index) or index.min(initial=0) < 0
                                or index.max(initial=0) >= self.n):
            raise ValueError(f"{self.name}: instance ids must be distinct and in "
                             f"[0, {self.n}), got {list(index)}")
        if len(tasks) != len(index):
            raise ValueError(f"{self.name}: got {len(tasks)} tasks for {len(index)} instances")
        if seeds is not None and len(seeds) != len(index):
            raise ValueError(f"{self.name}: got {len(seeds)} seeds for {len(index)} instances")
        return index


def instance_seeds(seed: int, n: int) -> list[int]:
    """``n`` distinct reset seeds derived from one seed (``SeedSequence``, so no overlap)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)]
