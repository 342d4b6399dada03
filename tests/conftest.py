"""Fixtures shared by the test modules: torch threads as the RL runs use them, the
crash-and-resume harness, and the scalars a run logged to TensorBoard."""

from __future__ import annotations

import os

# torch.compile off for the suite (its subprocesses included): compiling every tiny problem
# would cost minutes, and the compiled functions run the same math eagerly; the tests that
# compile turn it back on.
os.environ["TORCHDYNAMO_DISABLE"] = "1"

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from metarl.checkpoint import load_checkpoint
from metarl.logger import Run
from metarl.scripts import train


@pytest.fixture
def one_torch_thread():
    """As the RL runs do (RLConfig.torch_threads): small policies gain nothing from a second
    thread, and OpenMP oversubscription on a busy machine costs 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Crash(Exception):
    pass


@pytest.fixture
def resumed_equals_uninterrupted(monkeypatch) -> Callable[[Any, Any, int], None]:
    """``check(full, part, crash_at)``: train ``full`` to the end; train ``part`` (the same
    experiment in another folder) until it crashes after iteration ``crash_at``, resume it, and
    assert the final params are bit-identical."""

    def check(full: Any, part: Any, crash_at: int) -> None:
        uninterrupted = train.train(full, progress=False)
        end_iteration = Run.end_iteration

        def crash(self, iteration, metrics, state, **videos):
            end_iteration(self, iteration, metrics, state, **videos)
            if iteration == crash_at:
                raise Crash

        with monkeypatch.context() as m:
            m.setattr(Run, "end_iteration", crash)
            with pytest.raises(Crash):
                train.train(part, progress=False)
        every = part.settings.checkpoint_every  # the last checkpoint before the crash
        assert load_checkpoint(part.run_dir)["state"]["iteration"] == crash_at - crash_at % every
        resumed = train.train(replace(part, resume=True), progress=False)
        a, b = load_checkpoint(uninterrupted)["state"], load_checkpoint(resumed)["state"]
        for k in a["params"]:
            assert torch.equal(a["params"][k], b["params"][k]), k

    return check


@pytest.fixture
def scalars() -> Callable[[str | Path], dict[str, float]]:
    """``scalars(run_dir)``: the last value of every scalar a run wrote to TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def read(run_dir: str | Path) -> dict[str, float]:
        acc = EventAccumulator(str(run_dir))
        acc.Reload()
        return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}

    return read


@pytest.fixture
def one_clear_line(capsys) -> Callable[..., None]:
    """``one_clear_line(main, argv, match)``: the command exits 1 or 2 with one line on
    standard error, ``<command>: error: ...`` holding ``match``, and no traceback."""

    def check(main: Callable[[list[str]], None], argv: list[str], match: str) -> None:
        capsys.readouterr()  # what earlier calls printed
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code in (1, 2)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert err[0].startswith(("metarl-train: error:", "metarl-evaluate: error:",
                                  "metarl-watch: error:", "metarl-oracle: error:",
                                  "metarl-curves: error:")), err[0]
        assert match in err[0], err[0]

    return check
