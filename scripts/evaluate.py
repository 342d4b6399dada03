"""``metarl-evaluate RUN [RUN ...]``: few-shot adaptation of trained runs on held-out tasks.

Every run is adapted on the same seeded held-out tasks with 0..S inner steps: supervised runs
with the update rule they meta-learned on each task's support set, meta-RL runs with
policy-gradient steps on trajectories sampled before each step (the first at the run's inner lr,
later ones at half of it, as Finn et al. 2017 evaluate). Each metric is reported as mean and 95%
interval per step in ``results.json``, ``results.csv`` and ``curves.png`` (plus a figure of the
task family's own where it has one, e.g. ``fits.png`` for sinusoids); meta-RL runs are shown
beside a randomly initialised policy and the published curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import torch
import tyro
from tqdm import tqdm

from metarl.algos.meta_rl import (
    RETURN,
    Problem,
    episode_frames,
    load_state,
    rollouts_after_steps,
    step_title,
)
from metarl.algos.oracle import oracle_returns
from metarl.algos.supervised import at_test, build
from metarl.cli import parse, user_errors
from metarl.config import (
    check,
    check_nonnegative_int,
    check_positive_ints,
    from_dict,
    torch_device,
)
from metarl.envs.replay import make_env
from metarl.errors import CheckpointError, ConfigError
from metarl.evaluation import chunks, finetune_curve, predictions_after
from metarl.logger import non_finite
from metarl.memory import tune_allocator
from metarl.params import forward_fn, params_of
from metarl.plots import plot_trajectories
from metarl.report import print_table, summarize, write
from metarl.scripts.experiments import (
    Experiment,
    MetaRL,
    Supervised,
    config_types,
    load_run,
    local_sampling,
)
from metarl.scripts.presets import task_types
from metarl.tasks import loss_fn
from metarl.translation import TranslationTest, print_report, write_report
from metarl.video import write_video

# Finn et al. (2017), Figure 5 / Table: mean return of MAML after 0, 1, 2, 3 gradient steps.
PUBLISHED = {
    "Navigation2D": [-40.41, -11.68, -3.33, -3.23],
    "HalfCheetahDir": [-50.69, 293.19, 313.48, 315.65],
}


@dataclass(frozen=True)
class Evaluate:
    runs: Annotated[tuple[str, ...], tyro.conf.Positional]
    """Run directories (or checkpoint files) to evaluate side by side."""
    tasks: int | None = None
    """Held-out tasks, at least 2 (default: 600 for Omniglot as Finn et al., 40 for RL, else
    100)."""
    steps: int | None = None
    """Evaluate after 0, 1, ..., steps gradient steps (default: 10 supervised, 3 RL)."""
    episodes: int | None = None
    """RL: episodes per task and step (default: the run's)."""
    seed: int = 12345
    """Seed of the held-out tasks (distinct from training seeds)."""
    out: str | None = None
    """Output folder (default: results/<task>)."""
    device: str = "cpu"
    later_lr_scale: float | None = None
    """RL: steps after the first use this times the inner lr (default 0.5: Finn et al. 2017
    halve it)."""
    inner_lr: float | None = None
    """RL: the first step's size for every run (default: each run's own inner lr), to give a
    baseline the step size that suits it."""
    video: str | None = None
    """RL: write one video (MP4) per held-out task and number of steps into this folder."""
    video_tasks: int = 4
    """RL, with --video: how many of the held-out tasks get videos (the first ones)."""
    oracle: str | None = None
    """RL: a metarl-oracle run (its folder or returns.json) on these held-out tasks, drawn as
    the oracle line (Finn et al. 2017, Fig. 5)."""
    translation: TranslationTest = field(default_factory=TranslationTest)
    """Translation runs (ntrex): the meta-test (fine-tuning per language and budget, BLEU and
    chrF++); --steps or --tasks ask for the few-shot curve of token loss instead."""

    def __post_init__(self) -> None:
        check(len(self.runs) > 0, "name at least one run directory to evaluate")
        check(self.tasks is None or isinstance(self.tasks, int) and self.tasks >= 2,
              f"--tasks must be an integer >= 2 (an interval needs two tasks), got {self.tasks!r}")
        if self.steps is not None:
            check_nonnegative_int("--steps", self.steps)
        if self.episodes is not None:
            check_positive_ints(self, ("episodes",))
        check_nonnegative_int("--seed", self.seed)
        check(self.later_lr_scale is None or math.isfinite(self.later_lr_scale)
              and self.later_lr_scale >= 0,
              f"--later-lr-scale must be a finite number >= 0, got {self.later_lr_scale!r}")
        check(self.inner_lr is None or math.isfinite(self.inner_lr) and self.inner_lr > 0,
              f"--inner-lr must be a finite number > 0, got {self.inner_lr!r}")
        check(self.out is None or self.out.strip() != "", "--out must name a folder, got ''")
        if self.out is not None and Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a file; name a folder for the results")
        check(isinstance(self.video_tasks, int) and self.video_tasks >= 1,
              f"--video-tasks must be an integer >= 1, got {self.video_tasks!r}")
        check(self.video is None or self.video.strip() != "", "--video must name a folder, "
              "got ''")
        if self.video is not None and Path(self.video).exists() and not Path(
                self.video).is_dir():
            raise ConfigError(f"--video {self.video} is a file; name a folder for the videos")
        torch_device(self.device)


def load_runs(args: Evaluate) -> dict[str, tuple[Any, dict]]:
    """The runs' configs and states, labelled by algorithm; all of one kind and one task."""
    runs: dict[str, tuple[Any, dict]] = {}
    types = config_types(task_types())
    for path in args.runs:
        checkpoint = load_run(path, args.device)
        config = from_dict(checkpoint["config"], types)
        if isinstance(config, MetaRL):  # evaluation samples here, wherever training did
            config = replace(config, rl=local_sampling(config.rl))
        bad = non_finite(checkpoint["state"]["params"])
        if bad is not None:
            raise CheckpointError(f"{path} holds NaN or infinite parameters ({bad}); evaluate "
                                  "an earlier checkpoint, or train again with lower learning "
                                  "rates")
        label = getattr(config.algo, "label", config.algo.name)
        while label in runs:
            label += "'"
        runs[label] = (config, checkpoint["state"])
    configs = [c for c, _ in runs.values()]
    if len({type(c) for c in configs}) > 1:
        raise ConfigError("the runs mix supervised and meta-RL experiments; evaluate them "
                          "separately")
    tasks = {c.task if isinstance(c, Supervised) else c.rl.env_id for c in configs}
    if len(tasks) > 1:
        raise ConfigError(f"the runs were trained on different tasks {sorted(map(str, tasks))}; "
                          "evaluate them separately")
    return runs


def evaluate_supervised(runs: Mapping[str, tuple[Supervised, dict]], args: Evaluate) -> dict:
    for option, value in (("--episodes", args.episodes), ("--later-lr-scale",
                                                           args.later_lr_scale),
                          ("--inner-lr", args.inner_lr),
                          ("--video", args.video), ("--oracle", args.oracle)):
        check(value is None, f"{option} applies to meta-RL runs; these runs are supervised")
    steps = 10 if args.steps is None else args.steps
    family = next(iter(runs.values()))[0].prepare()
    if hasattr(family, "meta_test") and args.steps is None and args.tasks is None:
        return evaluate_translation(family, runs, args)
    num_tasks = args.tasks or getattr(family, "eval_tasks", 100)
    tasks = family.sample(num_tasks, torch.Generator().manual_seed(args.seed), split="test")
    tasks = tasks.to(args.device)

    values, iterations, predictors, tests = {}, {}, {}, {}
    for label, (config, state) in runs.items():
        model, learner = build(family, config.algo, replace(config.meta, device=args.device),
                               state)
        test = at_test(config.algo, family, model, learner)
        chunk = _chunk(getattr(family, "eval_chunk", 100), test.rule, test.params)
        tests[label] = model, test, chunk
        iterations[label] = learner.iteration
        predictors[label] = _predictor(family, model, learner)
    with tqdm(total=sum(len(chunks(tasks, c)) for _, _, c in tests.values()),
              desc="fine-tuning", unit="chunk", dynamic_ncols=True) as bar:
        for label, (model, test, chunk) in tests.items():
            values[label] = finetune_curve(family, model, test.params, test.rule, tasks, steps,
                                           chunk, progress=bar, predict=test.predict)

    summary = summarize(family.tag, family.metrics, values, iterations, tasks=num_tasks,
                        seed=args.seed)
    out = write(args.out or f"results/{family.tag}", summary, family.metrics)
    figures = ["results.json", "results.csv", "curves.png"]
    if hasattr(family, "figure"):
        figures.append(family.figure(out / "fits.png", tasks, predictors).name)
    print_table(summary, family.metrics)
    print(f"wrote {out}/{', '.join(figures)}")
    return summary


def evaluate_translation(family: Any, runs: Mapping[str, tuple[Supervised, dict]],
                         args: Evaluate) -> dict:
    """Gu et al.'s meta-test: every run fine-tuned on each target language and budget, its test
    translations scored (``family.meta_test``); ``results.json`` keeps every seed's scores."""
    starts, iterations = {}, {}
    for label, (config, state) in runs.items():
        model, learner = build(family, config.algo, replace(config.meta, device=args.device),
                               state)
        starts[label] = model, at_test(config.algo, family, model, learner).params
        iterations[label] = learner.iteration
    summary = {**family.meta_test(starts, args.translation, args.device),
               "iterations": iterations}
    out = write_report(args.out or f"results/{family.tag}", summary)
    print_report(summary)
    print(f"wrote {out}/results.json, results.csv")
    return summary


STATE_BUDGET = 2**31
"""Bytes that a chunk's update-rule states may take (a learned optimizer's state is many times
the size of the parameters, per task)."""


def _chunk(chunk: int, rule: Any, params: Any) -> int:
    """Tasks fine-tuned at once: ``chunk``, fewer where the rule's state per task (and its
    intermediates, a few times as large) would not fit :data:`STATE_BUDGET`."""
    per_task = 8 * _bytes(rule.init(params))
    return max(1, min(chunk, STATE_BUDGET // per_task)) if per_task else chunk


def _bytes(tree: Any) -> int:
    if torch.is_tensor(tree):
        return tree.numel() * tree.element_size()
    items = tree.values() if isinstance(tree, Mapping) else tree if isinstance(
        tree, (list, tuple)) else ()
    return sum(_bytes(t) for t in items)


def _predictor(family: Any, model: torch.nn.Module, learner: Any) -> Any:
    loss, forward = loss_fn(family, model), forward_fn(model)
    return lambda support, x, steps: predictions_after(loss, forward, learner.params,
                                                       learner.rule, support, x, steps)


def evaluate_rl(runs: Mapping[str, tuple[MetaRL, dict | None]], args: Evaluate) -> dict:
    steps = 3 if args.steps is None else args.steps
    num_tasks = args.tasks or 40
    later_lr_scale = 0.5 if args.later_lr_scale is None else args.later_lr_scale
    first = next(iter(runs.values()))[0].rl
    env = first.env_id.split("/")[-1].removesuffix("-v0")
    out = Path(args.out or f"results/{env}")
    runs = {**runs, "random init": (MetaRL(rl=first), None)}
    # Finn et al. 2017, Fig. 5: a policy trained on each task; checked before adapting
    oracle = None if args.oracle is None else oracle_returns(args.oracle, first, num_tasks,
                                                             args.seed)
    values, iterations, paths = {}, {}, {}
    for label, (config, state) in tqdm(runs.items(), desc="adapting", unit="run",
                                       dynamic_ncols=True):
        rl = config.rl if args.inner_lr is None else replace(config.rl, inner_lr=args.inner_lr)
        problem = Problem.build(rl, num_tasks, args.episodes,
                                seed=config.rl.seed + 7919 * (state is None), device=args.device)
        theta = params_of(problem.policy)
        iterations[label] = load_state(theta, state)
        held_out = problem.sample_tasks(num_tasks, args.seed)
        rollouts = rollouts_after_steps(problem, theta, held_out,
                                        problem.rules(steps, later_lr_scale), args.seed)
        values[label] = {RETURN.name: torch.stack([r.returns for r in rollouts], 1)}
        # The first task's first episode after each number of steps (2D families' figure).
        paths[label] = {s: r.episodes.observations[: int(r.episodes.mask[:, 0, 0].sum()), 0, 0]
                        for s, r in enumerate(rollouts)}
        if args.video is not None:
            write_videos(Path(args.video) / slug(label), problem, rollouts, args.video_tasks)
    if oracle is not None:  # it takes no steps: the same return at every step
        values[oracle[0]] = {RETURN.name: oracle[1][:, None].expand(-1, steps + 1)}
        iterations[oracle[0]] = None
    published = {f"Finn et al. 2017 (MAML, {k})": v for k, v in PUBLISHED.items()
                 if env.startswith(k)}
    summary = summarize(first.env_id, [RETURN], values, iterations, tasks=num_tasks,
                        seed=args.seed, published=published, later_lr_scale=later_lr_scale,
                        inner_lr=args.inner_lr)
    out = write(out, summary, [RETURN])
    figures = ["results.json", "results.csv", "curves.png"]
    if first.env_id.startswith("metarl/Navigation2D"):  # Finn et al. 2017, Figure 4 bottom
        goal = held_out[0].goal
        plot_trajectories(out / "trajectories.png", goal,
                          {k: {s: xy.tolist() for s, xy in v.items() if s <= 2}
                           for k, v in paths.items()},
                          f"2D navigation, held-out task 0 (goal {goal[0]:+.2f}, {goal[1]:+.2f})")
        figures.append("trajectories.png")
    print_table(summary, [RETURN])
    print(f"wrote {out}/{', '.join(figures)}"
          + (f"; videos in {args.video}" if args.video is not None else ""))
    return summary


def write_videos(folder: Path, problem: Problem, rollouts: list, tasks: int) -> None:
    """``folder/task<i>-step<s>.mp4``: episode 0 of each of the first ``tasks`` held-out tasks
    before adaptation (step 0) and after each step, replayed and rendered."""
    env = make_env(problem.cfg.env_id)
    n = min(tasks, rollouts[0].episodes.rewards.shape[1])
    try:
        for i in tqdm(range(n), desc=f"videos of {folder.name}", unit="task",
                      dynamic_ncols=True):
            for s, r in enumerate(rollouts):
                write_video(folder / f"task{i:02d}-step{s}.mp4",
                            episode_frames(env, r, i, step_title(s)), env.metadata["render_fps"])
    finally:
        env.close()


def slug(label: str) -> str:
    """A run's label as a folder name."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in label).strip("-")


EVALUATORS = {Supervised: evaluate_supervised, MetaRL: evaluate_rl}


def evaluate(args: Evaluate) -> dict:
    runs = load_runs(args)
    kind: type[Experiment] = type(next(iter(runs.values()))[0])
    return EVALUATORS[kind](runs, args)


def main(argv: list[str] | None = None) -> None:
    tune_allocator()
    args = parse(Evaluate, argv, "metarl-evaluate", __doc__.splitlines()[0])
    with user_errors("metarl-evaluate"):
        evaluate(args)


if __name__ == "__main__":
    main()
