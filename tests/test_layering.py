"""The layering that `.ci/lint-imports` enforces, seen from a user's side: the core imports and
works with the layers above it unimportable, and a supervised task family loads no simulator."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap

import metarl

ABOVE_THE_CORE = ("envs", "algos", "scripts")
CORE = sorted(m.name for m in pkgutil.iter_modules(metarl.__path__)
              if m.name not in ABOVE_THE_CORE)


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_core_module_imports_and_runs_without_the_layers_above():
    assert {"adapt", "policy_gradient", "sampler", "simulator", "tasks", "trpo"} <= set(CORE)
    out = _run(f"""
        import importlib, sys

        class Unimportable:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[:2] in [["metarl", m] for m in {ABOVE_THE_CORE!r}]:
                    raise ImportError(f"{{name}} is unimportable in this test")

        sys.meta_path.insert(0, Unimportable())
        for module in {CORE!r}:
            importlib.import_module(f"metarl.{{module}}")

        import numpy as np
        import torch
        from metarl.params import expand, params_of
        from metarl.policies import GaussianMLPPolicy
        from metarl.sampler import sample
        from metarl.simulator import BatchedSim

        class Drift(BatchedSim):  # the contract, implemented without metarl.envs
            name, obs_dim, act_dim, task_type = "drift", 1, 1, float
            def __init__(self, n): self.n = n
            def set_tasks(self, tasks, ids=None): pass
            def reset(self, tasks, seeds=None, ids=None):
                self.x = np.zeros((self.n, 1)); return self.x
            def step(self, actions, active=None):
                self.x = self.x + actions
                return self.x, -np.abs(self.x[:, 0] - 1), np.zeros(self.n, bool)

        policy = GaussianMLPPolicy(1, 1, (4,))
        episodes = sample(policy, expand(params_of(policy), 2), [0.0, 1.0], Drift(6), 3, 5, 0)
        assert episodes.rewards.shape == (5, 2, 3)
        print(sorted(m for m in ("gymnasium", "mujoco") if m in sys.modules))
    """)
    assert out.strip() == "[]"  # the core needs no simulator library either


def test_a_supervised_task_family_loads_no_simulator():
    out = _run("""
        import sys
        import metarl.envs.sinusoid
        print(sorted(m for m in sys.modules if m.startswith("mujoco")
                     or m in ("metarl.envs.mujoco_family", "metarl.envs.point_nav")))
    """)
    assert out.strip() == "[]"
