"""Task distributions: supervised task families and task-distributed Gymnasium environments.

Supervised families (:mod:`~metarl.envs.sinusoid`, :mod:`~metarl.envs.omniglot`) implement
:class:`metarl.tasks.TaskFamily`. The RL families are registered with Gymnasium under the
``metarl/`` namespace when this package is imported, e.g.
``gymnasium.make("metarl/HalfCheetahVel-v0")``; registration imports no simulator (the entry
points are strings). The ``-v0`` ids use horizon 100 (the public PyTorch MAML-RL reference);
the ``H200`` ids use the paper's horizon 200 for locomotion. Each env has
``sample_tasks(n, rng)`` and ``set_task(task)`` (or ``reset(options={"task": t})``);
:func:`make_batched` builds the lockstep simulator of the same family, and
``gymnasium.make_vec(id, num_envs)`` a Gymnasium vector env on it (:mod:`metarl.envs.vector`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import gymnasium
from gymnasium.envs.registration import load_env_creator

from metarl.envs.tasks import DirectionTask, GoalTask, VelocityTask
from metarl.simulator import BatchedSim

NAMESPACE = "metarl"

# Headless machines render MuJoCo offscreen with EGL, unless told otherwise (read by MuJoCo
# when it is first imported, which the family modules do).
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"

# One line per RL family: (module, Gymnasium env class, horizons). The class gives
# ``sample_tasks``, ``set_task`` and ``make_batched(n, nthread, name)``.
_FAMILIES = [
    ("point_nav", "Navigation2D", {"": 100}),
    ("point_nav", "Navigation2DNormalized", {"": 100}),
    ("half_cheetah", "HalfCheetahVel", {"": 100, "H200": 200}),
    ("half_cheetah", "HalfCheetahDir", {"": 100, "H200": 200}),
    ("ant", "AntVel", {"": 100, "H200": 200}),
    ("ant", "AntDir", {"": 100, "H200": 200}),
    ("ant", "AntVelFinn", {"": 200}),
    ("ant", "AntDirFinn", {"": 200}),
]

# id -> (entry point, horizon)
ENVS: dict[str, tuple[str, int]] = {
    f"{NAMESPACE}/{name}{suffix}-v0": (f"metarl.envs.{module}:{name}Env", horizon)
    for module, name, horizons in _FAMILIES for suffix, horizon in horizons.items()
}
ENV_IDS: tuple[str, ...] = tuple(ENVS)



def _vector_env(env_id: str, entry_point: str, num_envs: int, **kwargs: Any) -> Any:
    """``gymnasium.make_vec``'s native vector env of ``env_id`` (see :mod:`metarl.envs.vector`)."""
    from metarl.envs.vector import TaskVectorEnv

    return TaskVectorEnv(env_id, num_envs, entry_point, **kwargs)


for _id, (_entry_point, _horizon) in ENVS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(_id, entry_point=_entry_point, max_episode_steps=_horizon,
                           vector_entry_point=functools.partial(_vector_env, _id,
                                                                _entry_point))


def _lookup(env_id: str) -> tuple[str, int]:
    if env_id not in ENVS:
        raise ValueError(f"unknown env id {env_id!r}; the registered ids are {', '.join(ENV_IDS)}")
    return ENVS[env_id]


def horizon(env_id: str) -> int:
    """The preset horizon (``max_episode_steps``) of a registered id."""
    return _lookup(env_id)[1]


def make_batched(env_id: str, n: int, nthread: int = 0) -> BatchedSim:
    """The lockstep simulator of ``env_id``'s family with ``n`` instances.

    ``nthread`` is the MuJoCo thread pool size (0: all cores); ignored for 2D navigation.
    """
    env_class = load_env_creator(_lookup(env_id)[0])
    for name, value, least in (("n", n, 1), ("nthread", nthread, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"make_batched({env_id!r}): {name} must be an integer >= {least}, "
                             f"got {value!r}")
    return env_class.make_batched(n, nthread=nthread, name=env_id)


__all__ = ["ENVS", "ENV_IDS", "DirectionTask", "GoalTask", "VelocityTask", "horizon",
           "make_batched"]
