"""Few-shot adaptation of meta-RL runs: mean return after 0, 1, 2, 3 policy-gradient steps.

Each run (and a randomly initialised policy of the same architecture) is adapted on the same
seeded held-out tasks as in meta-training: sample episodes, take one inner step on them, sample
again. Finn et al. (2017, Section 5.3) report that halving the step size after the first step
worked better at evaluation, so steps after the first use ``later_lr_scale`` (0.5) times the
run's inner learning rate. Called by ``metarl-evaluate`` when the runs are RL runs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metarl.checkpoint import load_checkpoint
from metarl.config import RLConfig, from_dict
from metarl.errors import ConfigError
from metarl.params import params_of
from metarl.plots import plot_curves
from metarl.rl import PolicyLosses, load_state, sample_meta_batch, setup
from metarl.stats import mean_ci95

# Finn et al. (2017), Figure 5 / Table: mean return of MAML after 0, 1, 2, 3 gradient steps.
PUBLISHED = {
    "Navigation2D": [-40.41, -11.68, -3.33, -3.23],
    "HalfCheetahDir": [-50.69, 293.19, 313.48, 315.65],
}


def load_runs(paths: Sequence[str], device: str) -> dict[str, tuple[RLConfig, dict]]:
    from scripts.rl_presets import MetaRL

    runs: dict[str, tuple[RLConfig, dict]] = {}
    for path in paths:
        checkpoint = load_checkpoint(path, map_location=device)
        config = from_dict(checkpoint["config"], {"MetaRL": MetaRL, "RLConfig": RLConfig})
        rl = config.rl
        label = "pretrain" if rl.pretrain else rl.algo
        label += ", cg-first-order" * rl.cg_first_order
        label += f", cg-subsample {rl.cg_subsample:g}" * (rl.cg_subsample < 1)
        while label in runs:
            label += "'"
        runs[label] = (config.rl, checkpoint["state"])
    envs = {c.env_id for c, _ in runs.values()}
    if len(envs) > 1:
        raise ConfigError(f"the runs were trained on different environments {sorted(envs)}; "
                          "evaluate them separately")
    return runs


def evaluate_rl(paths: Sequence[str], *, tasks: int = 40, steps: int = 3, seed: int = 12345,
                episodes: int | None = None, out: str | None = None, device: str = "cpu",
                random_policy: bool = True, later_lr_scale: float = 0.5) -> dict:
    runs = load_runs(paths, device)
    first = next(iter(runs.values()))[0]
    env = first.env_id.split("/")[-1].removesuffix("-v0")
    if random_policy:
        runs["random init"] = (first, None)
    results = {}
    for label, (cfg, state) in runs.items():
        n_eps = episodes or cfg.episodes
        problem = setup(cfg.env_id, num_tasks=tasks, episodes=n_eps, horizon=cfg.horizon,
                        hidden=cfg.hidden, nonlinearity=cfg.nonlinearity,
                        seed=cfg.seed + 7919 * (state is None), device=device)
        theta = params_of(problem.policy)
        iterations = load_state(theta, state)
        held_out = problem.env.sample_tasks(tasks, np.random.default_rng(seed))
        batch = sample_meta_batch(problem.policy, PolicyLosses(problem.policy), theta, held_out,
                                  problem.sim, episodes=n_eps, horizon=problem.horizon,
                                  inner_steps=steps, inner_lr=cfg.inner_lr, gamma=cfg.gamma,
                                  gae_lambda=cfg.gae_lambda, seed=seed, device=device,
                                  later_inner_lr=later_lr_scale * cfg.inner_lr)
        mean, ci = mean_ci95(batch.returns.T.cpu())  # over tasks
        results[label] = {"mean": mean.tolist(), "ci95": ci.tolist(), "iterations": iterations}

    out_dir = Path(out or f"results/{env}")
    out_dir.mkdir(parents=True, exist_ok=True)
    published = {f"Finn et al. 2017 (MAML, {k})": v
                 for k, v in PUBLISHED.items() if env.startswith(k)}
    summary = {"env_id": first.env_id, "metric": "mean return", "tasks": tasks, "seed": seed,
               "later_lr_scale": later_lr_scale,
               "steps": list(range(steps + 1)), "methods": results, "published": published}
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(out_dir / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "steps", "return_mean", "return_ci95"])
        for label, r in results.items():
            for s, (m, c) in enumerate(zip(r["mean"], r["ci95"])):
                w.writerow([label, s, f"{m:.6g}", f"{c:.6g}"])
    plot_curves(out_dir / "curves.png", summary["steps"],
                {k: (r["mean"], r["ci95"]) for k, r in results.items()},
                ylabel="mean return", title=f"{first.env_id}: {tasks} held-out tasks",
                reference=published)

    print(f"mean return on {tasks} held-out {first.env_id} tasks (± 95% CI over tasks):")
    width = max(len(k) for k in [*results, *published, "method"])
    heads = "".join(f"{f'{s} step' + 's' * (s != 1):>18s}" for s in range(steps + 1))
    print(f"{'method':{width}s}{heads}")
    for label, r in results.items():
        print(f"{label:{width}s}" + "".join(f"{m:>10.2f} ± {c:<5.2f}"
                                            for m, c in zip(r["mean"], r["ci95"])))
    for label, values in published.items():
        print(f"{label:{width}s}" + "".join(f"{m:>10.2f}{'':8s}" for m in values[:steps + 1]))
    print(f"wrote {out_dir}/results.json, results.csv, curves.png")
    return summary
