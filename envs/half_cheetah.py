"""HalfCheetah velocity and direction tasks (Finn et al., 2017, Sec. 5.3; Fig. 5).

Observation (17): Gymnasium HalfCheetah-v5's ``qpos[1:]`` (8: all joints but the root x, so the
policy is position-agnostic) and ``qvel`` (9). The MAML reference code appends the torso's
centre of mass (3 more numbers, of which x grows without bound); we keep v5's vector so
results compare with the Gymnasium literature, and the reward needs no position.

Reward, with ``v_x`` the root's forward velocity over the control step
(``(x_after - x_before) / dt``, ``dt = 0.05``) and ``a`` the raw (unclipped) action:
velocity ``-|v_x - v_goal| - 0.05 |a|^2`` with ``v_goal ~ U[0, 2]``;
direction ``dir * v_x - 0.05 |a|^2`` with ``dir = +-1`` w.p. 1/2. Never terminates.
"""

from __future__ import annotations

import numpy as np

from metarl.envs.mujoco_family import MujocoTaskEnv, locomotion_families

CTRL_COST = 0.05


def observe(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """``qpos [B, 9], qvel [B, 9] -> obs [B, 17]``."""
    return np.concatenate([qpos[:, 1:], qvel], axis=1)


def forward_velocity(qpos_before: np.ndarray, qpos: np.ndarray, dt: float) -> np.ndarray:
    """``[B]``: root x displacement over the control step, divided by ``dt``."""
    return (qpos[:, 0] - qpos_before[:, 0]) / dt


def velocity_reward(qpos_before, qpos, qvel, action, task, dt):
    """``-|v_x - v_goal| - 0.05 |a|^2``; ``task [B, 1]`` holds ``v_goal``. Never terminates."""
    v = forward_velocity(qpos_before, qpos, dt)
    reward = -np.abs(v - task[:, 0]) - CTRL_COST * np.square(action).sum(1)
    return reward, np.zeros(len(reward), dtype=bool)


def direction_reward(qpos_before, qpos, qvel, action, task, dt):
    """``dir * v_x - 0.05 |a|^2``; ``task [B, 1]`` holds ``dir``. Never terminates."""
    v = forward_velocity(qpos_before, qpos, dt)
    reward = task[:, 0] * v - CTRL_COST * np.square(action).sum(1)
    return reward, np.zeros(len(reward), dtype=bool)


HALF_CHEETAH_VEL, HALF_CHEETAH_DIR = locomotion_families(
    "HalfCheetah", "half_cheetah.xml", observe, velocity_reward, direction_reward, max_velocity=2.0)


class HalfCheetahVelEnv(MujocoTaskEnv):
    family = HALF_CHEETAH_VEL


class HalfCheetahDirEnv(MujocoTaskEnv):
    family = HALF_CHEETAH_DIR
