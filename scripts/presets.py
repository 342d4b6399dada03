"""Experiment configs and their named presets (``metarl-train PRESET --key value``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import tyro

from envs.sinusoid import Sinusoid
from metarl.config import MetaConfig

Task = Sinusoid


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


CONFIG_TYPES: dict[str, type] = {t.__name__: t for t in (Supervised, MetaConfig, Sinusoid)}

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
}
