"""Replaying a sampled episode in its Gymnasium env, to render it.

The lockstep simulators do not render; instance ``i`` of a batched episode is the Gymnasium
env reset with the same seed and task and stepped with the same actions, so replaying its
recorded actions there reproduces its states exactly, and ``render()`` draws them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium
import numpy as np

# Frames of the offscreen renderer: large enough to read, small enough to be cheap
# (software rendering costs per pixel).
SIZE = 256


class Replay(NamedTuple):
    frames: list[np.ndarray]
    """``render()`` after the reset and after every ``every``-th step and the last."""
    frame_steps: list[int]
    """The number of steps taken before each frame."""
    observations: np.ndarray
    """The observation before each step: ``[steps, obs_dim]``."""
    rewards: np.ndarray
    """``[steps]``."""


def make_env(env_id: str, render_mode: str | None = "rgb_array", size: int = SIZE) -> Any:
    """The family's Gymnasium env without wrappers (a replay needs no time limit or checks)."""
    return gymnasium.make(env_id, render_mode=render_mode, width=size, height=size).unwrapped


def replay(env: Any, task: Any, seed: int, actions: np.ndarray,
           on_step: Callable[[int], None] | None = None, every: int = 1) -> Replay:
    """Reset ``env`` with ``seed`` on ``task``, step it with ``actions`` ``[steps, act_dim]``
    (stopping where it terminates) and render the state after every ``every``-th step (and the
    last). ``on_step(t)``, if given, runs after the ``t``-th state is drawn (a viewer's pace
    and label)."""
    obs, _ = env.reset(seed=seed, options={"task": task})
    frames, frame_steps, observations, rewards = [env.render()], [0], [], []
    if on_step is not None:
        on_step(0)
    for t, action in enumerate(np.asarray(actions, dtype=np.float64)):
        observations.append(obs)
        obs, reward, terminated, _, _ = env.step(action)
        rewards.append(reward)
        if (t + 1) % every == 0 or terminated or t + 1 == len(actions):
            frames.append(env.render())
            frame_steps.append(t + 1)
        if on_step is not None:
            on_step(t + 1)
        if terminated:
            break
    return Replay(frames, frame_steps, np.asarray(observations), np.asarray(rewards))
