"""One MuJoCo task family = one XML model + pure observation and reward functions.

Both the Gymnasium env (one ``MjData``, ``mujoco.mj_step``) and the batched simulator
(``mujoco.batch.Batch``, native thread pool) call the same ``observe`` and ``reward`` on
``[B, ...]`` arrays (``B = 1`` for the Gymnasium env), so there is one reward definition.

Physics, initial state and observation follow Gymnasium's v5 environments: the XML models
shipped with Gymnasium, ``frame_skip = 5``, ``qpos = qpos0 + U[-0.1, 0.1]``,
``qvel = 0.1 * N(0, 1)``, drawn from the env's ``np_random`` (the same seed gives the same start
in both paths). Actions are clipped to the actuators' ``ctrlrange`` ([-1, 1] for both robots,
which MuJoCo would clamp to anyway), but the control cost is charged on the raw action, as in
Gymnasium v5 and the MAML reference. That cost is what keeps an unbounded Gaussian policy's
mean inside the range: charged on the clipped action it gives no signal past +-1, the means
drift into saturation (46% of them after 500 MAML-TRPO iterations on HalfCheetahDir), and a
gradient step on a saturated mean no longer changes the behaviour, so adaptation fails.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium
import mujoco
import mujoco.batch
import numpy as np
from gymnasium import spaces

from metarl.envs.tasks import (
    RNG,
    Bounds,
    DirectionTask,
    TaskEnv,
    VelocityTask,
    as_rng,
    check_actions,
    check_render_mode,
    sample_direction_tasks,
    sample_velocity_tasks,
    task_array,
)
from metarl.simulator import BatchedSim

# observe(qpos [B, nq], qvel [B, nv]) -> obs [B, obs_dim]
ObserveFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# reward(qpos_before [B, nq], qpos [B, nq], qvel [B, nv], action [B, nu], task [B, k], dt)
#   -> (reward [B], terminated [B] bool)
RewardFn = Callable[..., tuple[np.ndarray, np.ndarray]]


# A camera that follows the torso (body 1) from the side, as Gymnasium's locomotion envs do.
TRACKING_CAMERA = {"trackbodyid": 1, "distance": 4.0, "lookat": np.array((0.0, 0.0, 0.5)),
                   "elevation": -20.0}


@dataclass(frozen=True)
class MujocoFamily:
    name: str
    xml_file: str  # under gymnasium/envs/mujoco/assets
    task_type: type
    task_bounds: Bounds
    sample_tasks: Callable[[int, RNG], list]
    default_task: Any
    observe: ObserveFn
    reward: RewardFn
    frame_skip: int = 5
    reset_noise_scale: float = 0.1
    timestep: float | None = None
    """The physics step in seconds; ``None`` keeps the XML's."""
    start: Literal["gymnasium", "rllab"] = "gymnasium"
    """Initial state: Gymnasium v5's (``qpos0 + U[-0.1, 0.1]``) or rllab's (the XML's
    ``init_qpos`` numeric ``+ 0.01 N(0, 1)``, as the MAML authors' code started its robots)."""

    def model(self) -> mujoco.MjModel:
        return load_model(self.xml_file, self.timestep)

    def initial_state(self, model: mujoco.MjModel, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
        if self.start == "rllab":
            return rllab_initial_state(model, rng)
        return initial_state(model, rng, self.reset_noise_scale)


def locomotion_families(robot: str, xml_file: str, observe: ObserveFn, velocity_reward: RewardFn,
                        direction_reward: RewardFn, max_velocity: float
                        ) -> tuple[MujocoFamily, MujocoFamily]:
    """A robot's two task families (Finn et al., 2017, Fig. 5): run at a target velocity
    ``U[0, max_velocity]`` (``<robot>Vel``), or forward or backward (``<robot>Dir``)."""
    sample_velocities = functools.partial(sample_velocity_tasks, low=0.0, high=max_velocity)
    return (MujocoFamily(f"{robot}Vel", xml_file, VelocityTask, ((0.0,), (max_velocity,)),
                         sample_velocities, VelocityTask(1.0), observe, velocity_reward),
            MujocoFamily(f"{robot}Dir", xml_file, DirectionTask, ((-1.0,), (1.0,)),
                         sample_direction_tasks, DirectionTask(1.0), observe, direction_reward))


@functools.cache
def load_model(xml_file: str, timestep: float | None = None) -> mujoco.MjModel:
    path = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", xml_file)

    # MuJoCo's default handler appends compiler warnings to MUJOCO_LOG.TXT in the working
    # directory; Gymnasium's half_cheetah.xml triggers a harmless deprecation one on every load.
    def warn(message: str) -> None:
        if "settotalmass" not in message:
            warnings.warn(f"MuJoCo ({xml_file}): {message}", stacklevel=2)

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(warn)
    try:
        model = mujoco.MjModel.from_xml_path(path)
    finally:
        mujoco.set_mju_user_warning(previous)
    if timestep is not None:
        model.opt.timestep = timestep
    return model


def initial_state(
    model: mujoco.MjModel, rng: np.random.Generator, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gymnasium v5's reset noise, drawn in its order (uniform qpos, then normal qvel)."""
    qpos = model.qpos0 + rng.uniform(low=-scale, high=scale, size=model.nq)
    qvel = scale * rng.standard_normal(model.nv)
    return qpos, qvel


def rllab_initial_state(model: mujoco.MjModel, rng: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray]:
    """rllab's reset: the XML's ``init_qpos`` numeric plus ``0.01 N(0, 1)``, ``0.1 N(0, 1)``
    velocities (normal qpos noise drawn first)."""
    qpos = model.numeric("init_qpos").data + 0.01 * rng.standard_normal(model.nq)
    qvel = 0.1 * rng.standard_normal(model.nv)
    return qpos, qvel


class MujocoTaskEnv(TaskEnv):
    """Gymnasium env of a MuJoCo task family; its task is kept as
    :class:`~metarl.envs.tasks.TaskEnv` says. ``render_mode="rgb_array"`` renders offscreen
    (EGL on a machine without a display) from a camera that follows the torso; ``"human"``
    opens a window (Gymnasium's MuJoCo window viewer; needs a display)."""

    family: ClassVar[MujocoFamily]
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array", "human"], "render_fps": 20}

    def __init__(self, task: Any = None, render_mode: str | None = None, width: int = 480,
                 height: int = 480) -> None:
        check_render_mode(render_mode, self.metadata, self.family.name)
        self.render_mode, self.width, self.height = render_mode, width, height
        self._renderer: Any = None
        fam = self.family
        self.model = fam.model()
        self.data = mujoco.MjData(self.model)
        self.dt = float(self.model.opt.timestep * fam.frame_skip)
        self.metadata = {**self.metadata, "render_fps": round(1 / self.dt)}  # real time
        low, high = self.model.actuator_ctrlrange.T
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32))
        obs_dim = fam.observe(self.data.qpos[None], self.data.qvel[None]).shape[1]
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        super().__init__(task)

    # TaskEnv's description of the task, from the family
    name = property(lambda self: self.family.name)
    task_type = property(lambda self: self.family.task_type)
    task_bounds = property(lambda self: self.family.task_bounds)
    default_task = property(lambda self: self.family.default_task)

    @classmethod
    def make_batched(cls, n: int, nthread: int = 0, name: str = "") -> MujocoBatchedSim:
        """The lockstep simulator of ``n`` instances on ``nthread`` native threads (0: all
        cores)."""
        return MujocoBatchedSim(cls.family, n, nthread, name=name)

    def sample_tasks(self, n: int, rng: RNG = None) -> list:
        return self.family.sample_tasks(n, as_rng(rng))

    def _apply(self, task: Any) -> None:
        super()._apply(task)
        self._task_array = task.array()[None]

    def _obs(self) -> np.ndarray:
        return self.family.observe(self.data.qpos[None], self.data.qvel[None])[0]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._reset_task(seed, options)
        qpos, qvel = self.family.initial_state(self.model, self.np_random)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = qpos
        self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)
        return self._obs(), {"task": self.task}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        if self._renderer is None:
            from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

            self._renderer = MujocoRenderer(self.model, self.data, TRACKING_CAMERA,
                                            self.width, self.height)
        return self._renderer.render(self.render_mode)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def step(self, action):
        a = check_actions(action, self.action_space.shape, self.family.name)
        qpos_before = self.data.qpos.copy()[None]
        self.data.ctrl[:] = np.clip(a, self.action_space.low, self.action_space.high)
        a = a[None]
        mujoco.mj_step(self.model, self.data, nstep=self.family.frame_skip)
        reward, terminated = self.family.reward(
            qpos_before, self.data.qpos[None], self.data.qvel[None], a, self._task_array, self.dt
        )
        return self._obs(), float(reward[0]), bool(terminated[0]), False, {"task": self.task}


class MujocoBatchedSim(BatchedSim):
    """``n`` instances of a MuJoCo family on ``mujoco.batch.Batch`` (native threads, no GIL).

    ``nthread=0`` uses all cores. Each instance has its own seeded ``np_random`` stream, so
    instance ``i`` reproduces the Gymnasium env reset with the same seed exactly.
    """

    def __init__(self, family: MujocoFamily, n: int, nthread: int = 0, name: str = "") -> None:
        if n < 1:
            raise ValueError(f"{family.name}: need at least one instance, got n={n}")
        self.family = family
        self.name = name or family.name
        self.task_type = family.task_type
        self.model = family.model()
        self.n = n
        self.dt = float(self.model.opt.timestep * family.frame_skip)
        self._batch = mujoco.batch.Batch(self.model, n, nthread)
        self._qpos = self._batch.bind("qpos")
        self._qvel = self._batch.bind("qvel")
        self._ctrl = self._batch.bind("ctrl")
        low, high = self.model.actuator_ctrlrange.T
        self._low, self._high = low.astype(np.float32), high.astype(np.float32)
        self.act_dim = self.model.nu
        self.obs_dim = family.observe(self._qpos[:1], self._qvel[:1]).shape[1]
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._tasks: np.ndarray | None = None

    def reset(self, tasks: Sequence[Any], seeds: Sequence[int | None] | None = None,
              ids: Sequence[int] | None = None) -> np.ndarray:
        index = self._reset_ids(tasks, seeds, ids)
        self.set_tasks(tasks, ids)
        for k, i in enumerate(index):
            seed = None if seeds is None else seeds[k]
            if seed is not None:
                self._rngs[i] = np.random.default_rng(int(seed))
            elif self._rngs[i] is None:
                raise ValueError(f"{self.name}: the first reset of an instance needs its seed")
        starts = [self.family.initial_state(self.model, self._rngs[i]) for i in index]
        partial = None if ids is None else index
        self._batch.reset(ids=partial, stage=mujoco.mjtStage.mjSTAGE_NONE)
        self._qpos[index] = np.stack([q for q, _ in starts])
        self._qvel[index] = np.stack([v for _, v in starts])
        self._batch.forward(ids=partial)
        return self.family.observe(self._qpos[index], self._qvel[index])

    def set_tasks(self, tasks: Sequence[Any], ids: Sequence[int] | None = None) -> None:
        arrays = task_array(tasks, self.task_type, self.name, self.family.task_bounds)
        if self._tasks is None:
            if ids is not None:
                raise ValueError(f"{self.name}: the first reset starts every instance")
            self._tasks = arrays.copy()
        self._tasks[self._reset_ids(tasks, None, ids)] = arrays

    def load_into(self, i: int, env: MujocoTaskEnv) -> None:
        if self._tasks is None:
            raise RuntimeError(f"{self.name}: call reset(tasks, seeds) before load_into")
        env.set_task(env.task_type(*map(float, self._tasks[i])))
        env.data.qpos[:] = self._qpos[i]
        env.data.qvel[:] = self._qvel[i]
        mujoco.mj_forward(env.model, env.data)

    def step(
        self, actions: np.ndarray, active: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._tasks is None:
            raise RuntimeError(f"{self.name}: call reset(tasks, seeds) before step")
        a = check_actions(actions, (self.n, self.act_dim), self.name)
        qpos_before = self._qpos.copy()
        self._ctrl[:] = np.clip(a, self._low, self._high)
        ids = None if active is None or active.all() else np.flatnonzero(active)
        self._batch.step(ids=ids, nstep=self.family.frame_skip)
        qpos, qvel = self._qpos, self._qvel
        reward, terminated = self.family.reward(qpos_before, qpos, qvel, a, self._tasks, self.dt)
        return self.family.observe(qpos, qvel), reward, terminated
