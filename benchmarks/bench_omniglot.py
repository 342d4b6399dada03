"""Meta-iterations per second of second-order MAML on Omniglot 5-way 1-shot (meta-batch 32,
1 inner step of 0.4, Conv4): the vmapped core (``adapt_tasks``) against a per-task loop with
``torch.autograd.grad(..., create_graph=True)`` (how learn2learn and higher adapt), measured
side by side in one run; and the time to sample a meta-batch against the model's time.

    python benchmarks/bench_omniglot.py [--repeats 5] [--threads 2] [--device cpu] [--profile]
        [--learn2learn DIR]

``--learn2learn DIR`` adds learn2learn's own ``MAML`` wrapper (clone, adapt, query loss per
task) as a third path, loaded from learn2learn's unpacked source release in ``DIR``
(``pip download learn2learn==0.2.0 --no-deps --no-binary :all:``, then ``tar xzf``): its
release does not install on Python 3.11 (pre-generated C extensions) and pulls torchvision
and gym, while its MAML wrapper needs neither, so only ``learn2learn.algorithms.maml`` and
``learn2learn.utils`` are imported.

``--profile`` adds where a vmapped step's time goes (torch.profiler, self CPU time by operator
family): the convolutions' forward, backward and double backward against everything else.

Reads the data from the usual places (``--data-dir``, $METARL_DATA, ../shared/data/omniglot).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from metarl.adapt import adapt_tasks, task_losses  # noqa: E402
from metarl.envs.omniglot import Omniglot
from metarl.memory import tune_allocator  # noqa: E402
from metarl.params import params_of  # noqa: E402
from metarl.rules import SGD  # noqa: E402
from metarl.tasks import loss_fn as task_loss  # noqa: E402
from oracles import adapt_reference  # noqa: E402  (the tests' per-task loop)


def main() -> None:
    tune_allocator()  # as the commands do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--profile", action="store_true",
                        help="also print where a vmapped step's time goes")
    parser.add_argument("--learn2learn", type=Path, default=None, metavar="DIR",
                        help="also time learn2learn's MAML wrapper, from its unpacked source "
                             "release in DIR")
    args = parser.parse_args()
    learn2learn_cls = learn2learn_maml(args.learn2learn) if args.learn2learn else None
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    family = Omniglot(ways=5, shots=1, data_dir=args.data_dir).build()
    torch.manual_seed(0)
    model = family.model().to(device)
    params = params_of(model)
    loss_fn = task_loss(family, model)
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [family.sample(32, generator).to(device) for _ in range(8)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def vmap_step(tasks):
        adapted = adapt_tasks(loss_fn, params, tasks.support, rule=SGD(0.4), steps=1)
        return task_losses(loss_fn, adapted, tasks.query).mean()

    def loop_step(tasks):
        (sx, sy), (qx, qy) = tasks.support, tasks.query
        supports = [(sx[i], sy[i]) for i in range(tasks.num_tasks)]
        adapted = adapt_reference(loss_fn, params, supports, rule=SGD(0.4), steps=1)
        return torch.stack([loss_fn(p, (qx[i], qy[i]))
                            for i, p in enumerate(adapted)]).mean()

    l2l_maml = None if learn2learn_cls is None else learn2learn_cls(model, lr=0.4,
                                                                    first_order=False)

    def learn2learn_step(tasks):  # learn2learn's documented MAML loop, one task at a time
        (sx, sy), (qx, qy) = tasks.support, tasks.query
        losses = []
        for i in range(tasks.num_tasks):
            learner = l2l_maml.clone()
            # the family's own loss, with the cloned module as the forward pass
            forward = lambda _, x, learner=learner: learner(x)  # noqa: E731
            learner.adapt(family.loss(forward, {}, (sx[i], sy[i])))
            losses.append(family.loss(forward, {}, (qx[i], qy[i])))
        return torch.stack(losses).mean()

    def seconds_per_iteration(step) -> float:
        for i in range(2):  # warm-up
            optimizer.zero_grad()
            step(batches[i % 8]).backward()
            optimizer.step()
        sync()
        t = time.perf_counter()
        for i in range(args.iterations):
            optimizer.zero_grad()
            step(batches[i % 8]).backward()
            optimizer.step()
        sync()
        return (time.perf_counter() - t) / args.iterations

    def seconds_per_sample() -> float:
        t = time.perf_counter()
        for _ in range(50):
            family.sample(32, generator).to(device)
        sync()
        return (time.perf_counter() - t) / 50

    print(f"omniglot 5-way 1-shot MAML (second order), meta-batch 32, 1 inner step, Conv4, "
          f"device={args.device}, torch threads={args.threads}, {args.repeats} repeats, medians")
    v, lp, ratios, sample, sample_ratios = [], [], [], [], []
    l2l, l2l_ratios = [], []
    for _ in range(args.repeats):  # interleaved so every path sees the same machine load
        v.append(seconds_per_iteration(vmap_step))
        lp.append(seconds_per_iteration(loop_step))
        if l2l_maml is not None:
            l2l.append(seconds_per_iteration(learn2learn_step))
            l2l_ratios.append(l2l[-1] / v[-1])
        sample.append(seconds_per_sample())
        ratios.append(lp[-1] / v[-1])
        sample_ratios.append(v[-1] / sample[-1])
    print(f"vmap {1 / statistics.median(v):6.2f} it/s   per-task loop "
          f"{1 / statistics.median(lp):6.2f} it/s   speed ratio vmap/loop "
          f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    if l2l:
        print(f"learn2learn MAML {1 / statistics.median(l2l):6.2f} it/s   speed ratio "
              f"vmap/learn2learn {statistics.median(l2l_ratios):.2f}x (min {min(l2l_ratios):.2f}x, "
              f"max {max(l2l_ratios):.2f}x)")
    print(f"sampling a meta-batch {1e3 * statistics.median(sample):.2f} ms   vmap model step "
          f"{1e3 * statistics.median(v):.0f} ms   ratio model/sampling "
          f"{statistics.median(sample_ratios):.0f}x")
    if args.profile:
        profile(vmap_step, batches, optimizer)


def learn2learn_maml(source: Path):
    """learn2learn's ``MAML`` class from its unpacked source release at ``source`` (the folder
    holding ``learn2learn/``), imported without the package's ``__init__``, which needs its
    compiled data extensions, torchvision and gym."""
    root = source / "learn2learn"
    if not (root / "algorithms" / "maml.py").is_file():
        sys.exit(f"error: --learn2learn {source}: no learn2learn/algorithms/maml.py there; "
                 "unpack learn2learn's source release (pip download learn2learn==0.2.0 "
                 "--no-deps --no-binary :all:; tar xzf) and pass its folder")
    for name, path in (("learn2learn", root), ("learn2learn.algorithms", root / "algorithms")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    return importlib.import_module("learn2learn.algorithms.maml").MAML


def profile(step, batches, optimizer) -> None:
    """Self CPU time of one vmapped meta-iteration's operators, grouped into convolutions
    (any ``conv`` operator, forward or backward), batch norm's tensor ops are not separable
    from the rest, so the rest is one group."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for i in range(2):  # warm-up
        optimizer.zero_grad()
        step(batches[i]).backward()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(3):
            optimizer.zero_grad()
            step(batches[i]).backward()
    rows = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in rows)
    conv = sum(t for k, t in rows if "conv" in k.lower())
    top = sorted(rows, key=lambda r: -r[1])[:8]
    print(f"profile of 3 vmapped meta-iterations: convolution operators {100 * conv / total:.0f}% "
          f"of self CPU time (ratio conv/rest {conv / max(total - conv, 1e-9):.2f}); top: "
          + ", ".join(f"{k} {100 * t / total:.0f}%" for k, t in top))


if __name__ == "__main__":
    main()
