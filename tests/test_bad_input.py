"""Bad input to the commands, fuzz-style: every case exits with status 1 or 2 and one line on
standard error that names the option, file or cause, never a traceback; and the guards behind
them (non-finite states, resume, stale files)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from metarl.algos.meta_rl import Problem
from metarl.checkpoint import load_checkpoint, save_checkpoint
from metarl.config import MetaConfig, RLConfig
from metarl.logger import NonFiniteState, Run
from metarl.params import params_of
from metarl.rules import SGD
from metarl.scripts import evaluate, train, watch
from metarl.scripts.experiments import MetaRL
from metarl.scripts.presets import PRESETS


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished sinusoid run, a meta-RL run, one with NaN parameters, a corrupt checkpoint,
    a plain file and an empty folder."""
    root = tmp_path_factory.mktemp("runs")
    sinusoid = train.train(replace(PRESETS["sinusoid"][1], out=str(root / "sinusoid"),
                                   meta=MetaConfig(iterations=2, meta_batch=2)), progress=False)
    train.train(MetaRL(rl=RLConfig(iterations=1, meta_batch=2, episodes=2, horizon=5),
                            out=str(root / "rl")), progress=False)
    checkpoint = load_checkpoint(sinusoid)
    params = checkpoint["state"]["params"]
    params[next(iter(params))][0] = math.nan
    save_checkpoint(root / "nan" / "checkpoint.pt", {k: v for k, v in checkpoint.items()
                                                       if k != "format"})
    (root / "corrupt").mkdir()
    (root / "corrupt" / "checkpoint.pt").write_bytes(sinusoid.read_bytes()[:100])
    (root / "file").write_text("not a folder")
    (root / "empty").mkdir()
    return {k: str(root / k) for k in ("sinusoid", "rl", "nan", "corrupt", "file", "empty")}


TRAIN = [
    (["no-such-preset"], "no-such-preset"),
    (["sinusoid", "magic"], "magic"),
    (["sinusoid", "--method", "pretrain"], "--method"),
    (["nav2d", "--algo", "maml-reinforce"], "--algo"),
    (["nav2d", "--pretrain"], "--pretrain"),
    (["sinusoid", "--iterations", "0"], "iterations"),
    (["sinusoid", "--iterations", "-5"], "iterations"),
    (["sinusoid", "--iterations", "abc"], "--iterations"),
    (["sinusoid", "--meta-batch", "0"], "meta_batch"),
    (["sinusoid", "--inner-lr", "nan"], "inner_lr"),
    (["sinusoid", "--inner-lr", "inf"], "inner_lr"),
    (["sinusoid", "--inner-lr", "-1"], "inner_lr"),
    (["sinusoid", "--inner-steps", "-1"], "inner_steps"),
    (["sinusoid", "--outer-lr", "1e300"], "outer_lr"),
    (["sinusoid", "--outer-lr", "0"], "outer_lr"),
    (["sinusoid", "reptile", "--epsilon", "1e38"], "epsilon"),
    (["sinusoid", "--seed", "-1"], "seed"),
    (["sinusoid", "--log-every", "0"], "log_every"),
    (["sinusoid", "--checkpoint-every", "0"], "checkpoint_every"),
    (["sinusoid", "--task.shots", "0"], "shots"),
    (["sinusoid", "--task.query", "-3"], "query"),
    (["sinusoid", "--task.x-range", "-inf", "inf"], "x_range"),
    (["sinusoid", "--task.amplitude", "5", "1"], "amplitude"),
    (["sinusoid", "--task.hidden", "0"], "hidden"),
    (["sinusoid", "--out", ""], "--out"),
    (["sinusoid", "--name", " "], "--name"),
    (["sinusoid", "--device", "tpu"], "device 'tpu'"),
    (["omniglot-5w1s", "--task.shots", "12", "--task.query", "12"], "20 drawings"),
    (["omniglot-5w1s", "--task.ways", "0"], "ways"),
    (["nav2d", "--episodes", "0"], "episodes"),
    (["nav2d", "--horizon", "0"], "horizon"),
    (["nav2d", "--gamma", "1.5"], "gamma"),
    (["nav2d", "--gae-lambda", "-0.1"], "gae_lambda"),
    (["nav2d", "--max-kl", "0"], "max_kl"),
    (["nav2d", "--max-kl", "abc"], "--max-kl"),
    (["nav2d", "--cg-subsample", "0"], "cg_subsample"),
    (["nav2d", "--cg-damping", "inf"], "cg_damping"),
    (["nav2d", "--ls-ratio", "1"], "ls_ratio"),
    (["nav2d", "--cg-iters", "0"], "cg_iters"),
    (["nav2d", "--env-id", "metarl/Nope-v0"], "unknown env id 'metarl/Nope-v0'"),
    (["nav2d", "--torch-threads", "0"], "torch_threads"),
    (["nav2d", "--outer-torch-threads", "0"], "outer_torch_threads"),
    (["nav2d", "--hidden", "-4"], "hidden"),
    (["nav2d", "--nonlinearity", "swish"], "swish"),
    (["nav2d", "maml-reinforce", "--outer-lr", "2"], "outer_lr"),
]

TRAIN_ON_RUNS = [
    (["sinusoid", "--out", "{file}"], "is a file"),
    (["sinusoid", "--out", "{sinusoid}"], "already holds a run"),
    (["sinusoid", "--out", "{empty}", "--resume"], "no checkpoint"),
    (["sinusoid", "--out", "{corrupt}", "--resume"], "corrupt"),
    (["sinusoid", "--out", "{sinusoid}", "--resume", "--iterations", "1", "--meta-batch", "2"],
     "already at iteration 2; pass --iterations 2"),
    (["sinusoid", "--out", "{sinusoid}", "--resume", "--inner-lr", "0.5", "--iterations", "3"],
     "inner_lr was"),
    (["sinusoid", "pretrain", "--out", "{sinusoid}", "--resume", "--iterations", "3"],
     "algo.__class__ was 'MAML'"),
    (["nav2d", "--out", "{sinusoid}", "--resume", "--iterations", "3"], "__class__"),
    (["omniglot-5w1s", "--task.data-dir", "{empty}", "--out", "{empty}/r"], "Omniglot not found"),
]

EVALUATE = [
    (["{empty}/missing"], "no checkpoint"),
    (["{sinusoid}", "--tasks", "1"], "--tasks"),
    (["{sinusoid}", "--tasks", "0"], "--tasks"),
    (["{sinusoid}", "--steps", "-1"], "--steps"),
    (["{sinusoid}", "--seed", "-1"], "--seed"),
    (["{sinusoid}", "--tasks", "many"], "--tasks"),
    (["{rl}", "--episodes", "0"], "episodes"),
    (["{rl}", "--later-lr-scale", "inf"], "--later-lr-scale"),
    (["{rl}", "--inner-lr", "0"], "--inner-lr"),
    (["{sinusoid}", "--inner-lr", "0.1"], "--inner-lr applies to meta-RL runs"),
    (["{sinusoid}", "--episodes", "3"], "--episodes applies to meta-RL runs"),
    (["{sinusoid}", "--out", "{file}"], "is a file"),
    (["{sinusoid}", "--out", ""], "--out"),
    (["{sinusoid}", "{rl}"], "mix supervised and meta-RL"),
    (["{nan}"], "NaN or infinite parameters"),
    (["{corrupt}"], "corrupt"),
    (["{file}"], "not a readable checkpoint"),
    (["{sinusoid}", "--device", "tpu"], "device 'tpu'"),
    (["{sinusoid}", "--video", "v"], "--video applies to meta-RL runs"),
    (["{rl}", "--video", "{file}"], "--video"),
    (["{rl}", "--video", "v", "--video-tasks", "0"], "--video-tasks"),
]


@pytest.mark.parametrize("argv, match", TRAIN)
def test_train_options(argv, match, one_clear_line, tmp_path):
    one_clear_line(train.main, [*argv, "--out", str(tmp_path / "run")] if "--out" not in argv
                   and argv[0] != "no-such-preset" else argv, match)
    assert not (tmp_path / "run").exists()  # nothing half-built


@pytest.mark.parametrize("argv, match", TRAIN_ON_RUNS)
def test_train_on_existing_runs_and_files(argv, match, runs, one_clear_line):
    one_clear_line(train.main, [a.format(**runs) for a in argv], match)


@pytest.mark.parametrize("argv, match", EVALUATE)
def test_evaluate_options(argv, match, runs, one_clear_line):
    one_clear_line(evaluate.main, [a.format(**runs) for a in argv], match)


# metarl-watch (a display is set where the case is not about the display)
WATCH = [
    (["{empty}", "--record", "x.mp4"], "checkpoint"),
    (["{sinusoid}", "--record", "x.mp4"], "supervised run"),
    (["{rl}", "--task", "3", "--record", "x.mp4"], "--task"),
    (["{rl}", "--task", "3", "3", "--record", "x.mp4"], "--task"),
    (["{rl}", "--task", "1", "2", "3", "--record", "x.mp4"], "--task"),
    (["{rl}", "--task", "nan", "0", "--record", "x.mp4"], "--task"),
    (["{rl}", "--record", "x.avi"], "--record"),
    (["{rl}", "--record", "{empty}"], "--record"),
    (["{rl}", "--speed", "0", "--record", "x.mp4"], "--speed"),
    (["{rl}", "--speed", "inf", "--record", "x.mp4"], "--speed"),
    (["{rl}", "--steps", "-1", "--record", "x.mp4"], "--steps"),
    (["{rl}", "--episodes", "0", "--record", "x.mp4"], "--episodes"),
    (["{rl}", "--seed", "-1", "--record", "x.mp4"], "--seed"),
    (["{rl}", "--size", "8", "--record", "x.mp4"], "--size"),
    (["{rl}", "--no-display"], "DISPLAY"),
]


@pytest.mark.parametrize("argv, match", WATCH)
def test_watch_options(argv, match, runs, one_clear_line, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    if "--no-display" in argv:
        monkeypatch.delenv("DISPLAY", raising=False)
        argv = [a for a in argv if a != "--no-display"]
    one_clear_line(watch.main, [a.format(**runs) for a in argv], match)
    assert not (tmp_path / "x.mp4").exists()


def test_there_are_at_least_forty_cases():
    assert len(TRAIN) + len(TRAIN_ON_RUNS) + len(EVALUATE) >= 40


def test_a_non_finite_state_keeps_the_last_good_checkpoint(tmp_path):
    run = Run(tmp_path, {}, total=4, checkpoint_every=2, progress=False)
    good = {"params": {"w": torch.ones(2)}}
    run.end_iteration(2, lambda: {"loss/x": 1.0}, lambda: good)
    bad = {"params": {"w": torch.tensor([1.0, math.inf])}, "optimizer": {"state": {}}}
    with pytest.raises(NonFiniteState, match=r"params/w became NaN or infinite by iteration 4; "
                                             r"the checkpoint of iteration 2 is kept"):
        run.end_iteration(4, lambda: {"loss/x": 1.0}, lambda: bad)
    run.close()
    assert torch.equal(load_checkpoint(tmp_path)["state"]["params"]["w"], torch.ones(2))


def test_a_diverged_inner_step_names_the_inner_learning_rate():
    problem = Problem.build(RLConfig(meta_batch=2, episodes=2, horizon=5, inner_lr=1e300))
    tasks = problem.sample_tasks(2, 0)
    with pytest.raises(NonFiniteState, match="after inner step 1 became NaN.*--inner-lr"):
        problem.adapt(params_of(problem.policy), tasks, 0, problem.rules())
    with pytest.raises(ValueError, match="inner learning rate must be finite"):
        SGD(math.nan)


def test_stale_temporary_checkpoints_are_cleaned_and_resume_keeps_its_logged_point(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = Run(tmp_path, {}, total=3, checkpoint_every=2, progress=False)
    for i in (1, 2, 3):  # the checkpoint is at 2; what 3 logged is lost in a crash
        run.end_iteration(i, lambda i=i: {"loss/x": float(i)}, lambda: {})
    run.close()
    (tmp_path / "checkpoint.pt1234.tmp").write_bytes(b"half written by a killed run")
    resumed = Run(tmp_path, {}, total=3, start=2, progress=False)
    assert not list(tmp_path.glob("*.tmp"))
    resumed.end_iteration(3, lambda: {"loss/x": 30.0}, lambda: {})
    resumed.close()
    # TensorBoard reads a folder's event files in name order, which is start-time order
    # across processes; both writers here started in one process within a second, where the
    # names' last field (a per-process counter, 9 < 10 as text) may not be. Read each file,
    # the original run's first, as two processes' files would be.
    files = []
    for path in tmp_path.glob("events.out.tfevents.*"):
        events = EventAccumulator(str(path))
        events.Reload()
        files.append([(e.wall_time, e.step, e.value) for e in events.Scalars("loss/x")])
    files.sort(key=lambda f: f[0][0])
    assert [[(step, value) for _, step, value in f] for f in files] == [
        [(1, 1.0), (2, 2.0), (3, 3.0)], [(3, 30.0)]]
    # The resumed file tells TensorBoard to drop what the lost iteration logged (steps >= 3 of
    # earlier files), so it shows 1, 2, 30.
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    resumed_file = max(tmp_path.glob("events.out.tfevents.*"),
                       key=lambda p: next(iter(EventFileLoader(str(p)).Load())).wall_time)
    assert any(e.HasField("session_log") and e.session_log.status == SessionLog.START
               and e.step == 3 for e in EventFileLoader(str(resumed_file)).Load())


@pytest.mark.slow
def test_soak_without_drift():
    """100 MAML-TRPO navigation and 1,000 sinusoid MAML iterations in one process
    (benchmarks/soak.py; the README gives the 1,000-iteration run): no NaN, and resident memory
    after warm-up grows by at most 5%."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "soak.py"
    done = subprocess.run([sys.executable, str(script), "--nav-iterations", "100",
                           "--sinusoid-iterations", "1000", "--every", "50"],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    ratios = [float(r) for r in re.findall(r"ratio end/warm memory = ([\d.]+)", done.stdout)]
    assert len(ratios) == 2 and max(ratios) <= 1.05, done.stdout
