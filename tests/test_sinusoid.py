"""Sinusoid regression end to end: tasks, every method's training loop, resume, evaluation, CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from metarl.algos import of_kind
from metarl.checkpoint import load_checkpoint, save_checkpoint
from metarl.config import MetaConfig
from metarl.envs.sinusoid import Sinusoid
from metarl.errors import CheckpointError, ConfigError
from metarl.scripts import evaluate, train
from metarl.scripts.experiments import Supervised
from metarl.scripts.presets import PRESETS

ALGORITHMS = {cls.name: cls for cls in of_kind("supervised")}


def _config(tmp_path, method="maml", iterations=6, algo=None, **meta):
    base = PRESETS["sinusoid"][1]
    return replace(base, out=str(tmp_path / method), algo=algo or ALGORITHMS[method](),
                   meta=replace(base.meta, **{"iterations": iterations, "meta_batch": 4,
                                              "log_every": 2, "checkpoint_every": 3, **meta}))


def test_tasks_follow_finn_et_al_and_are_seeded():
    family = Sinusoid(shots=5, query=7)
    tasks = family.sample(50, torch.Generator().manual_seed(0))
    (support_x, support_y), (query_x, query_y) = tasks.support, tasks.query
    assert support_x.shape == (50, 5, 1) and query_y.shape == (50, 7, 1)
    amp, phase = tasks.info.T
    assert amp.min() >= 0.1 and amp.max() <= 5.0 and phase.min() >= 0 and phase.max() <= math.pi
    assert support_x.abs().max() <= 5.0
    expected = amp[:, None, None] * torch.sin(support_x - phase[:, None, None])
    torch.testing.assert_close(support_y, expected)
    again = family.sample(50, torch.Generator().manual_seed(0))
    assert torch.equal(again.query[0], query_x)
    assert sum(p.numel() for p in family.model().parameters()) == 1 * 40 + 40 + 40 * 40 + 40 + 41


# The metric learners classify N-way tasks; they refuse regression (tests/test_metric.py).
REGRESSION = [m for m in ALGORITHMS if m not in ("protonets", "matchingnets")]


@pytest.mark.parametrize("method", REGRESSION)
def test_every_method_trains_checkpoints_and_evaluates(tmp_path, method):
    config = _config(tmp_path, method)
    path = train.train(config, progress=False)
    state = load_checkpoint(path)["state"]
    assert state["iteration"] == (0 if method == "scratch" else 6)  # scratch learns nothing
    assert all(torch.isfinite(v).all() for v in state["params"].values())
    if method == "metasgd":
        rates = state["rule"]
        assert set(rates) == set(state["params"]) and any((r != 0.01).any()
                                                           for r in rates.values())
    elif method == "meta-lstm":  # its learned optimizer's weights
        assert state["rule"] and all(torch.isfinite(v).all() for v in state["rule"].values())
    else:
        assert state["rule"] == {}
    out = tmp_path / "eval"
    summary = evaluate.evaluate(evaluate.Evaluate(runs=(str(path.parent),), tasks=8, steps=3,
                                                  out=str(out)))
    curve = summary["methods"][method]["mse"]["mean"]
    assert len(curve) == 4 and all(math.isfinite(v) for v in curve)
    assert json.loads((out / "results.json").read_text())["tasks"] == 8
    assert (out / "curves.png").stat().st_size > 0 and (out / "fits.png").stat().st_size > 0


@pytest.mark.parametrize("method", ["maml", "reptile"])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, method,
                                                              resumed_equals_uninterrupted):
    # one iteration past the checkpoint at 3 is lost
    resumed_equals_uninterrupted(_config(tmp_path / "full", method),
                                 _config(tmp_path / "part", method), crash_at=4)


def test_maml_learns_quickly_beyond_the_pretraining_baseline(tmp_path):
    """A short run already shows the effect: MAML adapts, the joint model cannot."""
    runs = [train.train(_config(tmp_path, m, iterations=600, meta_batch=10), progress=False)
            for m in ("maml", "pretrain")]
    summary = evaluate.evaluate(evaluate.Evaluate(runs=tuple(str(r.parent) for r in runs),
                                                  tasks=200, steps=10, out=str(tmp_path / "e")))
    maml, pre = (summary["methods"][m]["mse"]["mean"] for m in ("maml", "pretrain"))
    assert maml[1] < maml[0] and maml[10] < maml[1]
    assert maml[1] < pre[1] and maml[10] < pre[10]


def test_existing_run_is_not_overwritten_and_resume_checks_options(tmp_path):
    config = _config(tmp_path, iterations=2)
    train.train(config, progress=False)
    with pytest.raises(CheckpointError, match="--resume"):
        train.train(config, progress=False)
    changed = replace(config, resume=True, meta=replace(config.meta, inner_lr=0.5))
    with pytest.raises(CheckpointError, match="inner_lr"):
        train.train(changed, progress=False)
    other_algorithm = replace(config, resume=True, algo=ALGORITHMS["fomaml"]())
    with pytest.raises(CheckpointError, match="__class__"):
        train.train(other_algorithm, progress=False)


def test_checkpoints_are_atomic_and_corrupt_files_are_named(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"x": torch.ones(2)})
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    from metarl.logger import NonFiniteScalar

    config = _config(tmp_path, iterations=6, inner_lr=1e6, algo=ALGORITHMS["maml"](outer_lr=1.0))
    with pytest.raises(NonFiniteScalar, match="resume"):
        train.train(config, progress=False)


def test_every_logged_scalar_is_checked_not_only_losses(tmp_path):
    from metarl.logger import NonFiniteScalar, Run

    run = Run(tmp_path, {}, total=1, progress=False)
    with pytest.raises(NonFiniteScalar, match="returns/after_adaptation is nan"):
        run.log(1, {"loss/outer": 0.5, "returns/after_adaptation": float("nan")})
    run.close()


@pytest.mark.parametrize("kwargs, match", [
    (dict(inner_lr=-0.1), "inner_lr must be a positive"),
    (dict(meta_batch=0), "meta_batch"),
    (dict(inner_steps=-1), "inner_steps"),
])
def test_bad_meta_config_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MetaConfig(**kwargs)


@pytest.mark.parametrize("argv, match", [
    (["sinusoid", "magic"], "Unrecognized options: magic"),
    (["sinusoid", "--method", "pretrain"], "the algorithm is a subcommand"),
    (["sinusoid", "reptile", "--epsilon", "0"], "epsilon must be a positive number"),
    (["sinusoid", "--outer-lr", "nan"], "outer_lr must be a positive number"),
    (["sinusoid", "--task.shots", "0"], "shots (K) must be a positive integer"),
    (["sinusoid", "--inner-lr", "-1"], "inner_lr must be a positive number"),
    (["sinusoid", "--no-such-option", "1"], "Unrecognized options: --no-such-option"),
    (["no-such-preset"], "Available subcommands"),
])
def test_cli_bad_input_is_one_line(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code != 0
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_evaluate_cli_missing_checkpoint_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate.main([str(tmp_path / "nothing-here")])
    err = capsys.readouterr().err.strip()
    assert "no checkpoint at" in err and len(err.splitlines()) == 1


def test_config_roundtrip_rejects_unknown_keys():
    from metarl.config import from_dict, to_dict
    from metarl.scripts.experiments import config_types
    from metarl.scripts.presets import task_types

    types = config_types(task_types())
    config = replace(PRESETS["sinusoid"][1], algo=ALGORITHMS["reptile"](epsilon=0.3))
    assert from_dict(to_dict(config), types) == config
    bad = to_dict(config)
    bad["meta"]["inner_rate"] = 0.1
    with pytest.raises(ConfigError, match="inner_rate"):
        from_dict(bad, types)
    assert isinstance(config, Supervised)


@pytest.mark.parametrize("preset", ["sinusoid", "nav2d"])
@pytest.mark.parametrize("device, match", [("cuda", "sees no CUDA GPU"),
                                           ("tpu", "unknown device 'tpu'")])
def test_unusable_device_is_one_line(tmp_path, preset, device, match, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        train.main([preset, "--device", device, "--iterations", "1",
                    "--out", str(tmp_path / "run")])
    assert e.value.code != 0 and not (tmp_path / "run").exists()
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_evaluate_on_an_unusable_device_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        evaluate.main([str(tmp_path), "--device", "cuda"])
    err = capsys.readouterr().err.strip()
    assert "sees no CUDA GPU" in err and len(err.splitlines()) == 1


def test_a_moved_run_resumes_wherever_it_is_and_names_real_mismatches(tmp_path):
    import shutil

    first = _config(tmp_path / "a", iterations=3)
    train.train(first, progress=False)
    moved = tmp_path / "elsewhere"
    shutil.copytree(first.run_dir, moved)
    resumed = train.train(replace(first, out=f"{moved}/", resume=True,
                                  meta=replace(first.meta, iterations=6)), progress=False)
    assert load_checkpoint(resumed)["state"]["iteration"] == 6
    other_task = replace(first, out=str(moved), resume=True, task=Sinusoid(shots=5),
                         meta=replace(first.meta, iterations=9))
    with pytest.raises(CheckpointError, match="task.shots was 10 in the saved run, now 5"):
        train.train(other_task, progress=False)
