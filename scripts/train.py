"""``metarl-train PRESET [--key value ...]``: meta-train and checkpoint a run.

Examples::

    metarl-train sinusoid                      # MAML, K=10, default length
    metarl-train sinusoid --method pretrain    # the pretraining baseline
    metarl-train sinusoid --out runs/a --resume
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from algos import maml, maml_reinforce, maml_trpo, pretrain, reptile
from envs import ENV_IDS
from metarl.checkpoint import load_checkpoint
from metarl.cli import parse_preset, user_errors
from metarl.config import RLConfig, from_dict, to_dict, torch_device
from metarl.errors import CheckpointError, ConfigError
from metarl.logger import Run
from metarl.rl import torch_threads
from scripts.presets import CONFIG_TYPES, PRESETS, Supervised
from scripts.rl_presets import RL_PRESETS, MetaRL

ALGORITHMS: dict[str, Callable] = {
    "maml": maml.train, "fomaml": maml.train, "metasgd": maml.train,
    "reptile": reptile.train, "pretrain": pretrain.train,
}
RL_ALGORITHMS: dict[str, Callable] = {"maml-trpo": maml_trpo.train,
                                      "maml-reinforce": maml_reinforce.train}
ALL_PRESETS = {**PRESETS, **RL_PRESETS}
ALL_CONFIG_TYPES = {**CONFIG_TYPES, "MetaRL": MetaRL, "RLConfig": RLConfig}
# Options that may differ between a run and its resumption.
RESUMABLE = {"iterations", "log_every", "checkpoint_every", "resume", "device", "torch_threads",
             "outer_torch_threads"}


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


def train(config: Supervised | MetaRL, progress: bool = True) -> Path:
    run_dir = Path(config.run_dir)
    resume = None
    if config.resume:
        checkpoint = load_checkpoint(run_dir)
        from_dict(checkpoint["config"], ALL_CONFIG_TYPES)  # a readable config of a known kind
        _check_resumable(checkpoint["config"], to_dict(config))
        resume = checkpoint["state"]
    elif (run_dir / "checkpoint.pt").exists():
        raise CheckpointError(f"{run_dir} already holds a run; pass --resume to continue it or "
                              "--out DIR to start another")
    # Everything that can fail on bad input (data, env id) fails before the run folder exists.
    if isinstance(config, MetaRL):
        hyper, family = config.rl, None
        if hyper.env_id not in ENV_IDS:
            raise ConfigError(f"unknown env id {hyper.env_id!r}; choose one of "
                              f"{', '.join(ENV_IDS)}")
    else:
        hyper, family = config.meta, config.task.build()
    torch_device(hyper.device)
    start = resume["iteration"] if resume else 0
    run = Run(run_dir, to_dict(config), total=hyper.iterations, start=start,
              log_every=hyper.log_every, checkpoint_every=hyper.checkpoint_every,
              progress=progress)
    try:
        if isinstance(config, MetaRL):
            with torch_threads(config.rl.torch_threads):
                RL_ALGORITHMS[config.rl.algo](config.rl, run, resume)
        else:
            ALGORITHMS[config.meta.method](family, config.meta, run, resume)
    finally:
        run.close()
    return run.checkpoint_path


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_preset(ALL_PRESETS, argv, "metarl-train", __doc__.splitlines()[0])
    with user_errors("metarl-train"):
        path = train(config)
        print(f"checkpoint: {path}")


if __name__ == "__main__":
    main()
