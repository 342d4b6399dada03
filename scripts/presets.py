"""Experiment configs and their named presets (``metarl-train PRESET --key value``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import tyro

from envs.omniglot import Omniglot
from envs.sinusoid import Sinusoid
from metarl.config import MetaConfig

Task = Sinusoid | Omniglot


@dataclass(frozen=True)
class Supervised:
    """A supervised meta-learning experiment: a task family and a meta-learner."""

    task: Task
    meta: Annotated[MetaConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=MetaConfig)
    out: str | None = None
    """Run directory (default: runs/<task>-<method>, e.g. runs/sinusoid-k10-maml)."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint."""

    @property
    def run_dir(self) -> str:
        return self.out or f"runs/{self.task.tag}-{self.meta.method}"


CONFIG_TYPES: dict[str, type] = {t.__name__: t for t in (Supervised, MetaConfig, Sinusoid,
                                                               Omniglot)}

PRESETS: dict[str, tuple[str, Supervised]] = {
    "sinusoid": (
        "Sinusoid regression, K=10 (Finn et al. 2017): 1 inner step of 0.01, meta-batch 25, "
        "Adam 1e-3; 10k iterations here (the paper: 70k).",
        Supervised(task=Sinusoid(shots=10), meta=MetaConfig(iterations=10_000, meta_batch=25,
                                                            inner_lr=0.01, inner_steps=1)),
    ),
    "sinusoid-5shot": (
        "Sinusoid regression, K=5.",
        Supervised(task=Sinusoid(shots=5), meta=MetaConfig(iterations=10_000)),
    ),
    **{
        f"omniglot-{ways}w{shots}s": (
            f"Omniglot {ways}-way {shots}-shot, Conv4 (Finn et al. 2017): meta-batch {batch}, "
            f"{steps} inner step(s) of {lr}, Adam 1e-3, 60k iterations; evaluate with 10 steps "
            "on 600 test tasks. Sized for a GPU (--device cuda).",
            Supervised(task=Omniglot(ways=ways, shots=shots),
                       meta=MetaConfig(iterations=60_000, meta_batch=batch, inner_lr=lr,
                                       inner_steps=steps, outer_lr=1e-3, log_every=100,
                                       checkpoint_every=1000)),
        )
        for ways, shots, batch, lr, steps in ((5, 1, 32, 0.4, 1), (5, 5, 32, 0.4, 1),
                                              (20, 1, 16, 0.1, 5), (20, 5, 16, 0.1, 5))
    },
    "omniglot-5w1s-cpu": (
        "Omniglot 5-way 1-shot MAML within about an hour on 2 shared CPU cores (1.5-2.4 it/s "
        "measured; set OMP_NUM_THREADS=1 when the cores are shared): the published settings "
        "(meta-batch 32, 1 inner step of 0.4, Adam 1e-3) for 4,000 iterations instead of 60k.",
        Supervised(task=Omniglot(ways=5, shots=1),
                   meta=MetaConfig(iterations=4_000, meta_batch=32, inner_lr=0.4, inner_steps=1,
                                   outer_lr=1e-3, log_every=50, checkpoint_every=250)),
    ),
}
