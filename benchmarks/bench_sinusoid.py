"""Meta-iterations per second of second-order MAML on sinusoid regression (meta-batch 25, K = 10):
the vmapped core (``adapt_tasks``) against a per-task loop with ``torch.autograd.grad(...,
create_graph=True)`` (how learn2learn and higher adapt), measured side by side in one run.

    python benchmarks/bench_sinusoid.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from metarl.adapt import adapt_tasks, task_losses  # noqa: E402
from metarl.envs.sinusoid import Sinusoid
from metarl.memory import tune_allocator  # noqa: E402
from metarl.params import params_of  # noqa: E402
from metarl.rules import SGD  # noqa: E402
from metarl.tasks import loss_fn as task_loss  # noqa: E402
from oracles import adapt_reference  # noqa: E402  (the tests' per-task loop)


def main() -> None:
    tune_allocator()  # as the commands do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    family = Sinusoid(shots=10, query=10)
    torch.manual_seed(0)
    model = family.model()
    params = params_of(model)
    loss_fn = task_loss(family, model)
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [family.sample(25, generator) for _ in range(8)]

    def vmap_step(tasks, steps):
        adapted = adapt_tasks(loss_fn, params, tasks.support, rule=SGD(0.01), steps=steps)
        return task_losses(loss_fn, adapted, tasks.query).mean()

    def loop_step(tasks, steps):
        (sx, sy), (qx, qy) = tasks.support, tasks.query
        supports = [(sx[i], sy[i]) for i in range(tasks.num_tasks)]
        adapted = adapt_reference(loss_fn, params, supports, rule=SGD(0.01), steps=steps)
        return torch.stack([loss_fn(p, (qx[i], qy[i]))
                            for i, p in enumerate(adapted)]).mean()

    def rate(step, steps) -> float:
        for i in range(5):  # warm-up
            optimizer.zero_grad()
            step(batches[i % 8], steps).backward()
            optimizer.step()
        t = time.perf_counter()
        for i in range(args.iterations):
            optimizer.zero_grad()
            step(batches[i % 8], steps).backward()
            optimizer.step()
        return args.iterations / (time.perf_counter() - t)

    print(f"sinusoid MAML (second order), meta-batch 25, K=10, torch threads={args.threads}, "
          f"{args.repeats} repeats, medians")
    for steps in (1, 5):
        v, lp, ratios = [], [], []
        for _ in range(args.repeats):  # interleaved so both paths see the same machine load
            v.append(rate(vmap_step, steps))
            lp.append(rate(loop_step, steps))
            ratios.append(v[-1] / lp[-1])
        print(f"inner steps {steps}: vmap {statistics.median(v):8.1f} it/s   per-task loop "
              f"{statistics.median(lp):7.1f} it/s   ratio {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
