"""The experiments the commands run: an algorithm of the registry, the tasks it meets, the
settings it shares with the other algorithms of its kind, and where the run is written.

The algorithm is a subcommand (``metarl-train sinusoid reptile``); its options follow it or
the preset (``metarl-train sinusoid --outer-lr 3e-4`` picks the preset's default algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import tyro

from metarl.algos import ALGORITHMS, of_kind
from metarl.algos.maml import MAML
from metarl.algos.maml_trpo import MAMLTRPO, TrustRegion
from metarl.algos.meta_rl import torch_threads
from metarl.cli import subcommands
from metarl.config import MetaConfig, RLConfig
from metarl.envs import ENV_IDS
from metarl.errors import ConfigError
from metarl.logger import Run
from metarl.tasks import TaskFamily


def _algorithms(kind: str) -> Any:
    """``kind``'s registered algorithm configs, each a subcommand under its ``name``."""
    return subcommands((cls.name, cls, cls.__doc__, None) for cls in of_kind(kind))


SupervisedAlgorithm = _algorithms("supervised")
RLAlgorithm = _algorithms("rl")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Where an experiment's run is written, and whether it continues one (the experiment gives
    ``tag`` and ``algo``)."""

    out: str | None = None
    """Run directory (default: runs/<task>-<algorithm>, e.g. runs/sinusoid-k10-maml)."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint."""

    @property
    def run_dir(self) -> str:
        return self.out or f"runs/{self.tag}-{self.algo.name}"


@tyro.conf.configure(tyro.conf.CascadeSubcommandArgs)
@dataclass(frozen=True)
class Supervised(RunOptions):
    """A supervised meta-learning experiment: a task family, an algorithm and their settings."""

    task: Any
    """The task family's config (e.g. Sinusoid, Omniglot): ``tag`` names it and ``build()``
    gives its :class:`~metarl.tasks.TaskFamily`."""
    algo: Annotated[SupervisedAlgorithm, tyro.conf.OmitSubcommandPrefixes] = field(
        default_factory=MAML)
    meta: Annotated[MetaConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=MetaConfig)

    @property
    def tag(self) -> str:
        return self.task.tag

    @property
    def settings(self) -> MetaConfig:
        return self.meta

    def prepare(self) -> TaskFamily:
        """The task family, built (data loaded) before the run folder exists."""
        return self.task.build()

    def train(self, family: TaskFamily, run: Run, resume: dict | None) -> None:
        ALGORITHMS[type(self.algo)](self.algo, family, self.meta, run, resume)


@tyro.conf.configure(tyro.conf.CascadeSubcommandArgs)
@dataclass(frozen=True)
class MetaRL(RunOptions):
    """A meta-RL experiment: a task-distributed environment, an algorithm and their settings."""

    algo: Annotated[RLAlgorithm, tyro.conf.OmitSubcommandPrefixes] = field(
        default_factory=MAMLTRPO)
    rl: Annotated[RLConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=RLConfig)

    @property
    def tag(self) -> str:
        return self.rl.env_id.split("/")[-1].removesuffix("-v0")

    @property
    def settings(self) -> RLConfig:
        return self.rl

    def prepare(self) -> None:
        if self.rl.env_id not in ENV_IDS:
            raise ConfigError(f"unknown env id {self.rl.env_id!r}; choose one of "
                              f"{', '.join(ENV_IDS)}")

    def train(self, family: None, run: Run, resume: dict | None) -> None:
        with torch_threads(self.rl.torch_threads):
            ALGORITHMS[type(self.algo)](self.algo, self.rl, run, resume)


Experiment = Supervised | MetaRL


def config_types(task_types: tuple[type, ...]) -> dict[str, type]:
    """Every config class a saved run may name, by class name (for ``from_dict``)."""
    classes = (Supervised, MetaRL, MetaConfig, RLConfig, TrustRegion, *ALGORITHMS, *task_types)
    return {cls.__name__: cls for cls in classes}
