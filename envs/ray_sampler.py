"""Episodes of a meta-batch sampled on Ray actors (``--sampler ray``; ``pip install
'metarl[ray]'``): each actor holds its own lockstep simulator and samples a contiguous shard of
the tasks with :func:`metarl.sampler.sample`; adaptation and the outer step stay on the driver.

Per phase the driver puts the per-task parameters into Ray's object store once, every actor
reads its rows, and the shards' episodes come back and are concatenated on the task dimension.
The sampler's randomness is per instance and per task, so the episodes are bit-identical to
one local call's for the same seed, whatever the number of actors. An actor that dies is
restarted by Ray and its call retried (``max_restarts``, ``max_task_retries``); one that stays
dead is replaced once by the driver and its shard sampled again; after that, or when no answer
comes within ``timeout`` seconds, the iteration fails with one line. Ray's own actors, object
store and fault handling do the work (RLlib and garage sample on Ray likewise).
"""

from __future__ import annotations

import copy
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from metarl.distributed import shards
from metarl.envs import make_batched
from metarl.episodes import Episodes
from metarl.errors import ConfigError, MetarlError
from metarl.sampler import sample, task_granularity
from metarl.simulator import BatchedSim

TIMEOUT_S = 1800.0
"""How long the driver waits for a phase's episodes before it gives up (a hung actor)."""
STARTUP_TIMEOUT_S = 120.0
"""How long the actors may take to start (an actor waits for a free CPU: never forever)."""
CONNECT_TIMEOUT_S = 5.0


class RaySamplerError(MetarlError):
    """The Ray actors could not sample a phase (an actor died twice, or no answer came)."""


def check(address: str | None) -> None:
    """Fail in one line, before a run starts, if Ray is not installed or nothing answers at
    ``address`` (``HOST:PORT`` of the cluster's head, ``ray://HOST:PORT`` for Ray Client, or
    ``auto``; None: a local Ray)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("--sampler ray needs Ray, which is not installed: pip install "
                          "'metarl[ray]', or drop --sampler ray to sample in this "
                          "process") from None
    if address is None or address == "auto":
        return
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers at {host}:{port} "
                          f"({reason}); start one there (ray start --head) or drop "
                          "--ray-address to run Ray on this machine") from None


def _host_port(address: str) -> tuple[str, int]:
    client = address.startswith("ray://")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port:  # no port: Ray's defaults, the client server's or the head's GCS
        host, port = address.removeprefix("ray://"), "10001" if client else "6379"
    if not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r} is not an address; give HOST:PORT of the "
                          "cluster's head, ray://HOST:PORT for Ray Client, or auto")
    return host, int(port)


class ShardSampler:
    """What a Ray actor holds: the policy module, and a simulator per shard size it met."""

    def __init__(self, env_id: str, policy: nn.Module, episodes: int, nthread: int = 1) -> None:
        torch.set_num_threads(1)  # one core per actor: Ray schedules it with num_cpus=1
        self.env_id, self.policy, self.episodes, self.nthread = env_id, policy, episodes, nthread
        self.sims: dict[int, BatchedSim] = {}

    def sample(self, params: Mapping[str, Tensor], tasks: Sequence[Any], horizon: int,
               seed: int, first_task: int, meta_batch: int) -> Episodes:
        """Episodes of ``tasks``, tasks ``first_task ..`` of the meta-batch whose per-task
        ``params`` (``[meta_batch, ...]``) are given whole."""
        rows = slice(first_task, first_task + len(tasks))
        n = len(tasks) * self.episodes
        if n not in self.sims:
            self.sims[n] = make_batched(self.env_id, n, self.nthread)
        return sample(self.policy, {k: v[rows] for k, v in params.items()}, tasks,
                      self.sims[n], self.episodes, horizon, seed, first_task=first_task,
                      meta_batch=meta_batch)

    def pid(self) -> int:
        return os.getpid()


class RaySampler:
    """:func:`metarl.sampler.sample` with the tasks spread over ``actors`` Ray actors."""

    def __init__(self, env_id: str, policy: nn.Module, episodes: int, actors: int | None = None,
                 address: str | None = None, most: int | None = None,
                 timeout: float = TIMEOUT_S) -> None:
        """Connect to the cluster at ``address`` (None: start a local Ray, unless this process
        already joined one) and start ``actors`` actors (None: one per free CPU of the cluster), at
        most ``most`` (the meta-batch: an actor samples whole tasks)."""
        import ray

        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, logging_level="ERROR")
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = address or "this machine"
                raise ConfigError(f"--ray-address {where}: Ray did not start or connect "
                                  f"({' '.join(str(error).split())[:200]}); check the address, "
                                  "or drop --ray-address for a local Ray") from None
        self.env_id, self.episodes, self.timeout = env_id, episodes, timeout
        # The actors need the module's structure only; parameters come with every phase.
        self._policy = copy.deepcopy(policy).to("cpu")
        self.unit = task_granularity(policy, episodes)
        self._remote = ray.remote(num_cpus=1, max_restarts=1, max_task_retries=1)(ShardSampler)
        count = actors or max(1, int(ray.available_resources().get("CPU", 1)))
        count = count if most is None else min(count, most)
        self.actors = [self._start() for _ in range(count)]
        try:
            ray.get([actor.pid.remote() for actor in self.actors], timeout=STARTUP_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            free = ray.available_resources().get("CPU", 0)
            self.close()
            raise RaySamplerError(f"{count} Ray actors did not all start within "
                                  f"{STARTUP_TIMEOUT_S:g} s (each needs a CPU; {free:g} of the "
                                  "cluster's are free); lower --ray-actors or add nodes"
                                  ) from None

    def _start(self) -> Any:
        return self._remote.remote(self.env_id, self._policy, self.episodes)

    def sample(self, params: Mapping[str, Tensor], tasks: Sequence[Any], horizon: int,
               seed: int, device: str | torch.device = "cpu") -> Episodes:
        """The episodes :func:`metarl.sampler.sample` gives on the CPU for ``seed``, sampled
        by the actors, on ``device``."""
        return self.gather(self.submit(params, tasks, horizon, seed), device)

    def submit(self, params: Mapping[str, Tensor], tasks: Sequence[Any], horizon: int,
               seed: int) -> list[tuple[int, slice, Any, Any]]:
        """Start a phase: the params once into the object store, one shard per actor (fewer
        when there are fewer tasks); returns ``(actor, shard, call, args)`` per shard."""
        import ray

        tasks = list(tasks)
        ref = ray.put({k: v.detach().to("cpu") for k, v in params.items()})
        parts = shards(len(tasks), len(self.actors), self.unit)
        calls = []
        for k, part in enumerate(parts):
            args = (ref, tasks[part], horizon, seed, part.start, len(tasks))
            calls.append((k, part, self.actors[k].sample.remote(*args), args))
        return calls

    def gather(self, calls: list[tuple[int, slice, Any, Any]],
               device: str | torch.device = "cpu") -> Episodes:
        """Wait for a phase's shards and join them on the task dimension."""
        import ray
        from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

        deadline = time.monotonic() + self.timeout
        results = []
        for k, part, call, args in calls:
            for attempt in (0, 1):
                try:
                    results.append(ray.get(call, timeout=max(0.0, deadline - time.monotonic())))
                    break
                except GetTimeoutError:
                    raise RaySamplerError(
                        f"Ray actor {k} (tasks {part.start}..{part.stop - 1}) sent no episodes "
                        f"within {self.timeout:g} s; the iteration is abandoned (resume with "
                        "--resume)") from None
                except (RayActorError, ActorUnavailableError) as error:
                    if attempt:
                        raise RaySamplerError(
                            f"Ray actor {k} (tasks {part.start}..{part.stop - 1}) died again "
                            f"after it was replaced ({type(error).__name__}); the iteration is "
                            "abandoned (resume with --resume)") from None
                    # Dead for good (its restarts spent, or its node lost): a new actor samples
                    # the shard again, exactly as the first would have.
                    self.actors[k] = self._start()
                    call = self.actors[k].sample.remote(*args)
        tasks = tuple(t for r in results for t in r.tasks)
        return Episodes(**{f: torch.cat([getattr(r, f) for r in results], 1).to(device)
                           for f in ("observations", "actions", "rewards", "log_probs", "mask")},
                        tasks=tasks)

    def close(self) -> None:
        """Stop the actors (they also stop when this object is collected)."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
