"""Run directory, TensorBoard scalars and a progress bar with ETA.

A training loop owns its iteration loop and calls ``run.log(...)`` and ``run.checkpoint(...)``
explicitly; nothing here is a hidden callback.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from metarl.checkpoint import save_checkpoint
from metarl.errors import MetarlError
from metarl.memory import Usage


class NonFiniteScalar(MetarlError):
    """A logged scalar (a loss, a return, a step statistic) became NaN or infinite."""


class Run:
    """One training run: ``out_dir/config.json``, TensorBoard events and ``checkpoint.pt``."""

    def __init__(self, out_dir: str | Path, config: Mapping[str, Any], total: int, start: int = 0,
                 log_every: int = 1, checkpoint_every: int = 1000, progress: bool = True) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config)
        (self.dir / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
        self.total, self.log_every, self.checkpoint_every = total, log_every, checkpoint_every
        self.writer = SummaryWriter(str(self.dir), purge_step=start if start else None)
        self.bar = tqdm(total=total, initial=start, disable=not progress, dynamic_ncols=True,
                        unit="it")
        self._t0 = time.perf_counter()

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        """Write namespaced scalars (``"loss/query"``...) at ``step``; refuse NaN or infinite
        values loudly, before any of them is written."""
        for key, value in scalars.items():
            if not math.isfinite(value):
                raise NonFiniteScalar(f"{key} is {value} at iteration {step}; lower the learning "
                                      "rates, or resume from the last checkpoint")
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        peak = Usage.now().peak_rss_mb  # what the meta-batch costs, before it is scaled up
        self.writer.add_scalar("memory/peak_rss_mb", peak, step)
        self.bar.set_postfix({**{k.split("/")[-1]: f"{v:.4g}" for k, v in
                                 list(scalars.items())[:3]}, "peak": f"{peak / 1024:.2f}GB"},
                             refresh=False)

    def end_iteration(self, iteration: int, metrics: Callable[[], Mapping[str, float]],
                      state: Callable[[], Mapping[str, Any]]) -> None:
        """Advance the bar; every ``log_every`` iterations log ``metrics()``, every
        ``checkpoint_every`` (and at the end) checkpoint ``state()``. Both are callables so the
        loop pays for ``.item()`` and state copies only when they are due."""
        self.bar.update(1)
        last = iteration == self.total
        due_log = iteration % self.log_every == 0 or last
        due_ckpt = iteration % self.checkpoint_every == 0 or last
        if due_log or due_ckpt:
            self.log(iteration, metrics())  # raises on a NaN before a checkpoint is written
        if due_ckpt:
            self.checkpoint(state())

    def checkpoint(self, state: Mapping[str, Any]) -> Path:
        return save_checkpoint(self.checkpoint_path, {"config": self.config, "state": dict(state)})

    def close(self) -> None:
        self.writer.close()
        self.bar.close()
