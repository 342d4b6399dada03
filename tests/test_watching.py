"""Watching rollouts: replays reproduce sampled episodes, training writes TensorBoard videos,
evaluation writes video files and the 2D navigation figure, and ``metarl-watch`` records
headless and opens a real window under Xvfb."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from PIL import Image

from metarl.algos.meta_rl import (
    Problem,
    episode_actions,
    episode_seed,
    rollouts_after_steps,
)
from metarl.config import RLConfig
from metarl.envs import ENV_IDS
from metarl.envs.replay import make_env, replay
from metarl.params import params_of
from metarl.scripts import evaluate, train, watch
from metarl.scripts.experiments import MetaRL
from metarl.video import gif_bytes, label, read_video, side_by_side, write_video

FAMILIES = [i for i in ENV_IDS if "H200" not in i]


@pytest.fixture(scope="module")
def cheetah_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "cheetah"
    train.train(MetaRL(rl=RLConfig(env_id="metarl/HalfCheetahVel-v0", iterations=1,
                                   meta_batch=2, episodes=2, horizon=20), out=str(out)),
                progress=False)
    return out


@pytest.mark.parametrize("env_id", FAMILIES)
def test_replay_reproduces_sampled_episodes_exactly(env_id, one_torch_thread):
    cfg = RLConfig(env_id=env_id, meta_batch=3, episodes=2, horizon=30)
    problem = Problem.build(cfg)
    theta = params_of(problem.policy)
    tasks = problem.sample_tasks(3, 5)
    rollouts = rollouts_after_steps(problem, theta, tasks, problem.rules(1), seed=11)
    env = make_env(env_id, size=32)
    for r in rollouts:
        episodes = r.episodes
        for i in range(3):
            for e in range(2):
                run = replay(env, tasks[i], episode_seed(r, i, e), episode_actions(r, i, e))
                n = len(run.rewards)
                assert n == int(episodes.mask[:, i, e].sum())
                assert np.array_equal(run.observations.astype(np.float32),
                                      episodes.observations[:n, i, e].numpy())
                assert np.array_equal(run.rewards.astype(np.float32),
                                      episodes.rewards[:n, i, e].numpy())
                assert len(run.frames) == n + 1 and run.frames[0].shape == (32, 32, 3)
    env.close()


@pytest.mark.parametrize("env_id", FAMILIES)
def test_rendered_frames_follow_the_robot(env_id):
    env = make_env(env_id, size=48)
    actions = np.tile(env.action_space.high, (5, 1))
    frames = replay(env, env.sample_tasks(1, 0)[0], 3, actions).frames
    assert all(f.shape == (48, 48, 3) and f.dtype == np.uint8 for f in frames)
    assert not np.array_equal(frames[0], frames[-1])
    dt = getattr(env, "dt", 0.1)  # 2D navigation: one step a tenth of a second
    assert env.metadata["render_fps"] == round(1 / dt)
    env.close()


def test_labels_layouts_and_video_files(tmp_path):
    frames = [np.full((40, 60, 3), 10 * t, np.uint8) for t in range(6)]
    labelled = label(frames[0], ["before adaptation", "return 1.0"])
    assert labelled.shape == frames[0].shape and not np.array_equal(labelled, frames[0])
    assert side_by_side([frames, frames[:2]])[5].shape == (40, 120, 3)
    for name in ("clip.mp4", "clip.gif"):
        back = read_video(write_video(tmp_path / name, frames, fps=10))
        assert back.shape[0] == 6 and back.shape[1:3] == (40, 60)
        assert abs(float(back[-1].mean()) - 50) < 3  # the last frame's grey level survives
    with pytest.raises(ValueError, match="must end in"):
        write_video(tmp_path / "clip.avi", frames, fps=10)


def _decoded_gifs(run_dir: Path) -> dict[str, list[np.ndarray]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["images"]:
        gif = Image.open(io.BytesIO(acc.Images(tag)[-1].encoded_image_string))
        frames = []
        for k in range(gif.n_frames):
            gif.seek(k)
            frames.append(np.asarray(gif.convert("RGB")))
        out[tag] = frames
    return out


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0"])
def test_training_writes_tensorboard_videos(env_id, tmp_path, one_torch_thread):
    out = tmp_path / "run"
    train.main([("nav2d" if "Nav" in env_id else "cheetah-vel"), "--iterations", "2",
                "--meta-batch", "2", "--episodes", "2", "--horizon", "15", "--video-every", "2",
                "--out", str(out)])
    videos = _decoded_gifs(out)
    assert set(videos) == {"rollouts/task_0", "rollouts/task_1"}
    for frames in videos.values():
        assert len(frames) == 9  # the reset, every second of 15 steps, and the last
        first, last = frames[0], frames[-1]
        assert first.std() > 5 and not np.array_equal(first, last)  # not blank, moving
        assert first.shape[1] == 2 * first.shape[0]  # before and after, side by side


def test_videos_leave_training_unchanged(tmp_path, one_torch_thread):
    import torch

    from metarl.checkpoint import load_checkpoint

    params = []
    for video_every in (0, 1):
        path = train.train(MetaRL(rl=RLConfig(iterations=2, meta_batch=2, episodes=2, horizon=10,
                                              video_every=video_every),
                                  out=str(tmp_path / f"v{video_every}")), progress=False)
        params.append(load_checkpoint(path)["state"]["params"])
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])


def test_evaluate_writes_videos_and_the_navigation_figure(tmp_path, one_torch_thread):
    run = tmp_path / "nav"
    train.train(MetaRL(rl=RLConfig(iterations=1, meta_batch=2, episodes=2, horizon=10),
                       out=str(run)), progress=False)
    evaluate.evaluate(evaluate.Evaluate(runs=(str(run),), tasks=2, steps=2, episodes=2,
                                        out=str(tmp_path / "eval"),
                                        video=str(tmp_path / "videos"), video_tasks=2))
    files = sorted((tmp_path / "videos" / "maml-trpo").glob("*.mp4"))
    assert [f.name for f in files] == [f"task0{i}-step{s}.mp4" for i in range(2)
                                       for s in range(3)]
    for f in files:
        frames = read_video(f)
        assert frames.shape[0] >= 2 and frames.std() > 5
    assert (tmp_path / "videos" / "random-init" / "task00-step0.mp4").exists()
    figure = np.asarray(Image.open(tmp_path / "eval" / "trajectories.png"))
    assert figure.std() > 5


def test_watch_records_headless(cheetah_run, tmp_path, one_torch_thread, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    path = watch.watch(watch.Watch(run=str(cheetah_run), steps=1, episodes=2,
                                   record=str(tmp_path / "w.gif"), size=64,
                                   layout="side-by-side", task=(1.5,)))
    frames = read_video(path)
    assert frames.shape == (21, 64, 128, 3) and frames.std() > 5
    sequence = watch.watch(watch.Watch(run=str(cheetah_run), steps=1, episodes=2,
                                       record=str(tmp_path / "w.mp4"), size=64))
    assert read_video(sequence).shape[0] == 42


def test_the_nav_env_renders_frames_of_its_square():
    env = gymnasium.make("metarl/Navigation2D-v0", render_mode="rgb_array", width=64, height=64)
    env.reset(seed=0)
    assert env.render().shape == (64, 64, 3)
    assert gif_bytes([env.render()] * 2, fps=10)[:3] == b"GIF"
    env.close()


def _xvfb() -> str:
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed: .ci/run installs it (apt-get install xvfb)")
    return shutil.which("Xvfb")


@pytest.fixture
def display():
    """A virtual X display of our own, its name."""
    xvfb = _xvfb()
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X{n}-lock").exists()
                  and not Path(f"/tmp/.X11-unix/X{n}").exists())
    server = subprocess.Popen([xvfb, f":{number}", "-screen", "0", "800x600x24", "-nolisten",
                               "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if Path(f"/tmp/.X11-unix/X{number}").exists() or server.poll() is not None:
            break
        time.sleep(0.05)
    assert server.poll() is None, f"Xvfb :{number} did not start"
    time.sleep(0.2)
    yield f":{number}"
    server.terminate()
    server.wait()


def _screen(display: str) -> np.ndarray:
    from PIL import ImageGrab

    return np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))


def _watch_in_window(run: Path, display: str, *options: str) -> tuple[str, np.ndarray, list]:
    """``metarl-watch run options`` on ``display``: its output, the screen before it and
    screenshots taken every half second while it runs; asserts it exited 0."""
    blank = _screen(display)
    env = {**os.environ, "DISPLAY": display, "OMP_NUM_THREADS": "1"}
    env.pop("MUJOCO_GL", None)  # a window: MuJoCo's GLFW, not offscreen EGL
    process = subprocess.Popen([sys.executable, "-m", "metarl.scripts.watch", str(run),
                                *options], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    shots = []
    while process.poll() is None and len(shots) < 40:
        time.sleep(0.5)
        shots.append(_screen(display))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out, blank, shots


@pytest.mark.parametrize("attempt", range(5))
def test_watch_opens_a_window_and_exits_cleanly(attempt, cheetah_run, display):
    out, blank, shots = _watch_in_window(cheetah_run, display, "--steps", "0", "--episodes", "2",
                                         "--speed", "0.5")
    assert "before adaptation: target velocity" in out
    # Some screenshot shows the viewer's scene: far from the blank screen, many colours.
    changed = [s for s in shots if np.abs(s.astype(int) - blank).mean() > 20]
    assert changed, "the display stayed blank"
    scene = changed[len(changed) // 2]
    assert len(np.unique(scene.reshape(-1, 3), axis=0)) > 100


def test_watch_opens_a_navigation_window(tmp_path, display):
    run = tmp_path / "nav"
    train.train(MetaRL(rl=RLConfig(iterations=1, meta_batch=2, episodes=2, horizon=20),
                       out=str(run)), progress=False)
    out, blank, shots = _watch_in_window(run, display, "--steps", "1", "--episodes", "2",
                                         "--speed", "0.5")
    assert "after 1 step: goal" in out
    assert any(np.abs(s.astype(int) - blank).mean() > 20 for s in shots)
