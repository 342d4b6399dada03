"""The experiments the commands run: an algorithm of the registry, the tasks it meets, the
settings it shares with the other algorithms of its kind, and where the run is written.

The algorithm is a subcommand (``metarl-train sinusoid reptile``); its options follow it or
the preset (``metarl-train sinusoid --outer-lr 3e-4`` picks the preset's default algorithm).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import tyro

from metarl.algos import ALGORITHMS, of_kind
from metarl.algos.maml import MAML
from metarl.algos.maml_trpo import MAMLTRPO, TrustRegion
from metarl.algos.meta_rl import torch_threads
from metarl.algos.supervised import check_family
from metarl.checkpoint import load_checkpoint
from metarl.cli import subcommands
from metarl.config import MetaConfig, RLConfig, check
from metarl.envs import ENV_IDS, ray_sampler
from metarl.errors import CheckpointError, ConfigError
from metarl.logger import Run
from metarl.tasks import TaskFamily


def _algorithms(kind: str) -> Any:
    """``kind``'s registered algorithm configs, each a subcommand under its ``name``."""
    return subcommands((cls.name, cls, cls.__doc__, None) for cls in of_kind(kind))


SupervisedAlgorithms = _algorithms("supervised")
RLAlgorithms = _algorithms("rl")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Where an experiment's run is written, and whether it continues one (the experiment gives
    ``tag`` and ``algo``)."""

    out: str | None = None
    """Run directory (default: runs/<name>-<algorithm>, e.g. runs/sinusoid-k10-maml)."""
    name: str | None = None
    """The run's name in its default directory (default: the task's, e.g. sinusoid-k10)."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint."""

    def __post_init__(self) -> None:
        for option in ("out", "name"):
            value = getattr(self, option)
            check(value is None or (isinstance(value, str) and value.strip() != ""),
                  f"--{option} must name a folder, got {value!r}")

    @property
    def run_dir(self) -> str:
        return self.out or f"runs/{self.name or self.tag}-{self.algo.name}"


@tyro.conf.configure(tyro.conf.CascadeSubcommandArgs)
@dataclass(frozen=True)
class Supervised(RunOptions):
    """A supervised meta-learning experiment: a task family, an algorithm and their settings."""

    task: Any
    """The task family's config (e.g. Sinusoid, Omniglot): ``tag`` names it and ``build()``
    gives its :class:`~metarl.tasks.TaskFamily`."""
    algo: Annotated[SupervisedAlgorithms, tyro.conf.OmitSubcommandPrefixes] = field(
        default_factory=MAML)
    meta: Annotated[MetaConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=MetaConfig)

    @property
    def tag(self) -> str:
        return self.task.tag

    @property
    def settings(self) -> MetaConfig:
        return self.meta

    def prepare(self) -> TaskFamily:
        """The task family, built (data loaded) and checked against the algorithm before the
        run folder exists."""
        family = self.task.build()
        check_family(self.algo, family)
        return family

    def train(self, family: TaskFamily, run: Run, resume: dict | None) -> None:
        ALGORITHMS[type(self.algo)](self.algo, family, self.meta, run, resume)


@tyro.conf.configure(tyro.conf.CascadeSubcommandArgs)
@dataclass(frozen=True)
class MetaRL(RunOptions):
    """A meta-RL experiment: a task-distributed environment, an algorithm and their settings."""

    algo: Annotated[RLAlgorithms, tyro.conf.OmitSubcommandPrefixes] = field(
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
        if self.rl.sampler == "ray":  # Ray installed, its cluster reachable
            ray_sampler.check(self.rl.ray_address)

    def train(self, family: None, run: Run, resume: dict | None) -> None:
        with torch_threads(self.rl.torch_threads):
            ALGORITHMS[type(self.algo)](self.algo, self.rl, run, resume)


Experiment = Supervised | MetaRL


def local_sampling(rl: RLConfig) -> RLConfig:
    """``rl`` sampling in this process: evaluating or watching a run trained on Ray needs no
    cluster (where episodes are sampled is not part of a run)."""
    return replace(rl, sampler="local", ray_address=None, ray_actors=None)


def load_run(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """A run's checkpoint (its folder or file), in the current layout whichever version wrote
    it."""
    return upgrade_v1(load_checkpoint(path, map_location=device))


def upgrade_v1(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of format v1 (metarl 0.1: the algorithm named by ``method``, ``algo`` and
    ``pretrain`` fields of the shared settings, Meta-SGD's rates stored as ``inner_lr``) in the
    current layout; later formats unchanged."""
    if checkpoint["format"] != "metarl-checkpoint-v1":
        return checkpoint
    config, state = dict(checkpoint["config"]), dict(checkpoint["state"])
    if config.get("__class__") == "Supervised":
        meta = dict(config["meta"])
        method, outer_lr, epsilon = meta.pop("method"), meta.pop("outer_lr"), meta.pop(
            "reptile_epsilon")
        names = {"maml": "MAML", "fomaml": "FOMAML", "metasgd": "MetaSGD", "pretrain": "Pretrain"}
        if method == "reptile":
            algo = {"__class__": "Reptile", "epsilon": epsilon}
        else:
            algo = {"__class__": names[method], "outer_lr": outer_lr}
        config.update(meta=meta, algo=algo)
        rates = state.pop("inner_lr")
        state["rule"] = rates if isinstance(rates, dict) else {}
    elif config.get("__class__") == "MetaRL":
        rl = dict(config["rl"])
        name, pretrain, first_order, outer_lr = (rl.pop(k) for k in ("algo", "pretrain",
                                                                      "first_order", "outer_lr"))
        # Fields added to TrustRegion since v1 keep their defaults.
        trpo = {"__class__": "TrustRegion", **{f.name: rl.pop(f.name)
                                                 for f in dataclasses.fields(TrustRegion)
                                                 if f.name in rl}}
        if pretrain and name != "maml-trpo":
            raise CheckpointError("this run is metarl 0.1's pretraining baseline with a "
                                  "REINFORCE outer step, which this version does not train; "
                                  "evaluate it with metarl 0.1")
        if pretrain:
            algo = {"__class__": "PretrainTRPO", "trpo": trpo}
        elif name == "maml-trpo":
            algo = {"__class__": "MAMLTRPO", "first_order": first_order, "trpo": trpo}
        else:
            algo = {"__class__": "MAMLReinforce", "outer_lr": outer_lr, "first_order": first_order}
        config.update(rl=rl, algo=algo)
    return {**checkpoint, "config": config, "state": state}


def config_types(task_types: tuple[type, ...]) -> dict[str, type]:
    """Every config class a saved run may name, by class name (for ``from_dict``)."""
    classes = (Supervised, MetaRL, MetaConfig, RLConfig, TrustRegion, *ALGORITHMS, *task_types)
    return {cls.__name__: cls for cls in classes}
