"""Meta-learning algorithms, one file each, reading like their papers' pseudocode.

Each algorithm is a frozen config dataclass (its own options; ``name`` is its command-line
name, ``kind`` the experiments it trains: ``"supervised"`` or ``"rl"``) and a training loop.
:data:`ALGORITHMS` is the one registry: the config's type is the dispatch key.

A supervised loop is ``train(algo, family, cfg: MetaConfig, run, resume)``; a meta-RL loop is
``train(algo, cfg: RLConfig, run, resume)``.
"""

from __future__ import annotations

from collections.abc import Callable

from metarl.algos import (
    maml,
    maml_reinforce,
    maml_trpo,
    matching_nets,
    meta_lstm,
    metanmt,
    pretrain,
    pretrain_trpo,
    protonets,
    reptile,
    scratch,
)

# One line per algorithm: config type -> training loop.
ALGORITHMS: dict[type, Callable[..., None]] = {
    maml.MAML: maml.train,
    maml.FOMAML: maml.train,
    maml.MetaSGD: maml.train,
    reptile.Reptile: reptile.train,
    pretrain.Pretrain: pretrain.train,
    protonets.ProtoNets: protonets.train,
    matching_nets.MatchingNets: matching_nets.train,
    meta_lstm.MetaLSTM: meta_lstm.train,
    metanmt.MetaNMT: maml.train,
    scratch.Scratch: scratch.train,
    maml_trpo.MAMLTRPO: maml_trpo.train,
    maml_reinforce.MAMLReinforce: maml_reinforce.train,
    pretrain_trpo.PretrainTRPO: pretrain_trpo.train,
}


def of_kind(kind: str) -> tuple[type, ...]:
    """The registered algorithm configs that train ``kind`` ("supervised" or "rl")."""
    return tuple(cls for cls in ALGORITHMS if cls.kind == kind)
