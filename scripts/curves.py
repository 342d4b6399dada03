"""``metarl-curves RUN [RUN ...]``: training curves of runs, drawn from their TensorBoard scalars.

One PNG with a line per run directory, e.g. the return after adaptation of two HalfCheetahDir
runs side by side (Finn et al. 2017 plot it against meta-iterations)::

    metarl-curves runs/HalfCheetahDirH200-maml-trpo runs/HalfCheetahDirH200-maml-trpo-tasksub0.2 \\
        --labels exact "20% of the tasks" --smooth 10 --out cheetah-dir.png

A resumed run reads as TensorBoard shows it: each session's values replace the earlier
sessions' from its first logged iteration on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from metarl.cli import parse, user_errors
from metarl.config import check
from metarl.logger import read_scalars
from metarl.plots import plot_training

PROG = "metarl-curves"


@dataclass(frozen=True)
class Curves:
    runs: Annotated[tuple[str, ...], tyro.conf.Positional]
    """Run directories that metarl-train wrote (their events.out.tfevents.* files)."""
    tag: str = "returns/after_adaptation"
    """The scalar to draw (meta-RL: returns/before_adaptation, returns/after_adaptation;
    supervised: loss/query, ...)."""
    labels: tuple[str, ...] | None = None
    """One legend label per run (default: the run directories' names)."""
    smooth: int = 1
    """Also draw each curve's trailing moving average over this many logged points."""
    title: str | None = None
    """Figure title (default: the tag)."""
    out: str = "curves.png"
    """The PNG to write."""


def curves(args: Curves) -> Path:
    check(bool(args.runs), "give at least one run directory: metarl-curves RUN [RUN ...]")
    check(args.labels is None or len(args.labels) == len(args.runs),
          f"--labels gives {len(args.labels or ())} labels for {len(args.runs)} runs; "
          "give one per run")
    check(args.smooth >= 1, f"--smooth must be at least 1 (got {args.smooth})")
    for run in args.runs:
        check(Path(run).is_dir(), f"run directory {run} does not exist; give a folder that "
              "metarl-train wrote")
    labels = args.labels or tuple(Path(run).name for run in args.runs)
    data = {label: read_scalars(run, args.tag) for label, run in zip(labels, args.runs)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_training(out, data, ylabel=args.tag, title=args.title or args.tag, smooth=args.smooth)
    for label, (steps, values) in data.items():
        print(f"{label}: iterations {steps[0]}-{steps[-1]} ({len(steps)} points), "
              f"last {values[-1]:.4g}")
    print(f"wrote {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse(Curves, argv, PROG, __doc__.splitlines()[0])
    with user_errors(PROG):
        curves(args)


if __name__ == "__main__":
    main()
