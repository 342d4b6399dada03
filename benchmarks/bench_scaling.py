"""How the cost of a meta-iteration grows with the meta-batch, before and after the allocator
set-up of ``metarl.memory.tune_allocator`` (which every command makes at start), measured side
by side in one run: seconds per iteration, peak resident memory, minor page faults and system
time per iteration, and the ratio of each doubling.

    python benchmarks/bench_scaling.py [--rl 10 20 40 80 160] [--omniglot 8 16 32 64]

MAML-TRPO: HalfCheetahVel, exact curvature, 20 episodes x horizon 100, 64x64 tanh policy, one
torch thread (sampling and outer step), whole iterations (sampling, inner step, TRPO step).
Omniglot: 5-way 1-shot second-order MAML, Conv4, one torch thread. Each point runs in a fresh
process (peak memory is per process), with one warm-up iteration.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

ALLOCATORS = ("glibc default", "tuned")
# --allocators mmap-threshold: the alternative that measured worse above 40 tasks (blocks over
# 32 MiB, glibc's cap, are still mmapped)
M_MMAP_THRESHOLD = -3


def rl_iteration(tasks: int):
    """One MAML-TRPO iteration at a time: sampling, the inner step, the TRPO step."""
    from metarl.algos.maml_trpo import TrustRegion, trpo_step
    from metarl.algos.meta_rl import Problem
    from metarl.config import RLConfig
    from metarl.params import params_of

    problem = Problem.build(RLConfig(env_id="metarl/HalfCheetahVel-v0", meta_batch=tasks,
                                     episodes=20))
    theta, rules = params_of(problem.policy), problem.rules()
    iteration = iter(range(10**9))

    def step() -> None:
        seed = problem.seed(next(iteration))
        tasks_ = problem.sample_tasks(tasks, seed)
        supports, adapted = problem.adapt(theta, tasks_, seed, rules)
        query = problem.rollouts(adapted, tasks_, seed + 1)
        trpo_step(TrustRegion(), problem.losses, theta, [s.batch for s in supports], query.batch,
                  rules)

    return step


def omniglot_iteration(tasks: int):
    """One second-order MAML iteration at a time on Omniglot 5-way 1-shot."""
    import torch

    from metarl.adapt import adapt_tasks, task_losses
    from metarl.envs.omniglot import Omniglot
    from metarl.params import params_of
    from metarl.rules import SGD
    from metarl.tasks import loss_fn

    family = Omniglot(ways=5, shots=1).build()
    torch.manual_seed(0)
    model = family.model()
    params = params_of(model)
    loss = loss_fn(family, model)
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        batch = family.sample(tasks, generator)
        adapted = adapt_tasks(loss, params, batch.support, rule=SGD(0.4), steps=1)
        outer = task_losses(loss, adapted, batch.query).mean()
        optimizer.zero_grad()
        outer.backward()
        optimizer.step()

    return step


def worker(kind: str, tasks: int, iterations: int, allocator: str) -> None:
    import torch

    from metarl.memory import Usage, tune_allocator

    if allocator == "tuned":
        assert tune_allocator(), "glibc did not take the allocator settings"
    elif allocator == "mmap-threshold":
        import ctypes

        from metarl.memory import M_TRIM_THRESHOLD

        mallopt = ctypes.CDLL("libc.so.6").mallopt
        assert mallopt(M_MMAP_THRESHOLD, 32 * 2**20) and mallopt(M_TRIM_THRESHOLD, -1)
    torch.set_num_threads(1)
    step = (rl_iteration if kind == "rl" else omniglot_iteration)(tasks)
    step()  # warm-up
    start, seconds = Usage.now(), []
    for _ in range(iterations):
        t0 = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t0)
    used = Usage.now().since(start)
    print(json.dumps({"seconds": statistics.median(seconds), "peak_mb": used.peak_rss_mb,
                      "faults": used.minor_faults / iterations,
                      "system": used.system_seconds / iterations}))


def measure(kind: str, tasks: int, iterations: int, allocator: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", kind, str(tasks),
                          str(iterations), allocator], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rl", type=int, nargs="*", default=[10, 20, 40, 80, 160])
    parser.add_argument("--omniglot", type=int, nargs="*", default=[8, 16, 32, 64])
    parser.add_argument("--rl-iterations", type=int, default=2)
    parser.add_argument("--omniglot-iterations", type=int, default=10)
    parser.add_argument("--allocators", nargs="+", default=list(ALLOCATORS),
                        choices=[*ALLOCATORS, "mmap-threshold"])
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, tasks, iterations, allocator = args.worker
        worker(kind, int(tasks), int(iterations), allocator)
        return
    for kind, sizes, iterations, what in (
            ("rl", args.rl, args.rl_iterations, "MAML-TRPO HalfCheetahVel 20x100, exact CG"),
            ("omniglot", args.omniglot, args.omniglot_iterations, "Omniglot 5w1s 2nd-order MAML")):
        if not sizes:
            continue
        print(f"{what}, 1 torch thread; medians of {iterations} iterations after a warm-up; "
              "faults and system time per iteration")
        rows: dict[str, list[dict]] = {a: [] for a in args.allocators}
        for n in sizes:
            for allocator in args.allocators:  # interleaved, so all see the same machine
                m = measure(kind, n, iterations, allocator)
                rows[allocator].append(m)
                print(f"  {n:4d} tasks  {allocator:13s} {m['seconds']:8.2f} s/it  peak "
                      f"{m['peak_mb']:7.0f} MB  {m['faults']:11,.0f} faults  system "
                      f"{m['system']:6.2f} s ({100 * m['system'] / m['seconds']:4.1f}%)",
                      flush=True)
        for allocator, r in rows.items():
            doubling = ", ".join(f"{b['seconds'] / a['seconds']:.2f}x" for a, b in zip(r, r[1:]))
            print(f"  {allocator}: ratio per doubling {doubling}")
        if set(ALLOCATORS) <= set(rows):
            for n, before, after in zip(sizes, rows[ALLOCATORS[0]], rows[ALLOCATORS[1]]):
                print(f"  {n:4d} tasks: ratio default/tuned time "
                      f"{before['seconds'] / after['seconds']:.2f}x, ratio tuned/default peak "
                      f"memory {after['peak_mb'] / before['peak_mb']:.2f}x")


if __name__ == "__main__":
    main()
