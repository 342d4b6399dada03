"""``metarl-oracle PRESET``: the oracle baseline (Finn et al. 2017, Fig. 5) on held-out tasks.

Trains a stable-baselines3 policy (PPO, or sb3-contrib's TRPO with ``--algo trpo``) on each of
the held-out tasks that ``metarl-evaluate --seed S --tasks N`` adapts to, with the task known,
for ``--env-steps`` env-steps each, and writes their returns to ``OUT/returns.json`` (and each
policy to ``OUT/task<i>.zip``). ``metarl-evaluate RUN ... --oracle OUT`` draws them as the
oracle line. Examples::

    metarl-oracle nav2d --env-steps 50000 --batch-size 256 --learning-rate 1e-3
    metarl-oracle cheetah-dir-paper --tasks 4 --env-steps 500000 --resume
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro
from tqdm import tqdm

from metarl.algos.oracle import Oracle, TaskResult, held_out_tasks, run, start
from metarl.cli import parse, user_errors
from metarl.config import check, check_nonnegative_int
from metarl.errors import ConfigError
from metarl.memory import tune_allocator
from metarl.scripts.experiments import MetaRL
from metarl.scripts.presets import PRESETS

PROG = "metarl-oracle"
RL_PRESETS = tuple(name for name, (_, p) in PRESETS.items() if isinstance(p, MetaRL))


@dataclass(frozen=True)
class OracleRun:
    preset: Annotated[Literal[RL_PRESETS], tyro.conf.Positional]  # type: ignore[valid-type]
    """A meta-RL preset: its env id, horizon and policy architecture."""
    oracle: Annotated[Oracle, tyro.conf.OmitArgPrefixes] = field(default_factory=Oracle)
    tasks: int = 40
    """Held-out tasks (metarl-evaluate's RL default is 40)."""
    seed: int = 12345
    """Seed of the held-out tasks: metarl-evaluate's --seed (default alike)."""
    out: str | None = None
    """Output folder (default: runs/<task>-oracle-<algo>, e.g. runs/Navigation2D-oracle-ppo)."""
    resume: bool = False
    """Continue the oracle run in --out: the tasks it finished are kept."""
    save_models: bool = True
    """Save each task's SB3 model as OUT/task<i>.zip."""
    nthread: int = 1
    """MuJoCo's thread pool per env (0: all cores); one suits the small rollouts here."""

    def __post_init__(self) -> None:
        check(isinstance(self.tasks, int) and self.tasks >= 2, f"--tasks must be an integer "
              f">= 2 (an interval needs two tasks), got {self.tasks!r}")
        check_nonnegative_int("--seed", self.seed)
        check_nonnegative_int("--nthread", self.nthread)
        check(self.out is None or self.out.strip() != "", "--out must name a folder, got ''")
        if self.out is not None and Path(self.out).is_file():
            raise ConfigError(f"--out {self.out} is a file; name a folder for the oracle run")

    @property
    def out_dir(self) -> Path:
        rl = PRESETS[self.preset][1].rl
        tag = rl.env_id.split("/")[-1].removesuffix("-v0")
        return Path(self.out or f"runs/{tag}-oracle-{self.oracle.algo}")


def oracle(args: OracleRun) -> dict:
    rl = PRESETS[args.preset][1].rl
    tasks = held_out_tasks(rl, args.tasks, args.seed)
    out = args.out_dir
    print(f"{args.oracle.label()}: {args.tasks} held-out {rl.env_id} tasks (seed {args.seed}), "
          f"{args.oracle.iterations} iterations of {args.oracle.n_envs} x "
          f"{args.oracle.n_steps} env-steps each -> {out}")
    state = start(args.oracle, rl, args.preset, tasks, args.seed, out, args.resume)
    t0 = time.perf_counter()
    with tqdm(total=args.tasks, initial=len(state["results"]), desc="oracle", unit="task",
              dynamic_ncols=True) as bar:

        def progress(i: int, result: TaskResult) -> None:
            bar.update(1)
            bar.set_postfix(task=i, ret=f"{result.returns:.2f}", s=f"{result.seconds:.0f}")

        summary = run(args.oracle, rl, state, tasks, out, args.save_models, args.nthread,
                      progress)
    results = summary["results"]
    returns = [r["returns"] for r in results]
    seconds = [r["seconds"] for r in results]
    print(f"mean return {sum(returns) / len(returns):.2f} (sampled actions), "
          f"{sum(r['returns_deterministic'] for r in results) / len(results):.2f} (mean "
          f"action) over {len(results)} tasks; {sum(seconds) / len(seconds):.1f} s per task "
          f"({time.perf_counter() - t0:.0f} s this call)")
    print(f"wrote {out}/returns.json; plot it with metarl-evaluate RUN ... --oracle {out}")
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    tune_allocator()
    args = parse(OracleRun, argv, PROG, __doc__.splitlines()[0])
    with user_errors(PROG):
        oracle(args)


if __name__ == "__main__":
    main()
