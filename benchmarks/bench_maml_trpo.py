"""Seconds per MAML-TRPO meta-iteration, split into sampling, adaptation and outer step, against
the physics floor of the same env-steps (open-loop random controls through the same native
stepping), measured side by side in one run.

    python benchmarks/bench_maml_trpo.py [--env cheetah|nav|both] [--iterations 3]

Preset: HalfCheetahVel at horizon 100, 40 tasks x 20 episodes (support + query = 160k
env-steps per meta-iteration), 64x64 tanh policy, 1 inner step, CG 10 iterations; 2D
navigation with 20 tasks x 20 episodes. Curvature settings: exact (the reference's: KL
Hessian through the second-order adaptation), the same on 20% of the tasks (``--cg-subsample
0.2``), and the Fisher of the adapted policies (``--cg-first-order``, all or 20% of the tasks).
Each curvature is taken as the commands take it by default (Gauss-Newton products, compiled;
the first, warm-up iteration compiles them), uncompiled (``-eager``) and by double backward
(``-db``, the reference's way). The public
PyTorch reference took 20.5 s (cheetah, 2 workers) and 6.2 s (navigation) per meta-iteration on
this machine, medians of runs alternating with this project's (it is not run here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_sampler import floor_fn  # noqa: E402

from metarl.algos.maml_trpo import TrustRegion, trpo_step  # noqa: E402
from metarl.algos.meta_rl import Problem, all_cores, iteration_seed  # noqa: E402
from metarl.config import RLConfig  # noqa: E402
from metarl.memory import tune_allocator  # noqa: E402
from metarl.params import params_of  # noqa: E402

# The reference's medians, run alternately with this project on this machine (issue 17).
REFERENCE_SECONDS = {"metarl/HalfCheetahVel-v0": 20.5, "metarl/Navigation2D-v0": 6.2}


SETTINGS = {
    "exact": {},
    "exact-db": {"curvature": "double-backward"},
    "exact-eager": {"compile_curvature": False},
    "sub0.2": {"cg_subsample": 0.2},
    "sub0.2-db": {"cg_subsample": 0.2, "curvature": "double-backward"},
    "fo": {"cg_first_order": True},
    "fo-sub0.2": {"cg_first_order": True, "cg_subsample": 0.2},
}


def bench(env_id: str, meta_batch: int, iterations: int, setting: dict,
          outer_threads: int | None = None) -> dict:
    cfg = RLConfig(env_id=env_id, meta_batch=meta_batch, episodes=20,
                   outer_torch_threads=outer_threads)
    trust = TrustRegion(**setting)
    problem = Problem.build(cfg)
    theta, rules = params_of(problem.policy), problem.rules()
    floor = floor_fn(problem.sim, problem.horizon, 0)
    rows = []
    for it in range(iterations + 1):  # the first is warm-up
        seed = iteration_seed(0, it)
        tasks = problem.sample_tasks(meta_batch, seed)
        t0 = time.perf_counter()
        # as algos/maml_trpo.py's loop: support trajectories, inner step, query trajectories
        supports, adapted = problem.adapt(theta, tasks, seed, rules)
        query = problem.rollouts(adapted, tasks, seed + len(rules))
        t1 = time.perf_counter()
        with problem.outer_step():  # on the run's outer threads (default: every core)
            trpo_step(trust, problem.losses, theta, [s.batch for s in supports], query.batch,
                      rules)
        t2 = time.perf_counter()
        floor()  # the same env-steps as support + query: two rounds of N x E x T
        floor()
        t3 = time.perf_counter()
        if it:
            rows.append({"sampling": sum(r.sample_seconds for r in [*supports, query]),
                         "adaptation": sum(s.adapt_seconds for s in supports),
                         "outer": t2 - t1, "total": t2 - t0, "floor": t3 - t2})
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main() -> None:
    tune_allocator()  # as the commands do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=["cheetah", "nav", "both"], default="both")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--outer-torch-threads", type=int, default=None,
                        help="threads for the outer step only (default: every core, as the "
                        "commands do, or OMP_NUM_THREADS)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    # one compiled product per setting and env: more shapes than a training run's one
    torch._dynamo.config.recompile_limit = 64
    envs = {"cheetah": [("metarl/HalfCheetahVel-v0", 40)], "nav": [("metarl/Navigation2D-v0", 20)]}
    chosen = envs["cheetah"] + envs["nav"] if args.env == "both" else envs[args.env]
    print(f"MAML-TRPO seconds per meta-iteration, medians of {args.iterations} iterations "
          f"(after one warm-up), torch threads={args.torch_threads}, "
          f"outer step {args.outer_torch_threads or all_cores()}")
    for env_id, n in chosen:
        outer = {}
        for name in args.settings:
            m = bench(env_id, n, args.iterations, SETTINGS[name], args.outer_torch_threads)
            outer[name] = m["outer"]
            ref = REFERENCE_SECONDS[env_id]
            print(f"{env_id} {n} tasks x 20 episodes, curvature {name} {SETTINGS[name]}: "
                  f"sampling {m['sampling']:.2f} s, adaptation {m['adaptation']:.2f} s, "
                  f"outer step {m['outer']:.2f} s, total {m['total']:.2f} s; "
                  f"physics floor {m['floor']:.2f} s")
            print(f"  ratio total/floor = {m['total'] / m['floor']:.2f} (targets: exact <= 2.5, "
                  f"recommended <= 1.6);  ratio reference/total = {ref / m['total']:.1f}x "
                  f"(reference {ref} s; target >= 5x)")
        for name in outer:
            default, _, variant = name.rpartition("-")
            if variant in ("db", "eager") and default in outer:
                print(f"  ratio outer step {name} / {default} = "
                      f"{outer[name] / outer[default]:.2f}")


if __name__ == "__main__":
    main()
