"""``metarl-watch RUN``: play a meta-RL run's policy on a held-out task, before adaptation and
after each gradient step, in the MuJoCo viewer (a window for 2D navigation), or record it.

Each step adapts exactly as ``metarl-evaluate`` does: support episodes sampled with the current
policy, one policy-gradient step on them (the first at the run's inner lr, later ones at
``--later-lr-scale`` times it). What is shown is the first episode sampled after each step,
replayed in the task's Gymnasium env with its seed and actions, so its return on screen is the
sampled episode's. ``--record out.mp4`` (or ``.gif``) renders offscreen instead: no display.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from metarl.algos.meta_rl import (
    Problem,
    Rollouts,
    episode_actions,
    episode_frames,
    episode_seed,
    load_state,
    rollouts_after_steps,
    step_title,
)
from metarl.cli import parse, user_errors
from metarl.config import check, check_nonnegative_int, check_positive, from_dict
from metarl.envs.replay import make_env, replay
from metarl.envs.tasks import DirectionTask, GoalTask, VelocityTask
from metarl.errors import ConfigError
from metarl.memory import tune_allocator
from metarl.params import params_of
from metarl.scripts.experiments import MetaRL, config_types, load_run, local_sampling
from metarl.scripts.presets import task_types
from metarl.video import FORMATS, Window, one_after_another, side_by_side, write_video

PROG = "metarl-watch"


@dataclass(frozen=True)
class Watch:
    run: Annotated[str, tyro.conf.Positional]
    """A meta-RL run directory (or its checkpoint file)."""
    task: tuple[float, ...] | None = None
    """The task: a target velocity (HalfCheetahVel, AntVel), a direction +1 or -1 (*Dir), or a
    goal X Y (2D navigation). Default: a held-out task drawn with --seed."""
    steps: int = 3
    """Play before adaptation and after 1..steps gradient steps."""
    episodes: int | None = None
    """Support episodes sampled for each step (default: the run's)."""
    speed: float = 1.0
    """Playback speed, 1 is real time."""
    seed: int = 12345
    """Seed of the held-out task and of the sampled episodes."""
    later_lr_scale: float = 0.5
    """Steps after the first use this times the inner lr (as metarl-evaluate)."""
    record: str | None = None
    """Write a video (.mp4 or .gif) instead of opening a window; needs no display."""
    layout: Literal["sequence", "side-by-side"] = "sequence"
    """--record: the steps one after another, or side by side."""
    size: int = 320
    """--record: each step's frame side in pixels."""

    def __post_init__(self) -> None:
        check_nonnegative_int("--steps", self.steps)
        check_nonnegative_int("--seed", self.seed)
        if self.episodes is not None:
            check(isinstance(self.episodes, int) and self.episodes >= 1,
                  f"--episodes must be an integer >= 1, got {self.episodes!r}")
        check_positive("--speed", self.speed, most=100.0)
        check(math.isfinite(self.later_lr_scale) and self.later_lr_scale >= 0,
              f"--later-lr-scale must be a finite number >= 0, got {self.later_lr_scale!r}")
        check(isinstance(self.size, int) and 32 <= self.size <= 2048,
              f"--size must be an integer in [32, 2048], got {self.size!r}")
        if self.task is not None:
            check(len(self.task) in (1, 2) and all(math.isfinite(v) for v in self.task),
                  f"--task must be one number (a velocity or direction) or two (a goal X Y), "
                  f"got {' '.join(map(str, self.task))}")
        if self.record is not None:
            check(Path(self.record).suffix.lower() in FORMATS,
                  f"--record {self.record!r}: name a file ending in {' or '.join(FORMATS)}")
            check(not Path(self.record).is_dir(), f"--record {self.record} is a folder; name "
                  "a video file")


def watch(args: Watch) -> Path | None:
    if args.record is None and not os.environ.get("DISPLAY"):
        raise ConfigError("no display (DISPLAY is not set): pass --record out.mp4 to write a "
                          "video instead, or run under a display (e.g. xvfb-run -a "
                          f"{PROG} ...)")
    checkpoint = load_run(args.run)
    config = from_dict(checkpoint["config"], config_types(task_types()))
    if not isinstance(config, MetaRL):
        raise ConfigError(f"{args.run} is a supervised run; {PROG} plays meta-RL policies "
                          "(metarl-evaluate evaluates supervised runs)")
    problem = Problem.build(local_sampling(config.rl), 1, args.episodes)
    theta = params_of(problem.policy)
    load_state(theta, checkpoint["state"])
    task = chosen_task(problem, args)
    steps = rollouts_after_steps(problem, theta, [task],
                                 problem.rules(args.steps, args.later_lr_scale), args.seed)
    titles = [step_title(s) for s in range(len(steps))]
    for title, r in zip(titles, steps):
        print(f"{title}: {task.describe()}, return {r.episodes.total_rewards[0, 0].item():.2f}")
    if args.record is not None:
        return record(problem, steps, titles, args)
    show(problem, steps, titles, args)
    return None


def chosen_task(problem: Problem, args: Watch):
    """``--task`` as the family's task (checked against its range), or a seeded held-out one."""
    env = problem.env
    if args.task is None:
        return problem.sample_tasks(1, args.seed)[0]
    kind = env.task_type
    if kind is GoalTask:
        check(len(args.task) == 2, f"--task: {env.name} tasks are goals X Y, got "
              f"{len(args.task)} number(s)")
        task = GoalTask(tuple(args.task))
    else:
        check(len(args.task) == 1, f"--task: {env.name} tasks are one number, got "
              f"{len(args.task)}")
        try:
            task = (VelocityTask if kind is VelocityTask else DirectionTask)(args.task[0])
        except ValueError as e:
            raise ConfigError(f"--task: {e}") from None
    try:
        return env.check(task)
    except ValueError as e:
        raise ConfigError(f"--task: {e}") from None


def record(problem: Problem, steps: list[Rollouts], titles: list[str], args: Watch) -> Path:
    env = make_env(problem.cfg.env_id, size=args.size)
    try:
        clips = [episode_frames(env, r, 0, title) for title, r in zip(titles, steps)]
    finally:
        env.close()
    frames = side_by_side(clips) if args.layout == "side-by-side" else one_after_another(clips)
    path = write_video(args.record, frames, env.metadata["render_fps"] * args.speed)
    print(f"wrote {path} ({len(frames)} frames)")
    return path


def show(problem: Problem, steps: list[Rollouts], titles: list[str], args: Watch) -> None:
    """Each step's episode in a window, paced to real time times ``--speed``."""
    if problem.cfg.env_id.startswith("metarl/Navigation2D"):
        env = make_env(problem.cfg.env_id, size=480)
        fps = env.metadata["render_fps"] * args.speed
        window = Window(f"{PROG}: {Path(args.run).name}", 480, 480)
        try:
            for title, r in zip(titles, steps):
                for frame in episode_frames(env, r, 0, title):
                    window.show(frame)
                    time.sleep(1 / fps)
                time.sleep(1.0)
        finally:
            window.close()
            env.close()
        return
    view_mujoco(problem, steps, titles, args)


def view_mujoco(problem: Problem, steps: list[Rollouts], titles: list[str], args: Watch) -> None:
    import mujoco
    import mujoco.viewer

    from metarl.envs.mujoco_family import TRACKING_CAMERA

    env = make_env(problem.cfg.env_id, render_mode=None)
    period = env.dt / args.speed
    viewer = mujoco.viewer.launch_passive(env.model, env.data, show_left_ui=False,
                                          show_right_ui=False)
    try:
        viewer.cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        viewer.cam.trackbodyid = TRACKING_CAMERA["trackbodyid"]
        viewer.cam.distance = TRACKING_CAMERA["distance"]
        viewer.cam.elevation = TRACKING_CAMERA["elevation"]
        for title, r in zip(titles, steps):
            if not viewer.is_running():
                break
            episodes = r.episodes
            rewards = np.concatenate([[0.0], episodes.rewards[:, 0, 0].cpu().numpy().cumsum()])
            describe = episodes.tasks[0].describe()

            start = time.monotonic()

            def tick(t: int, title: str = title, rewards: np.ndarray = rewards,
                     describe: str = describe, start: float = start) -> None:
                # Paced by the wall clock: a frame that is already late is not drawn, so the
                # episode takes its real duration / --speed however slowly the display renders.
                due = start + t * period
                if time.monotonic() > due + period and t + 1 < len(rewards):
                    return
                time.sleep(max(0.0, due - time.monotonic()))
                viewer.set_texts((None, None, f"{title}\n{describe}\nreturn",
                                  f"\n\n{rewards[min(t, len(rewards) - 1)]:.1f}"))
                viewer.sync()

            replay(env, episodes.tasks[0], episode_seed(r, 0), episode_actions(r, 0),
                   on_step=tick)
            time.sleep(1.0)
    finally:
        viewer.close()
        _wait_closed(viewer)
        env.close()


def _wait_closed(viewer, timeout: float = 10.0) -> None:
    # The viewer renders on a daemon thread; exiting while it still holds its window crashed
    # the process at exit (X error, then a segmentation fault), so wait for it to finish.
    end = time.monotonic() + timeout
    while viewer.is_running() and time.monotonic() < end:
        time.sleep(0.05)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and "_launch_internal" in thread.name:
            thread.join(max(0.0, end - time.monotonic()))


def main(argv: list[str] | None = None) -> None:
    tune_allocator()
    args = parse(Watch, argv, PROG, __doc__.splitlines()[0])
    with user_errors(PROG):
        watch(args)


if __name__ == "__main__":
    main()
