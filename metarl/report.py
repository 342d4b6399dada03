"""The evaluation report of every kind of run: ``results.json``, ``results.csv``, one curve per
metric (``curves.png`` for the headline one) and a table on standard output."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from metarl.plots import plot_curves
from metarl.stats import Metric


def summarize(title: str, metrics: Sequence[Metric], values: Mapping[str, Mapping[str, Tensor]],
              iterations: Mapping[str, int | None], *, tasks: int, seed: int,
              published: Mapping[str, Sequence[float]] | None = None, **extra: Any
              ) -> dict[str, Any]:
    """The JSON-able summary of an evaluation: ``values[method][metric]`` are the per-task
    values ``[N, steps + 1, ...]``, reduced by each metric's ``aggregate``; ``published``
    gives reference curves of the headline (first) metric."""
    steps = next(iter(next(iter(values.values())).values())).shape[1] - 1
    methods: dict[str, Any] = {}
    for label, by_metric in values.items():
        methods[label] = {"iterations": iterations.get(label)}
        for m in metrics:
            mean, ci = m.aggregate(by_metric[m.name].cpu())
            methods[label][m.name] = {"mean": mean.tolist(), "ci95": ci.tolist()}
    return {"task": title, "metric": metrics[0].name, "metrics": [m.name for m in metrics],
            "tasks": tasks, "seed": seed, "steps": list(range(steps + 1)), **extra,
            "methods": methods, "published": dict(published or {})}


def write(out_dir: str | Path, summary: Mapping[str, Any], metrics: Sequence[Metric]) -> Path:
    """``results.json``, ``results.csv`` (a row per method and step) and the curves."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "steps", *(f"{m.name}_{s}" for m in metrics for s in ("mean",
                                                                                  "ci95"))])
        for label, r in summary["methods"].items():
            for s in summary["steps"]:
                w.writerow([label, s, *(f"{r[m.name][k][s]:.6g}" for m in metrics
                                        for k in ("mean", "ci95"))])
    for i, m in enumerate(metrics):
        plot_curves(out / ("curves.png" if i == 0 else f"curves-{m.name}.png"), summary["steps"],
                    {k: (r[m.name]["mean"], r[m.name]["ci95"]) for k, r in
                     summary["methods"].items()},
                    ylabel=m.title, title=f"{summary['task']}: {summary['tasks']} held-out tasks",
                    reference=summary["published"] if i == 0 else None)
    return out


def print_table(summary: Mapping[str, Any], metrics: Sequence[Metric]) -> None:
    """Each metric's mean and interval per method after 0, 1, 2, 3, 5, 10, ... steps."""
    steps = summary["steps"]
    shown = [s for s in steps if s <= 3 or s in (5, 10) or s == steps[-1]]
    for i, m in enumerate(metrics):
        published = summary["published"] if i == 0 else {}
        width = max(10, *(len(k) + 1 for k in [*summary["methods"], *published]))
        d, dc = m.decimals
        print(f"{m.title} on {summary['tasks']} held-out {summary['task']} tasks "
              "(mean ± 95% CI over tasks):")
        print(f"{'method':{width}s}" + "".join(f"{f'{s} step' + 's' * (s != 1):>18s}"
                                               for s in shown))
        for label, r in summary["methods"].items():
            mean, ci = r[m.name]["mean"], r[m.name]["ci95"]
            print(f"{label:{width}s}" + "".join(f"{mean[s]:>10.{d}f} ± {ci[s]:<5.{dc}f}"
                                                for s in shown))
        for label, values in published.items():
            print(f"{label:{width}s}" + "".join(f"{values[s]:>10.{d}f}{'':8s}" for s in shown
                                                if s < len(values)))
