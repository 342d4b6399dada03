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

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from metarl.checkpoint import save_checkpoint
from metarl.errors import MetarlError
from metarl.memory import Usage
from metarl.video import Clip, tensorboard_video


class NonFiniteScalar(MetarlError):
    """A logged scalar (a loss, a return, a step statistic) became NaN or infinite."""


class NonFiniteState(MetarlError):
    """The parameters or the optimizer's state became NaN or infinite."""


LEARNING_RATES = "--inner-lr, --outer-lr, --epsilon or --max-kl"


def non_finite(tree: Any, path: str = "") -> str | None:
    """The first floating-point tensor in ``tree`` (nested dicts, lists) holding NaN or inf,
    by its path, or None."""
    if isinstance(tree, torch.Tensor):
        return path if tree.is_floating_point() and not torch.isfinite(tree).all() else None
    items = (tree.items() if isinstance(tree, Mapping) else
             enumerate(tree) if isinstance(tree, (list, tuple)) else ())
    for key, value in items:
        found = non_finite(value, f"{path}/{key}" if path else str(key))
        if found is not None:
            return found
    return None


def read_scalars(run_dir: str | Path, tag: str) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of scalar ``tag`` in a run directory's TensorBoard event files.

    A resumed run has one event file per session, and the session before may have logged
    iterations past its last checkpoint: as TensorBoard shows them, each session's values
    replace the earlier sessions' from its first logged iteration on.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(run_dir)
    files = list(run_dir.glob("events.out.tfevents.*"))
    if not files:
        raise MetarlError(f"{run_dir} has no TensorBoard event files; give a run directory "
                          "that metarl-train wrote")
    sessions = []
    for file in files:
        acc = EventAccumulator(str(file), size_guidance={"scalars": 0})
        acc.Reload()
        sessions.append((acc.FirstEventTimestamp(), file.name, acc))
    by_step: dict[int, float] = {}
    tags: set[str] = set()
    for _, _, acc in sorted(sessions, key=lambda s: s[:2]):  # in the order they started
        tags.update(acc.Tags()["scalars"])
        if tag in acc.Tags()["scalars"]:
            events = acc.Scalars(tag)
            first = min(e.step for e in events)
            by_step = {step: v for step, v in by_step.items() if step < first}
            by_step.update({e.step: e.value for e in events})
    if not by_step:
        raise MetarlError(f"{run_dir} logged no scalar {tag!r}; it has: "
                          f"{', '.join(sorted(tags)) or 'none'}")
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


class Run:
    """One training run: ``out_dir/config.json``, TensorBoard events and ``checkpoint.pt``.

    ``writes=False`` (the processes of a torchrun other than rank 0) keeps every check (a NaN
    still stops the run on every process alike) and writes nothing."""

    def __init__(self, out_dir: str | Path, config: Mapping[str, Any], total: int, start: int = 0,
                 log_every: int = 1, checkpoint_every: int = 1000, progress: bool = True,
                 video_every: int = 0, writes: bool = True) -> None:
        self.dir = Path(out_dir)
        self.config = dict(config)
        self.writes = writes
        if writes:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")
            for stale in self.dir.glob("checkpoint.pt*.tmp"):  # left by a killed checkpoint write
                stale.unlink(missing_ok=True)
        self.total, self.log_every, self.checkpoint_every = total, log_every, checkpoint_every
        self.video_every = video_every if writes else 0
        # A resumed run keeps what it logged up to its checkpoint and logs anew after it.
        self.writer = SummaryWriter(str(self.dir), purge_step=start + 1 if start else None) \
            if writes else None
        self.last_checkpoint = start
        self.bar = tqdm(total=total, initial=start, disable=not (progress and writes),
                        dynamic_ncols=True, unit="it")
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
                                      f"rates ({LEARNING_RATES}), or resume from the last "
                                      "checkpoint")
        if self.writer is None:
            return
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        peak = Usage.now().peak_rss_mb  # what the meta-batch costs, before it is scaled up
        self.writer.add_scalar("memory/peak_rss_mb", peak, step)
        self.bar.set_postfix({**{k.split("/")[-1]: f"{v:.4g}" for k, v in
                                 list(scalars.items())[:3]}, "peak": f"{peak / 1024:.2f}GB"},
                             refresh=False)

    def end_iteration(self, iteration: int, metrics: Callable[[], Mapping[str, float]],
                      state: Callable[[], Mapping[str, Any]],
                      videos: Callable[[], Mapping[str, tuple[Clip, float]]] | None = None
                      ) -> None:
        """Advance the bar; every ``log_every`` iterations log ``metrics()``, every
        ``checkpoint_every`` (and at the end) checkpoint ``state()``, every ``video_every``
        write ``videos()`` (``{tag: (frames, fps)}``). All are callables so the loop pays for
        ``.item()``, state copies and rendering only when they are due."""
        self.bar.update(1)
        if videos is not None and self.video_every and iteration % self.video_every == 0:
            for tag, (frames, fps) in videos().items():
                self.video(tag, frames, fps, iteration)
        last = iteration == self.total
        due_log = iteration % self.log_every == 0 or last
        due_ckpt = iteration % self.checkpoint_every == 0 or last
        if due_log or due_ckpt:
            self.log(iteration, metrics())  # raises on a NaN before a checkpoint is written
        if due_ckpt:
            self.checkpoint(state(), iteration)

    def video(self, tag: str, frames: Clip, fps: float, step: int) -> None:
        """An animated rollout in TensorBoard's Images tab."""
        self.writer._get_file_writer().add_summary(tensorboard_video(frames, fps, tag), step)

    def checkpoint(self, state: Mapping[str, Any], iteration: int) -> Path:
        """Write ``state`` unless it holds NaN or inf: then the last good checkpoint stays."""
        bad = non_finite(state)
        if bad is not None:
            raise NonFiniteState(f"{bad} became NaN or infinite by iteration {iteration}; the "
                                 f"checkpoint of iteration {self.last_checkpoint} is kept; lower "
                                 f"the learning rates ({LEARNING_RATES})")
        self.last_checkpoint = iteration
        if not self.writes:
            return self.checkpoint_path
        return save_checkpoint(self.checkpoint_path, {"config": self.config, "state": dict(state)})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.bar.close()
