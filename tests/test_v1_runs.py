"""Runs saved by metarl 0.1 (checkpoint format v1: the algorithm named by a field of the shared
settings, Meta-SGD's rates stored as ``inner_lr``), written by that version's own commands
(tests/data/v1/README.md), still evaluate and resume."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from metarl.checkpoint import FORMAT, load_checkpoint
from metarl.config import from_dict
from metarl.scripts import evaluate, train
from metarl.scripts.experiments import config_types, load_run
from metarl.scripts.presets import task_types

V1 = Path(__file__).parent / "data" / "v1"


@pytest.mark.parametrize("name, algo", [("sinusoid-metasgd", "metasgd"),
                                        ("sinusoid-reptile", "reptile"),
                                        ("nav2d-maml-trpo", "maml-trpo"),
                                        ("nav2d-pretrain", "pretrain")])
def test_a_v1_run_evaluates_and_resumes(tmp_path, name, algo, one_torch_thread):
    run = tmp_path / name
    run.mkdir()
    shutil.copy(V1 / f"{name}.pt", run / "checkpoint.pt")
    saved = load_checkpoint(run)
    assert saved["format"] == "metarl-checkpoint-v1"
    rl = {"episodes": 2} if name.startswith("nav2d") else {}  # RL-only options are refused
    summary = evaluate.evaluate(evaluate.Evaluate(runs=(str(run),), tasks=3, steps=1,
                                                  out=str(tmp_path / "eval"), **rl))
    assert algo in summary["methods"]
    assert summary["methods"][algo]["iterations"] == saved["state"]["iteration"]

    upgraded = load_run(run)
    config = from_dict(upgraded["config"], config_types(task_types()))
    assert config.algo.name == algo
    if algo == "metasgd":  # the learned rates come back as the rule's tensors
        for k, rates in saved["state"]["inner_lr"].items():
            assert torch.equal(upgraded["state"]["rule"][k], rates)
    settings = config.settings
    more = replace(config, out=str(run), resume=True,
                   **{"meta" if hasattr(config, "meta") else "rl":
                      replace(settings, iterations=settings.iterations + 1)})
    resumed = load_checkpoint(train.train(more, progress=False))
    assert resumed["format"] == FORMAT and resumed["state"]["iteration"] == \
        saved["state"]["iteration"] + 1
