"""metarl: meta-learning on a functional core.

Weights are plain ``dict[str, Tensor]`` (:mod:`metarl.params`); :func:`adapt` takes inner
gradient steps on a task's support loss and :func:`adapt_tasks` does it for a meta-batch in one
``torch.func.vmap`` call (:mod:`metarl.adapt`). Supervised tasks are :class:`TaskBatch`es
(:mod:`metarl.tasks`); RL episodes come from the lockstep sampler (:mod:`metarl.sampler`) as
:class:`Episodes`, turned into advantages and policy losses by :mod:`metarl.rl`, with the
trust-region math in :mod:`metarl.trpo`.
"""

from metarl.adapt import adapt, adapt_reference, adapt_tasks, task_losses
from metarl.params import Params, forward_fn, params_of
from metarl.tasks import TaskBatch

__all__ = ["Params", "TaskBatch", "adapt", "adapt_reference", "adapt_tasks", "forward_fn",
           "params_of", "task_losses"]
