"""Task distributions: Gymnasium task environments and their batched simulators.

Importing ``envs`` registers every RL family under the ``metarl/`` namespace, e.g.
``gymnasium.make("metarl/HalfCheetahVel-v0")``. The ``-v0`` ids use horizon 100 (the public
PyTorch MAML-RL reference); the ``H200`` ids use the paper's horizon 200 for locomotion.
Each env has ``sample_tasks(n, rng)`` and ``set_task(task)`` (or ``reset(options={"task": t})``);
``make_batched(env_id, n)`` builds the lockstep simulator of the same family.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium

from envs.ant import ANT_DIR, ANT_VEL
from envs.batched import BatchedSim, instance_seeds
from envs.half_cheetah import HALF_CHEETAH_DIR, HALF_CHEETAH_VEL
from envs.mujoco_family import MujocoBatchedSim, MujocoFamily
from envs.point_nav import Navigation2DBatchedSim
from envs.tasks import DirectionTask, GoalTask, VelocityTask

NAMESPACE = "metarl"

# id -> (entry point, horizon, batched-sim factory(n, nthread))
_ENVS: dict[str, tuple[str, int, Callable[..., BatchedSim]]] = {}


def _mujoco_factory(family: MujocoFamily, env_id: str) -> Callable[..., BatchedSim]:
    def make(n: int, nthread: int = 0) -> BatchedSim:
        return MujocoBatchedSim(family, n, nthread, name=env_id)

    return make


def _register_all() -> None:
    def nav(n: int, nthread: int = 0) -> BatchedSim:
        return Navigation2DBatchedSim(n, name=f"{NAMESPACE}/Navigation2D-v0")

    _ENVS[f"{NAMESPACE}/Navigation2D-v0"] = ("envs.point_nav:Navigation2DEnv", 100, nav)
    for family, module, cls in [
        (HALF_CHEETAH_VEL, "half_cheetah", "HalfCheetahVelEnv"),
        (HALF_CHEETAH_DIR, "half_cheetah", "HalfCheetahDirEnv"),
        (ANT_VEL, "ant", "AntVelEnv"),
        (ANT_DIR, "ant", "AntDirEnv"),
    ]:
        for suffix, horizon in [("", 100), ("H200", 200)]:
            env_id = f"{NAMESPACE}/{family.name}{suffix}-v0"
            _ENVS[env_id] = (f"envs.{module}:{cls}", horizon, _mujoco_factory(family, env_id))
    for env_id, (entry_point, horizon, _) in _ENVS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point=entry_point, max_episode_steps=horizon)


_register_all()

ENV_IDS: tuple[str, ...] = tuple(_ENVS)


def _lookup(env_id: str) -> tuple[str, int, Callable[..., BatchedSim]]:
    if env_id not in _ENVS:
        raise ValueError(f"unknown env id {env_id!r}; the registered ids are {', '.join(ENV_IDS)}")
    return _ENVS[env_id]


def horizon(env_id: str) -> int:
    """The preset horizon (``max_episode_steps``) of a registered id."""
    return _lookup(env_id)[1]


def make_batched(env_id: str, n: int, nthread: int = 0) -> BatchedSim:
    """The lockstep simulator of ``env_id``'s family with ``n`` instances.

    ``nthread`` is the MuJoCo thread pool size (0: all cores); ignored for 2D navigation.
    """
    return _lookup(env_id)[2](n, nthread)


__all__ = [
    "ENV_IDS",
    "BatchedSim",
    "DirectionTask",
    "GoalTask",
    "VelocityTask",
    "horizon",
    "instance_seeds",
    "make_batched",
]
