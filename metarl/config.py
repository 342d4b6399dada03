"""Typed, frozen configs: checks, the settings shared by the supervised and by the meta-RL
algorithms, and (de)serialisation."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from metarl.errors import ConfigError


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(name: str, value: float, most: float | None = None) -> None:
    """A finite number above 0 (and at most ``most``)."""
    check(_number(value) and value > 0 and (most is None or value <= most),
          f"{name} must be a positive number{'' if most is None else f' up to {most:g}'}, "
          f"got {value!r}")


def check_positive_ints(config: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
              f"{name} must be a positive integer, got {value!r}")


def check_nonnegative_int(name: str, value: Any) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
          f"{name} must be a non-negative integer, got {value!r}")


def check_interval(name: str, value: Any) -> None:
    """A ``(low, high)`` pair of finite numbers with ``low <= high``."""
    check(isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_number, value))
          and value[0] <= value[1],
          f"{name} must be (low, high), finite with low <= high, got {value!r}")


def torch_device(name: str) -> Any:
    """``name`` as a ``torch.device``, checked where it is used (not in the config, so a run
    trained on a GPU can still be evaluated with ``--device cpu``)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {name!r} ({error}); use cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch build sees no CUDA GPU; "
                          "use --device cpu, or install a CUDA build of torch")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} asked for, but only {torch.cuda.device_count()} "
                          "CUDA device(s) are visible")
    return device


@dataclass(frozen=True)
class MetaConfig:
    """Training settings every supervised meta-learner shares (defaults: Finn et al. 2017,
    sinusoid); each algorithm's own options are in its config in ``metarl.algos``."""

    iterations: int = 10_000
    """Outer (meta) iterations."""
    meta_batch: int = 25
    """Tasks per outer step."""
    inner_lr: float = 0.01
    """Inner-loop SGD step size (Meta-SGD: initial value of the learned rates); also the
    fine-tuning step size at test time."""
    inner_steps: int = 1
    """Inner gradient steps during meta-training."""
    seed: int = 0
    device: str = "cpu"
    """torch device for the model and adaptation, e.g. cpu or cuda."""
    log_every: int = 100
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        check_positive_ints(self, ("iterations", "meta_batch", "log_every", "checkpoint_every"))
        check_nonnegative_int("inner_steps", self.inner_steps)
        check_nonnegative_int("seed", self.seed)
        check_positive("inner_lr", self.inner_lr)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON-able data; nested configs keep their class name."""
    out: dict[str, Any] = {"__class__": type(config).__name__}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def from_dict(data: dict[str, Any], types: dict[str, type]) -> Any:
    """Inverse of :func:`to_dict`; ``types`` maps class names to the config classes allowed."""
    data = dict(data)
    name = data.pop("__class__", None)
    if name not in types:
        raise ConfigError(f"unknown config class {name!r}; known: {sorted(types)}")
    cls = types[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} for {name}; known keys: {sorted(known)}")
    kwargs = {k: from_dict(v, types) if isinstance(v, dict) and "__class__" in v else v
              for k, v in data.items()}
    for k, v in kwargs.items():  # JSON turns tuples into lists
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    return cls(**kwargs)


@dataclass(frozen=True)
class RLConfig:
    """Settings every meta-RL algorithm shares (defaults: the public PyTorch reference's 2D
    navigation); each algorithm's own options are in its config in ``metarl.algos``."""

    env_id: str = "metarl/Navigation2D-v0"
    """A registered task-family id (see metarl.envs.ENV_IDS)."""
    iterations: int = 500
    meta_batch: int = 20
    """Tasks per meta-iteration."""
    episodes: int = 20
    """Episodes per task for each inner step and for the query set."""
    horizon: int | None = None
    """Steps per episode (default: the env id's, 100 or 200)."""
    inner_lr: float = 0.1
    inner_steps: int = 1
    gamma: float = 0.99
    gae_lambda: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    seed: int = 0
    device: str = "cpu"
    """torch device of the policy, adaptation and outer step; simulation stays on the CPU."""
    torch_threads: int = 1
    """CPU threads for torch. One leaves the other core to MuJoCo's pool and avoids OpenMP
    oversubscription (measured here: 15x slower with 2 threads while another process runs)."""
    outer_torch_threads: int | None = None
    """CPU threads for the outer step only (default: every core, or ``OMP_NUM_THREADS`` when it
    is set): sampling keeps ``torch_threads`` so MuJoCo's pool has the cores, and the outer
    step, where MuJoCo is idle, uses them all (on 2 idle cores, 2 threads halve HalfCheetah's
    outer step; on cores busy with another job, 1 is faster)."""
    log_every: int = 1
    checkpoint_every: int = 10
    video_every: int = 0
    """Every this many iterations, rollout videos of two fixed held-out tasks before and after
    adaptation go to TensorBoard (its Images tab); 0: none."""
    sampler: Literal["local", "ray"] = "local"
    """Where episodes are sampled: in this process, or on Ray actors each holding a simulator
    for its shard of the meta-batch's tasks (pip install 'metarl[ray]'); same episodes."""
    ray_address: str | None = None
    """The Ray cluster of --sampler ray: HOST:PORT of its head, ray://HOST:PORT or auto
    (default: a Ray started on this machine)."""
    ray_actors: int | None = None
    """Ray actors of --sampler ray, each sampling whole tasks on a CPU (default: one per free
    CPU of the cluster, at most the meta-batch)."""

    def __post_init__(self) -> None:
        check_positive_ints(self, ("iterations", "meta_batch", "episodes", "log_every",
                                   "checkpoint_every", "torch_threads"))
        check_nonnegative_int("video_every", self.video_every)
        check(self.sampler in ("local", "ray"),
              f"sampler must be local or ray, got {self.sampler!r}")
        check(self.sampler == "ray" or (self.ray_address is None and self.ray_actors is None),
              "--ray-address and --ray-actors apply to --sampler ray; add it or drop them")
        check(self.ray_actors is None or (isinstance(self.ray_actors, int)
                                          and not isinstance(self.ray_actors, bool)
                                          and 0 < self.ray_actors <= self.meta_batch),
              f"ray_actors must be a positive integer up to the meta-batch ({self.meta_batch}: "
              f"each actor samples whole tasks), got {self.ray_actors!r}; lower --ray-actors")
        check(self.outer_torch_threads is None or (isinstance(self.outer_torch_threads, int)
                                                   and self.outer_torch_threads > 0),
              f"outer_torch_threads must be a positive integer, got {self.outer_torch_threads!r}")
        check(self.horizon is None or (isinstance(self.horizon, int) and self.horizon > 0),
              f"horizon must be a positive integer, got {self.horizon!r}")
        check_nonnegative_int("inner_steps", self.inner_steps)
        check_nonnegative_int("seed", self.seed)
        check_positive("inner_lr", self.inner_lr)
        check(0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1,
              f"need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got {self.gamma}, "
              f"{self.gae_lambda}")
        check_hidden(self.hidden)


def check_hidden(hidden: Any) -> None:
    check(isinstance(hidden, (tuple, list)) and all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden),
        f"hidden must be layer sizes, positive integers, got {hidden!r}")
