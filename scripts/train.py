"""``metarl-train PRESET [ALGORITHM] [--option value ...]``: meta-train and checkpoint a run.

Examples::

    metarl-train sinusoid                      # MAML, K=10, default length
    metarl-train sinusoid pretrain             # the pretraining baseline
    metarl-train nav2d maml-trpo --cg-subsample 0.2
    metarl-train sinusoid --out runs/a --resume
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from metarl import distributed
from metarl.algos import of_kind
from metarl.cli import parse, subcommands, user_errors
from metarl.config import from_dict, to_dict, torch_device
from metarl.errors import CheckpointError, ConfigError
from metarl.logger import Run
from metarl.memory import tune_allocator
from metarl.scripts.experiments import Experiment, config_types, load_run
from metarl.scripts.presets import PRESETS, task_types

PROG = "metarl-train"
# Options that may differ between a run and its resumption.
# The folder is where the run is, not part of what it is.
RESUMABLE = {"iterations", "log_every", "checkpoint_every", "resume", "out", "name", "device",
             "torch_threads", "outer_torch_threads", "video_every",
             "sampler", "ray_address", "ray_actors",  # where episodes are sampled, not which
             # how the exact KL curvature is taken, not what it is
             "curvature", "compile_curvature"}
# Options of earlier versions, now algorithm subcommands.
RENAMED = {"--method": "the algorithm is a subcommand: metarl-train sinusoid pretrain",
           "--algo": "the algorithm is a subcommand: metarl-train nav2d maml-reinforce",
           "--pretrain": "the pretraining baseline is an algorithm: metarl-train nav2d pretrain"}


def _check_resumable(saved: dict, current: dict, path: str = "") -> None:
    for key in sorted(set(saved) | set(current)):
        if key in RESUMABLE:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            _check_resumable(a, b, f"{path}{key}.")
        elif a != b and not (isinstance(a, (list, tuple)) and tuple(a) == tuple(b or ())):
            raise CheckpointError(f"cannot resume: {path}{key} was {a!r} in the saved run, now "
                                  f"{b!r}; use the same options or a new --out")


def train(config: Experiment, progress: bool = True) -> Path:
    """Train (or resume) ``config``'s run; under ``torchrun`` every process calls this, they
    split each meta-batch, and rank 0 alone writes the run folder."""
    if distributed.launched() and not getattr(config.algo, "distributed", False):
        raise ConfigError(f"{config.algo.name} trains in one process: run it without torchrun "
                          "(torchrun splits the meta-batches of maml, fomaml, metasgd and reptile; "
                          "meta-RL samples on several cores with --sampler ray)")
    created = distributed.init(config.settings.device)
    try:
        return _train(config, progress)
    finally:
        distributed.finish(created)


def _train(config: Experiment, progress: bool) -> Path:
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; name a folder for the run")
    resume = None
    if config.resume:
        checkpoint = load_run(run_dir)
        from_dict(checkpoint["config"], config_types(task_types()))  # a known kind of config
        _check_resumable(checkpoint["config"], to_dict(config))
        resume = checkpoint["state"]
        done, wanted = resume["iteration"], config.settings.iterations
        if wanted < done:
            raise ConfigError(f"cannot resume: the run in {run_dir} is already at iteration "
                              f"{done}; pass --iterations {done} or more")
    elif (run_dir / "checkpoint.pt").exists():
        raise CheckpointError(f"{run_dir} already holds a run; pass --resume to continue it or "
                              "--out DIR to start another")
    # Everything that can fail on bad input (data, env id, device) fails before the run folder
    # exists.
    family = config.prepare()
    settings = config.settings
    torch_device(settings.device)
    start = resume["iteration"] if resume else 0
    run = Run(run_dir, to_dict(config), total=settings.iterations, start=start,
              log_every=settings.log_every, checkpoint_every=settings.checkpoint_every,
              progress=progress, video_every=getattr(settings, "video_every", 0),
              writes=distributed.is_writer())
    try:
        config.train(family, run, resume)
    finally:
        run.close()
    distributed.barrier()  # the checkpoint is written when any process returns
    return run.checkpoint_path


def _options(cls: type, prefix: str = "--") -> list[str]:
    """The command-line options of a config dataclass (nested configs without prefix)."""
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not
                                    dataclasses.MISSING else None):
            out += _options(f.default_factory, prefix)
        else:
            out.append(prefix + f.name.replace("_", "-"))
    return out


def _description() -> str:
    lines = ["metarl-train PRESET [ALGORITHM] [--option value ...]: meta-train and checkpoint a "
             "run. The algorithm (default: the preset's) and its options follow the "
             "preset; metarl-train PRESET ALGORITHM --help lists every option.", ""]
    for kind, label, presets in (("supervised", "supervised", "sinusoid*, omniglot-*, ntrex*"),
                                 ("rl", "meta-RL", "nav2d*, cheetah-*, ant-*")):
        lines.append(f"Algorithms of the {label} presets ({presets}) and their own options:")
        for cls in of_kind(kind):
            summary = " ".join(cls.__doc__.split("\n\n")[0].split())  # its first paragraph
            lines.append(f"    {cls.name:15s} {summary}")
            lines.append(f"    {'':15s} {' '.join(_options(cls))}")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    tune_allocator()
    args = list(sys.argv[1:] if argv is None else argv)
    with user_errors(PROG):
        for flag, replacement in RENAMED.items():
            if flag in args:
                raise ConfigError(f"{flag} is gone: {replacement}")
    presets = subcommands((name, type(default), doc, default)
                          for name, (doc, default) in PRESETS.items())
    config = parse(presets, args, PROG, _description())
    with user_errors(PROG):
        path = train(config)
        if distributed.is_writer():
            print(f"checkpoint: {path}")


if __name__ == "__main__":
    main()
