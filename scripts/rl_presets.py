"""Meta-RL experiment config and presets with the published hyperparameters.

``-v0`` presets follow the public PyTorch MAML-RL reference (horizon 100, 64x64 tanh policy);
``-paper`` presets follow Finn et al. (2017): 100x100 ReLU policy, horizon 200 for locomotion.
Common to both: inner lr 0.1, one inner step, 20 episodes per task, meta-batch 20 (navigation)
or 40 (MuJoCo), gamma 0.99, GAE lambda 1, TRPO max KL 0.01, 500 meta-iterations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import tyro

from metarl.config import RLConfig


@dataclass(frozen=True)
class MetaRL:
    """A meta-RL experiment."""

    rl: Annotated[RLConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=RLConfig)
    out: str | None = None
    """Run directory (default: runs/<env>-<algo>[-pretrain], e.g. runs/Navigation2D-maml-trpo)."""
    resume: bool = False
    """Continue the run in --out from its last checkpoint."""

    @property
    def run_dir(self) -> str:
        env = self.rl.env_id.split("/")[-1].removesuffix("-v0")
        return self.out or f"runs/{env}-{self.rl.algo}{'-pretrain' * self.rl.pretrain}"


_PAPER = dict(hidden=(100, 100), nonlinearity="relu")


def _preset(env: str, doc: str, **kw) -> tuple[str, MetaRL]:
    return doc, MetaRL(rl=RLConfig(env_id=f"metarl/{env}-v0", **kw))


RL_PRESETS: dict[str, tuple[str, MetaRL]] = {
    "nav2d": _preset("Navigation2D", "2D navigation, reference settings (meta-batch 20).",
                     meta_batch=20),
    "nav2d-paper": _preset("Navigation2D", "2D navigation, Finn et al. policy (100x100 ReLU).",
                           meta_batch=20, **_PAPER),
    "cheetah-vel": _preset("HalfCheetahVel", "HalfCheetah velocity, reference (horizon 100).",
                           meta_batch=40),
    "cheetah-dir": _preset("HalfCheetahDir", "HalfCheetah direction, reference (horizon 100).",
                           meta_batch=40),
    "ant-vel": _preset("AntVel", "Ant velocity, reference (horizon 100).", meta_batch=40),
    "ant-dir": _preset("AntDir", "Ant direction, reference (horizon 100).", meta_batch=40),
    "cheetah-vel-paper": _preset("HalfCheetahVelH200", "HalfCheetah velocity, Finn et al. "
                                 "(horizon 200, 100x100 ReLU).", meta_batch=40, **_PAPER),
    "cheetah-dir-paper": _preset("HalfCheetahDirH200", "HalfCheetah direction, Finn et al. "
                                 "(horizon 200, 100x100 ReLU).", meta_batch=40, **_PAPER),
    "ant-vel-paper": _preset("AntVelH200", "Ant velocity, Finn et al. (horizon 200).",
                             meta_batch=40, **_PAPER),
    "ant-dir-paper": _preset("AntDirH200", "Ant direction, Finn et al. (horizon 200, 40 "
                             "episodes per step).", meta_batch=40, episodes=40, **_PAPER),
}
