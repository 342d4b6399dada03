"""metarl: meta-learning on a functional core.

Weights are plain ``dict[str, Tensor]`` (:mod:`metarl.params`); :func:`adapt` takes inner steps
of an update rule (:mod:`metarl.rules`) on a task's support loss and :func:`adapt_tasks` does it
for a meta-batch in one ``torch.func.vmap`` call (:mod:`metarl.adapt`). Supervised tasks are
:class:`TaskBatch`es of a :class:`TaskFamily` (:mod:`metarl.tasks`); RL episodes come from the
lockstep sampler (:mod:`metarl.sampler`) driving a batched simulator (:mod:`metarl.simulator`),
turned into advantages and policy losses by :mod:`metarl.policy_gradient`, with the trust-region
math in :mod:`metarl.trpo`.

The core imports nothing of the layers above it: task families (``metarl.envs``), algorithms
(``metarl.algos``) and commands (``metarl.scripts``).
"""

from metarl.adapt import adapt, adapt_tasks, task_losses
from metarl.params import Params, forward_fn, params_of
from metarl.rules import SGD, MetaSGD, UpdateRule
from metarl.tasks import TaskBatch, TaskFamily

__all__ = ["SGD", "MetaSGD", "Params", "TaskBatch", "TaskFamily", "UpdateRule", "adapt",
           "adapt_tasks", "forward_fn", "params_of", "task_losses"]
