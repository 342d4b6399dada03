"""Policy-gradient pieces of MAML-RL (Finn et al., 2017, Algorithm 3), batched over tasks.

Episodes ``[T, N, E, ...]`` become a task-major :class:`PolicyBatch` ``[N, T, E, ...]`` with
baseline advantages; per-task losses (REINFORCE, the TRPO surrogate, the KL to the sampling
policy) are pure functions of ``(params, batch)`` that ``torch.func.vmap`` maps over tasks, and
:func:`adapt_chain` takes one inner step per support batch, the loop that sampling and the outer
step share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import vmap

from metarl.adapt import LossFn, adapt_step
from metarl.baseline import fit_predict
from metarl.episodes import Episodes
from metarl.params import Params, expand, forward_fn
from metarl.returns import discounted_returns, gae, normalize
from metarl.rules import UpdateRule


class PolicyBatch(NamedTuple):
    """Task-major episodes with advantages: ``observations [N, T, E, obs]``, ``actions
    [N, T, E, act]``, ``advantages, mask, old_log_probs [N, T, E]`` (one task under vmap)."""

    observations: Tensor
    actions: Tensor
    advantages: Tensor
    mask: Tensor
    old_log_probs: Tensor

    @property
    def num_tasks(self) -> int:
        return self.mask.shape[0]

    def select_tasks(self, index: int | slice) -> PolicyBatch:
        """Tasks ``index`` of every field (an int drops the task dimension)."""
        return PolicyBatch(*(x[index] for x in self))


def advantages(episodes: Episodes, gamma: float, gae_lambda: float) -> Tensor:
    """Baseline advantages, normalised per task: ``[T, N, E]``.

    The linear feature baseline is fitted to each task's own discounted returns, then GAE;
    normalisation is per task, as in the public MAML-RL reference.
    """
    returns = discounted_returns(episodes.rewards, episodes.mask, gamma)
    values = fit_predict(episodes.observations, returns, episodes.mask)
    adv = gae(episodes.rewards, values, episodes.mask, gamma, gae_lambda)
    return vmap(normalize, in_dims=(1, 1), out_dims=1)(adv, episodes.mask)


def policy_batch(episodes: Episodes, gamma: float, gae_lambda: float) -> PolicyBatch:
    adv = advantages(episodes, gamma, gae_lambda)
    return PolicyBatch(*(x.transpose(0, 1).contiguous() for x in (
        episodes.observations, episodes.actions, adv, episodes.mask, episodes.log_probs)))


class PolicyLosses:
    """Per-task losses of one policy architecture; every method maps ``(params, batch)`` of a
    single task (``[T, E, ...]`` fields) to a scalar, ready for ``adapt`` and ``vmap``."""

    def __init__(self, policy: nn.Module) -> None:
        self.forward = forward_fn(policy)
        self.distribution = policy.distribution

    def _mean(self, x: Tensor, mask: Tensor) -> Tensor:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)

    def reinforce(self, params: Params, batch: PolicyBatch) -> Tensor:
        """``-E[log pi(a|s) A]``: the inner-loop loss, and MAML-REINFORCE's outer loss."""
        logp = self.distribution.log_prob(self.forward(params, batch.observations), batch.actions)
        return -self._mean(logp * batch.advantages, batch.mask)

    def surrogate(self, params: Params, batch: PolicyBatch) -> Tensor:
        """TRPO's ``-E[pi(a|s) / pi_old(a|s) A]`` with ``pi_old`` the sampling policy."""
        return self._surrogate(self.forward(params, batch.observations), batch)

    def kl(self, params: Params, batch: PolicyBatch, old_outputs: tuple[Tensor, ...]) -> Tensor:
        """Mean ``KL(pi_old || pi)`` over the batch's states; ``old_outputs`` are the old
        policy's forward outputs on ``batch.observations`` (constants)."""
        return self.divergence(self.forward(params, batch.observations), batch, old_outputs)

    def divergence(self, outputs: tuple[Tensor, ...], batch: PolicyBatch,
                   old_outputs: tuple[Tensor, ...]) -> Tensor:
        """:meth:`kl` as a function of the new policy's outputs (the Gauss-Newton curvature's
        output-space Hessian)."""
        return self._mean(self.distribution.kl(old_outputs, outputs), batch.mask)

    def surrogate_and_kl(self, params: Params, batch: PolicyBatch,
                         old_outputs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """:meth:`surrogate` and :meth:`kl` from one forward pass (the TRPO line search)."""
        new = self.forward(params, batch.observations)
        return (self._surrogate(new, batch),
                self._mean(self.distribution.kl(old_outputs, new), batch.mask))

    def _surrogate(self, outputs: tuple[Tensor, ...], batch: PolicyBatch) -> Tensor:
        logp = self.distribution.log_prob(outputs, batch.actions)
        ratio = torch.exp(logp - batch.old_log_probs)
        return -self._mean(ratio * batch.advantages, batch.mask)

    def outputs(self, params: Params, batch: PolicyBatch) -> tuple[Tensor, ...]:
        return self.forward(params, batch.observations)


def adapt_chain(loss_fn: LossFn, params: Mapping[str, Tensor], supports: Sequence[Any],
                rules: Sequence[UpdateRule], num_tasks: int, *, first_order: bool = False,
                per_task_params: bool = False, state: Any = None) -> tuple[Params, Any]:
    """One inner step per support batch, all tasks at once: step ``k`` applies ``rules[k]`` to
    the loss on ``supports[k]``, which was sampled with the params after ``k`` steps (Finn et
    al.'s multi-step MAML-RL). Returns per-task params ``[N, ...]`` and the rules' state.

    ``params`` are shared by the ``num_tasks`` tasks unless ``per_task_params``; ``state``
    continues an earlier chain (None: ``rules[0].init``), so sampling may step one support
    batch at a time. Without support batches the shared params are expanded to every task.
    """
    if len(supports) != len(rules):
        raise ValueError(f"{len(supports)} support batches but {len(rules)} update rules; "
                         "give one rule per inner step")
    adapted = dict(params)
    for support, rule in zip(supports, rules):
        def step(p: Params, s: Any, st: Any, rule: UpdateRule = rule) -> tuple[Params, Any]:
            return adapt_step(loss_fn, p, s, rule, rule.init(p) if st is None else st,
                              first_order)

        dims = 0 if per_task_params else None
        adapted, state = vmap(step, in_dims=(dims, 0, None if state is None else dims))(
            adapted, support, state)
        per_task_params = True
    return (adapted if per_task_params else expand(adapted, num_tasks)), state


def mean_over_tasks(fn: Callable[..., Tensor], params: Params, *args: Any) -> Tensor:
    """``fn`` of each task's params and data, averaged over tasks."""
    return vmap(fn)(params, *args).mean()
