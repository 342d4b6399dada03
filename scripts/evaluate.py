"""``metarl-evaluate RUN [RUN ...]``: few-shot adaptation of trained runs on held-out tasks.

Every run is fine-tuned on the same seeded held-out tasks with 0..S gradient steps on each
task's support set; the query metric is reported as mean and 95% interval per step, written
to ``results.json``, ``results.csv`` and ``curves.png`` (plus ``fits.png`` for sinusoids).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import torch
import tyro

from envs.sinusoid import Sinusoid
from metarl.checkpoint import load_checkpoint
from metarl.cli import parse, user_errors
from metarl.config import from_dict, torch_device
from metarl.errors import ConfigError
from metarl.evaluation import finetune_curve, predictions_after
from metarl.learner import build
from metarl.plots import plot_curves, plot_fits
from metarl.stats import mean_ci95
from scripts.evaluate_rl import evaluate_rl
from scripts.presets import CONFIG_TYPES, Supervised


@dataclass(frozen=True)
class Evaluate:
    runs: Annotated[tuple[str, ...], tyro.conf.Positional]
    """Run directories (or checkpoint files) to evaluate side by side."""
    tasks: int | None = None
    """Held-out tasks (default: 600 for Omniglot as Finn et al., 40 for RL, else 100)."""
    steps: int | None = None
    """Evaluate after 0, 1, ..., steps gradient steps (default: 10 supervised, 3 RL)."""
    episodes: int | None = None
    """RL: episodes per task and step (default: the run's)."""
    seed: int = 12345
    """Seed of the held-out tasks (distinct from training seeds)."""
    out: str | None = None
    """Output folder (default: results/<task>)."""
    device: str = "cpu"
    later_lr_scale: float = 0.5
    """RL: steps after the first use this times the inner lr (Finn et al. 2017 halve it)."""

    def __post_init__(self) -> None:
        if not self.runs:
            raise ConfigError("name at least one run directory to evaluate")
        if (self.tasks is not None and self.tasks < 1) or (self.steps or 0) < 0:
            raise ConfigError(f"need tasks >= 1 and steps >= 0, got {self.tasks} and {self.steps}")
        if not self.later_lr_scale >= 0:
            raise ConfigError(f"need later-lr-scale >= 0, got {self.later_lr_scale}")
        torch_device(self.device)


def evaluate(args: Evaluate) -> dict:
    if load_checkpoint(args.runs[0])["config"].get("__class__") == "MetaRL":
        return evaluate_rl(args.runs, tasks=args.tasks or 40,
                           steps=3 if args.steps is None else args.steps, seed=args.seed,
                           episodes=args.episodes, out=args.out, device=args.device,
                           later_lr_scale=args.later_lr_scale)
    steps = 10 if args.steps is None else args.steps
    runs = {}
    for path in args.runs:
        checkpoint = load_checkpoint(path, map_location=args.device)
        config = from_dict(checkpoint["config"], CONFIG_TYPES)
        if not isinstance(config, Supervised):
            raise ConfigError(f"{path} is not a supervised run")
        label = config.meta.method
        while label in runs:
            label += "'"
        runs[label] = (config, checkpoint["state"])
    tasks_cfg = {c.task for c, _ in runs.values()}
    if len(tasks_cfg) > 1:
        raise ConfigError(f"the runs were trained on different task settings {tasks_cfg}; "
                          "evaluate them separately")
    family = next(iter(tasks_cfg)).build()
    num_tasks = args.tasks or getattr(family, "eval_tasks", 100)
    tasks = family.sample(num_tasks, torch.Generator().manual_seed(args.seed), split="test")
    tasks = tasks.to(args.device)

    results, learners = {}, {}
    for label, (config, state) in runs.items():
        model, learner = build(family, replace(config.meta, device=args.device), state)
        learners[label] = (model, learner)
        values = finetune_curve(family, model, learner.params, learner.inner_lr, tasks, steps,
                                chunk=getattr(family, "eval_chunk", 100))
        mean, ci = mean_ci95(values)
        results[label] = {"mean": mean.tolist(), "ci95": ci.tolist(),
                          "iterations": learner.iteration}

    out = Path(args.out or f"results/{family.tag}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"task": family.tag, "metric": family.metric_name, "tasks": num_tasks,
               "seed": args.seed, "steps": list(range(steps + 1)), "methods": results}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "steps", f"{family.metric_name}_mean", f"{family.metric_name}_ci95"])
        for label, r in results.items():
            for s, (m, c) in enumerate(zip(r["mean"], r["ci95"])):
                w.writerow([label, s, f"{m:.6g}", f"{c:.6g}"])
    plot_curves(out / "curves.png", summary["steps"],
                {k: (r["mean"], r["ci95"]) for k, r in results.items()},
                ylabel=f"query {family.metric_name}",
                title=f"{family.tag}: {num_tasks} held-out tasks")
    if isinstance(family, Sinusoid):
        _sinusoid_figure(out / "fits.png", family, tasks, learners)

    print(f"{family.metric_name} on {num_tasks} held-out {family.tag} tasks (mean ± 95% CI):")
    shown = [s for s in (0, 1, 2, 3, 5, 10) if s <= steps]
    print(f"{'method':10s}" + "".join(f"{f'{s} steps':>18s}" for s in shown))
    for label, r in results.items():
        print(f"{label:10s}" + "".join(f"{r['mean'][s]:>10.4f} ± {r['ci95'][s]:<5.3f}"
                                       for s in shown))
    print(f"wrote {out}/results.json, results.csv, curves.png")
    return summary


def _sinusoid_figure(path: Path, family: Sinusoid, tasks, learners) -> None:
    x = torch.linspace(*family.x_range, 200, device=tasks.support_x.device).unsqueeze(-1)
    amp, phase = tasks.info[0]
    support = (tasks.support_x[0], tasks.support_y[0])
    predictions = {
        label: {s: y.squeeze(-1).cpu() for s, y in predictions_after(
            model, family.loss, learner.params, learner.inner_lr, support, x, (0, 1, 10)).items()}
        for label, (model, learner) in learners.items()}
    plot_fits(path, x.squeeze(-1).cpu(), family.function(x, amp, phase).squeeze(-1).cpu(),
              (support[0].squeeze(-1).cpu(), support[1].squeeze(-1).cpu()), predictions,
              f"{family.tag}: amplitude {amp:.2f}, phase {phase:.2f}")


def main(argv: list[str] | None = None) -> None:
    args = parse(Evaluate, argv, "metarl-evaluate", __doc__.splitlines()[0])
    with user_errors("metarl-evaluate"):
        evaluate(args)


if __name__ == "__main__":
    main()
