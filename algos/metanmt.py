"""MetaNMT: MAML over language pairs for low-resource translation.

Gu, Wang, Chen, Cho & Li (2018), "Meta-Learning for Low-Resource Neural Machine Translation",
Section 3: each task is one X->English pair; the inner loop adapts to its support sentences,
the outer loop updates the initialisation from the adapted model's query loss, with the
first-order approximation of their Eq. 7 by default. It is MAML's training loop
(:mod:`metarl.algos.maml`) with the order and the inner optimizer as options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from metarl.algos.maml import MAML
from metarl.config import MetaConfig, check
from metarl.params import Params
from metarl.rules import SGD, Adam, UpdateRule


@dataclass(frozen=True)
class MetaNMT(MAML):
    """MetaNMT (Gu et al. 2018): MAML over language pairs, first order by default, with SGD or
    Adam inner steps at inner_lr."""

    second_order: bool = False
    """Backpropagate through the inner steps (MAML's Hessian term); default first order."""
    inner_optimizer: Literal["adam", "sgd"] = "adam"
    """The inner steps: Adam (fresh moments per task, as Gu et al.) or plain SGD."""

    name: ClassVar[str] = "metanmt"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.inner_optimizer in ("adam", "sgd"),
              f"inner_optimizer must be adam or sgd, got {self.inner_optimizer!r}")

    @property
    def first_order(self) -> bool:  # type: ignore[override]
        return not self.second_order

    def rule(self, params: Params, cfg: MetaConfig) -> UpdateRule:
        return Adam(cfg.inner_lr) if self.inner_optimizer == "adam" else SGD(cfg.inner_lr)
