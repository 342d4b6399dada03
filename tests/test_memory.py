"""The allocator set-up every command makes (metarl.memory): it changes where memory comes
from, never what is computed; it is a no-op without glibc; runs log their peak memory."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest
import torch

from metarl import memory
from metarl.config import MetaConfig, RLConfig
from metarl.scripts import train
from metarl.scripts.experiments import MetaRL
from metarl.scripts.presets import PRESETS


def _train_in_a_fresh_process(config: str, tuned: bool) -> None:
    code = f"""
        import torch
        from metarl.config import MetaConfig, RLConfig
        from metarl.memory import tune_allocator
        from metarl.scripts import train
        from metarl.scripts.experiments import MetaRL
        from metarl.scripts.presets import PRESETS
        from dataclasses import replace
        torch.set_num_threads(1)
        assert tune_allocator() if {tuned} else True
        train.train({config}, progress=False)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("kind", ["maml-trpo", "sinusoid"])
def test_the_allocator_set_up_keeps_runs_bit_identical(tmp_path, kind):
    for tuned in (False, True):
        out = repr(str(tmp_path / str(tuned)))
        config = (f"MetaRL(rl=RLConfig(meta_batch=4, episodes=4, horizon=20, iterations=3), "
                  f"out={out})" if kind == "maml-trpo" else
                  f"replace(PRESETS['sinusoid'][1], out={out}, meta=MetaConfig(iterations=50))")
        _train_in_a_fresh_process(config, tuned)
    a, b = (torch.load(tmp_path / str(t) / "checkpoint.pt", weights_only=True)["state"]
            for t in (False, True))
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k


def test_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_tuned", False)

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert memory.tune_allocator() is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert memory.tune_allocator() is False


def test_runs_log_their_peak_memory(tmp_path, scalars):
    config = MetaRL(rl=RLConfig(meta_batch=2, episodes=2, horizon=8, iterations=2),
                    out=str(tmp_path / "rl"))
    sinusoid = PRESETS["sinusoid"][1]
    supervised = type(sinusoid)(task=sinusoid.task, out=str(tmp_path / "sl"),
                                meta=MetaConfig(iterations=4, log_every=2))
    for run in (config, supervised):
        logged = scalars(train.train(run, progress=False).parent)
        usage = memory.Usage.now()
        assert 100 < logged["memory/peak_rss_mb"] <= usage.peak_rss_mb
