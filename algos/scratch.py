"""The from-scratch baseline: no meta-training at all.

The run holds the seeded random initialisation; at test time it is fine-tuned like every
trained run, so its figures are what the test data alone teaches (Gu et al. 2018's and Zoph et
al. 2016's "no transfer" baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from metarl.algos.supervised import AdamOuterLoop, build
from metarl.config import MetaConfig
from metarl.logger import Run
from metarl.tasks import TaskFamily


@dataclass(frozen=True)
class Scratch(AdamOuterLoop):
    """No meta-training: the seeded random initialisation, fine-tuned at test time like the
    other runs (the from-scratch baseline)."""

    name: ClassVar[str] = "scratch"
    kind: ClassVar[str] = "supervised"


def train(algo: Scratch, family: TaskFamily, cfg: MetaConfig, run: Run,
          resume: dict | None = None) -> None:
    _, learner = build(family, algo, cfg, resume)
    run.checkpoint(learner.state_dict(), learner.iteration)  # iteration 0: nothing learned
