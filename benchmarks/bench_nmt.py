"""MetaNMT on NTREX (the ``ntrex`` preset's task and model): meta-iterations per second of the
vmapped core against a per-task loop with ``torch.autograd.grad`` (how learn2learn and higher
adapt), first and second order, and decoding sentences per second (batched greedy, one
sentence at a time, batched beam search), all measured side by side in one run.

    python benchmarks/bench_nmt.py [--repeats 3] [--iterations 3] [--run runs/ntrex-metanmt]

Without ``--run`` the decoder is the random initialisation, whose outputs run to their length
caps (1.5 x source + 10 subwords): the slowest case.
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
from metarl.checkpoint import load_checkpoint  # noqa: E402
from metarl.memory import tune_allocator  # noqa: E402
from metarl.params import params_of  # noqa: E402
from metarl.rules import Adam  # noqa: E402
from metarl.scripts.presets import PRESETS  # noqa: E402
from metarl.tasks import loss_fn as task_loss  # noqa: E402
from metarl.translation import translate  # noqa: E402
from oracles import adapt_reference  # noqa: E402  (the tests' per-task loop)


def main() -> None:
    tune_allocator()  # as the commands do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=64, help="test sentences decoded")
    parser.add_argument("--run", default=None, help="a trained run to decode with")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    preset = PRESETS["ntrex"][1]
    family = preset.task.build()
    cfg = preset.meta
    torch.manual_seed(0)
    model = family.model()
    params = params_of(model)
    loss_fn = task_loss(family, model)
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [family.sample(cfg.meta_batch, generator) for _ in range(4)]
    rule = Adam(cfg.inner_lr)

    def vmap_step(tasks, first_order):
        adapted = adapt_tasks(loss_fn, params, tasks.support, rule=rule, steps=cfg.inner_steps,
                              first_order=first_order)
        return task_losses(loss_fn, adapted, tasks.query).mean()

    def loop_step(tasks, first_order):
        (sx, sy), (qx, qy) = tasks.support, tasks.query
        supports = [(sx[i], sy[i]) for i in range(tasks.num_tasks)]
        adapted = adapt_reference(loss_fn, params, supports, rule=rule, steps=cfg.inner_steps,
                                  first_order=first_order)
        return torch.stack([loss_fn(p, (qx[i], qy[i])) for i, p in enumerate(adapted)]).mean()

    def rate(step, first_order) -> float:
        optimizer.zero_grad()
        step(batches[-1], first_order).backward()  # warm-up
        optimizer.step()
        t = time.perf_counter()
        for i in range(args.iterations):
            optimizer.zero_grad()
            step(batches[i % 3], first_order).backward()
            optimizer.step()
        return args.iterations / (time.perf_counter() - t)

    shape, size = family.shape, sum(p.numel() for p in params.values())
    print(f"MetaNMT on ntrex: meta-batch {cfg.meta_batch} x ({family.config.shots} + "
          f"{family.config.query}) sentence pairs, {cfg.inner_steps} Adam inner step, "
          f"Transformer d {shape.d_model}, {shape.encoder_layers}+{shape.decoder_layers} layers, "
          f"vocabularies {shape.vocab}/{shape.target_vocab}, {size:,} parameters; torch "
          f"threads={args.threads}, {args.repeats} repeats, medians")
    for first_order, label in ((True, "first order (MetaNMT)"), (False, "second order")):
        v, lp, ratios = [], [], []
        for _ in range(args.repeats):  # interleaved so both paths see the same machine load
            v.append(rate(vmap_step, first_order))
            lp.append(rate(loop_step, first_order))
            ratios.append(v[-1] / lp[-1])
        print(f"{label:22s}: vmap {statistics.median(v):6.3f} it/s   per-task loop "
              f"{statistics.median(lp):6.3f} it/s   ratio {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")

    decoder = {k: v.detach() for k, v in params.items()}
    source = "random initialisation (outputs run to their caps)"
    if args.run is not None:
        decoder = load_checkpoint(args.run)["state"]["params"]
        source = args.run
    lines = family.lines["test"][: args.sentences]
    sources = [family.source_ids["ron"][i] for i in lines]

    def speed(**kw) -> float:
        t = time.perf_counter()
        translate(decoder, shape, sources, **kw)
        return len(sources) / (time.perf_counter() - t)

    speeds: dict[str, list[float]] = {"greedy, batch 64": [], "greedy, one at a time": [],
                                      "beam 4, batch 64": []}
    for _ in range(args.repeats):
        speeds["greedy, batch 64"].append(speed(beam=1, batch=64))
        speeds["greedy, one at a time"].append(speed(beam=1, batch=1))
        speeds["beam 4, batch 64"].append(speed(beam=4, batch=64))
    print(f"decoding {len(sources)} ron test sentences with the {source}:")
    for name, values in speeds.items():
        print(f"  {name:22s}: {statistics.median(values):7.2f} sentences/s")
    batched = [a / b for a, b in zip(speeds["greedy, batch 64"], speeds["greedy, one at a time"])]
    beam = [a / b for a, b in zip(speeds["beam 4, batch 64"], speeds["greedy, batch 64"])]
    print(f"  batched/one-at-a-time greedy ratio {statistics.median(batched):.2f}x; "
          f"beam 4/greedy ratio {statistics.median(beam):.2f}x")


if __name__ == "__main__":
    main()
