"""Ant velocity and direction tasks (Finn et al., 2017, Fig. 5), rllab-style rewards.

Reward, as in the MAML reference code's ``AntVelEnv``/``AntDirEnv`` (rllab's ant), with ``v_x``
the torso's forward velocity over the control step and ``a`` the raw (unclipped) action:
velocity ``-|v_x - v_goal| + 1 - 0.005 |a|^2 + 0.05`` with ``v_goal ~ U[0, 3]``;
direction ``dir * v_x - 0.005 |a|^2 + 0.05`` with ``dir = +-1`` along x.
The episode terminates when the state is not finite or the torso height leaves [0.2, 1.0].

Deviation: no contact cost (``0.0005 |clip(cfrc_ext, -1, 1)|^2`` in rllab). ``cfrc_ext`` is
only filled by ``mj_rnePostConstraint``, which neither the public PyTorch reference (on
mujoco-py >= 2, where it read as zeros; see Gymnasium's Ant docs) nor ``mujoco.batch`` runs;
dropping it keeps the batched and Gymnasium paths identical and matches the public reference.

Observation (27): Gymnasium Ant-v5 without contact forces (as Ant-v4's default):
``qpos[2:]`` (13: torso z, orientation quaternion, 8 joint angles) and ``qvel`` (14).

``AntVelFinn``/``AntDirFinn`` run the same robot and rewards at rllab's timing, as the MAML
authors' code did: one RK4 step of 0.02 s per action (50 Hz; Gymnasium's ant: five steps of
0.01 s, 20 Hz), so a 200-step episode lasts 4 s instead of 10, and rllab's start (legs bent,
torso at 0.55, ``0.01 N(0, 1)`` position noise). Still not rllab's: its 125-dim observation
(it adds x, y, contact forces, the torso's rotation matrix and centre of mass) and contact cost.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metarl.envs.mujoco_family import MujocoTaskEnv, locomotion_families

CTRL_COST = 0.5 * 1e-2
SURVIVE = 0.05
HEALTHY_Z = (0.2, 1.0)


def observe(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """``qpos [B, 15], qvel [B, 14] -> obs [B, 27]``."""
    return np.concatenate([qpos[:, 2:], qvel], axis=1)


def _common(qpos_before, qpos, qvel, action, dt):
    v = (qpos[:, 0] - qpos_before[:, 0]) / dt
    finite = np.isfinite(qpos).all(1) & np.isfinite(qvel).all(1)
    z = qpos[:, 2]
    terminated = ~(finite & (z >= HEALTHY_Z[0]) & (z <= HEALTHY_Z[1]))
    return v, SURVIVE - CTRL_COST * np.square(action).sum(1), terminated


def velocity_reward(qpos_before, qpos, qvel, action, task, dt):
    """``-|v_x - v_goal| + 1 - 0.005 |a|^2 + 0.05``; ``task [B, 1]`` holds ``v_goal``."""
    v, rest, terminated = _common(qpos_before, qpos, qvel, action, dt)
    return -np.abs(v - task[:, 0]) + 1.0 + rest, terminated


def direction_reward(qpos_before, qpos, qvel, action, task, dt):
    """``dir * v_x - 0.005 |a|^2 + 0.05``; ``task [B, 1]`` holds ``dir``."""
    v, rest, terminated = _common(qpos_before, qpos, qvel, action, dt)
    return task[:, 0] * v + rest, terminated


ANT_VEL, ANT_DIR = locomotion_families("Ant", "ant.xml", observe, velocity_reward, direction_reward,
                                       max_velocity=3.0)


_RLLAB_TIMING = {"timestep": 0.02, "frame_skip": 1, "start": "rllab"}
ANT_VEL_FINN = dataclasses.replace(ANT_VEL, name="AntVelFinn", **_RLLAB_TIMING)
ANT_DIR_FINN = dataclasses.replace(ANT_DIR, name="AntDirFinn", **_RLLAB_TIMING)


class AntVelEnv(MujocoTaskEnv):
    family = ANT_VEL


class AntDirEnv(MujocoTaskEnv):
    family = ANT_DIR


class AntVelFinnEnv(MujocoTaskEnv):
    family = ANT_VEL_FINN


class AntDirFinnEnv(MujocoTaskEnv):
    family = ANT_DIR_FINN
