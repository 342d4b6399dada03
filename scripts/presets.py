"""Named experiments with the published settings: ``metarl-train PRESET [ALGORITHM]``.

Supervised presets follow Finn et al. (2017). Meta-RL ``-v0`` presets follow the public PyTorch
MAML-RL reference (horizon 100, 64x64 tanh policy); ``-paper`` presets follow Finn et al.:
100x100 ReLU policy, horizon 200 for locomotion. Common to both: inner lr 0.1, one inner step,
20 episodes per task, meta-batch 20 (navigation) or 40 (MuJoCo), gamma 0.99, GAE lambda 1,
TRPO max KL 0.01, 500 meta-iterations.

A preset names a task family's settings on the command line: a new supervised task family
needs one line here (and its file in ``metarl/envs``).
"""

from __future__ import annotations

from metarl.algos.matching_nets import MatchingNets
from metarl.algos.meta_lstm import MetaLSTM
from metarl.algos.metanmt import MetaNMT
from metarl.algos.pretrain import Pretrain
from metarl.algos.protonets import ProtoNets
from metarl.config import MetaConfig, RLConfig
from metarl.envs.ntrex import NTREX
from metarl.envs.omniglot import Omniglot
from metarl.envs.sinusoid import Sinusoid
from metarl.scripts.experiments import MetaRL, Supervised

_PAPER = dict(hidden=(100, 100), nonlinearity="relu")


def _omniglot(method: str, ways: int, shots: int, cpu: bool) -> tuple[str, Supervised]:
    """The preset of ``method`` on Omniglot ``ways``-way ``shots``-shot: the same tasks (and
    so the same 600 test tasks) as MAML's presets, the method's own training settings."""
    algo, meta, doc = _METHODS[method](ways, shots, cpu)
    length = (f"CPU length, {doc} about {_MINUTES[method][shots > 1]} minutes on one CPU core "
              "shared with another job (OMP_NUM_THREADS=1)" if cpu
              else f"{doc} sized for a GPU (--device cuda)")
    name = f"omniglot-{ways}w{shots}s" + "-cpu" * cpu
    return (f"Omniglot {ways}-way {shots}-shot, {algo.__doc__.split('(')[0].strip()}: {length}.",
            Supervised(task=Omniglot(ways=ways, shots=shots), algo=algo, name=name,
                       meta=MetaConfig(log_every=25, checkpoint_every=100, **meta)))


def _protonets(ways: int, shots: int, cpu: bool) -> tuple[ProtoNets, dict, str]:
    # Snell et al.: 60-way training episodes with 5 query drawings per class, one per step. A
    # 60-way episode takes ~2 s on a shared CPU core, so the CPU presets train with fewer ways.
    train_ways = (20 if ways == 5 else 30) if cpu else 60
    iterations = (700 if shots == 1 else 200) if cpu else 20_000
    return (ProtoNets(train_ways=train_ways, train_query=5),
            dict(iterations=iterations, meta_batch=1),
            f"{iterations:,} {train_ways}-way episodes (5 queries a class), Adam 1e-3;")


def _matchingnets(ways: int, shots: int, cpu: bool) -> tuple[MatchingNets, dict, str]:
    # About 160 (1-shot) or 200 (5-shot) drawings a step on CPU.
    batch = max(1, (16 if shots == 1 else 4) * 5 // ways) if cpu else 32
    iterations = (600 if shots == 1 else 200) if cpu else 20_000
    return (MatchingNets(), dict(iterations=iterations, meta_batch=batch),
            f"{iterations:,} iterations of {batch} {ways}-way episodes, Adam 1e-3;")


def _meta_lstm(ways: int, shots: int, cpu: bool) -> tuple[MetaLSTM, dict, str]:
    # The paper's input-gate start (rates of ~0.01) meta-learns slowly on Omniglot within a CPU
    # budget; the CPU presets start the rates near 0.2 (sigmoid of -1.4), MAML's regime. The
    # coordinate-wise LSTM runs over all 113k Conv4 parameters at every step, so it costs
    # several times MAML's step.
    algo = MetaLSTM(input_bias=(-1.6, -1.2)) if cpu else MetaLSTM()
    batch, steps = (2, 3) if cpu else (16, 5 if shots == 1 else 10)
    iterations = (100 if shots == 1 else 50) if cpu else 20_000
    return (algo, dict(iterations=iterations, meta_batch=batch, inner_steps=steps),
            f"{iterations:,} iterations of {batch} tasks, {steps} LSTM steps each, Adam 1e-3;")


def _pretrain(ways: int, shots: int, cpu: bool) -> tuple[Pretrain, dict, str]:
    # A step holds the drawings of meta_batch tasks; at test a new zero head, 10 SGD steps.
    batch = (8 if shots == 1 else 2) if cpu else 32
    iterations = (1_000 if shots == 1 else 500) if cpu else 20_000
    lr = 0.4 if ways == 5 else 0.1
    return (Pretrain(), dict(iterations=iterations, meta_batch=batch, inner_lr=lr),
            f"{iterations:,} batches of {batch} tasks' drawings over all 4,800 meta-training "
            f"classes, Adam 1e-3, new head fine-tuned at {lr};")


# Wall minutes of the 5-way 1-shot and 5-shot CPU presets, measured on one CPU core shared
# with another job.
_MINUTES = {"protonets": (10, 3), "matchingnets": (7, 3), "meta-lstm": (8, 3),
            "pretrain": (6, 3)}
_METHODS = {"protonets": _protonets, "matchingnets": _matchingnets, "meta-lstm": _meta_lstm,
            "pretrain": _pretrain}


def _rl(env: str, doc: str, **settings) -> tuple[str, MetaRL]:
    return doc, MetaRL(rl=RLConfig(env_id=f"metarl/{env}-v0", **settings))


PRESETS: dict[str, tuple[str, Supervised | MetaRL]] = {
    "sinusoid": (
        "Sinusoid regression, K=10 (Finn et al. 2017): 1 inner step of 0.01, meta-batch 25, "
        "Adam 1e-3; 10k iterations here (the paper: 70k).",
        Supervised(task=Sinusoid(shots=10), meta=MetaConfig(iterations=10_000, meta_batch=25,
                                                            inner_lr=0.01, inner_steps=1)),
    ),
    "sinusoid-5shot": (
        "Sinusoid regression, K=5.",
        Supervised(task=Sinusoid(shots=5), meta=MetaConfig(iterations=10_000)),
    ),
    **{
        f"omniglot-{ways}w{shots}s": (
            f"Omniglot {ways}-way {shots}-shot, Conv4 (Finn et al. 2017): meta-batch {batch}, "
            f"{steps} inner step(s) of {lr}, Adam 1e-3, 60k iterations; evaluate with 10 steps "
            "on 600 test tasks. Sized for a GPU (--device cuda).",
            Supervised(task=Omniglot(ways=ways, shots=shots),
                       meta=MetaConfig(iterations=60_000, meta_batch=batch, inner_lr=lr,
                                       inner_steps=steps, log_every=100, checkpoint_every=1000)),
        )
        for ways, shots, batch, lr, steps in ((5, 1, 32, 0.4, 1), (5, 5, 32, 0.4, 1),
                                              (20, 1, 16, 0.1, 5), (20, 5, 16, 0.1, 5))
    },
    "omniglot-5w1s-cpu": (
        "Omniglot 5-way 1-shot MAML within about an hour on 2 shared CPU cores (1.5-2.4 it/s "
        "measured; set OMP_NUM_THREADS=1 when the cores are shared): the published settings "
        "(meta-batch 32, 1 inner step of 0.4, Adam 1e-3) for 4,000 iterations instead of 60k.",
        Supervised(task=Omniglot(ways=5, shots=1), name="omniglot-5w1s-cpu",
                   meta=MetaConfig(iterations=4_000, meta_batch=32, inner_lr=0.4, inner_steps=1,
                                   log_every=50, checkpoint_every=250)),
    ),
    "omniglot-5w5s-cpu": (
        "Omniglot 5-way 5-shot MAML within about 25 minutes on one shared CPU core "
        "(OMP_NUM_THREADS=1): 1 inner step of 0.4, Adam 1e-3, meta-batch 8 instead of 32 for "
        "600 iterations instead of 60k.",
        Supervised(task=Omniglot(ways=5, shots=5), name="omniglot-5w5s-cpu",
                   meta=MetaConfig(iterations=600, meta_batch=8, inner_lr=0.4, inner_steps=1,
                                   log_every=25, checkpoint_every=100)),
    ),
    **{
        f"omniglot-{ways}w{shots}s-{method}" + "-cpu" * cpu: _omniglot(method, ways, shots, cpu)
        for method in _METHODS for ways in (5, 20) for shots in (1, 5) for cpu in (False, True)
    },
    "ntrex": (
        "Low-resource translation X->English on NTREX-128 as meta-learning (Gu et al. 2018): "
        "18 meta-training languages, tasks of 16 + 16 sentence pairs, a 2+2-layer Transformer "
        "(d 64, 4 heads); MetaNMT = first-order MAML, one Adam inner step of 1e-3, meta-batch 4, "
        "Adam 1e-3, 2,000 iterations (CPU-sized: 1-5 s an iteration on one core, by load).",
        Supervised(task=NTREX(), algo=MetaNMT(), meta=MetaConfig(
            iterations=2_000, meta_batch=4, inner_lr=1e-3, inner_steps=1, log_every=10,
            checkpoint_every=25)),
    ),
    "ntrex-smoke": (
        "NTREX translation, a smoke test: 2 languages (deu, fra), target ron, a 1+1-layer "
        "Transformer (d 16), tasks of 4 + 4 sentences, 3 iterations (seconds).",
        Supervised(task=NTREX(languages=("deu", "fra"), targets=("ron",), shots=4, query=4,
                              max_len=40, vocab_size=600, english_vocab_size=400, d_model=16,
                              heads=2, ff=32, encoder_layers=1, decoder_layers=1),
                   name="ntrex-smoke", algo=MetaNMT(), meta=MetaConfig(
                       iterations=3, meta_batch=2, inner_lr=1e-3, log_every=1,
                       checkpoint_every=3)),
    ),
    "nav2d": _rl("Navigation2D", "2D navigation, reference settings (meta-batch 20).",
                 meta_batch=20),
    "nav2d-paper": _rl("Navigation2D", "2D navigation, Finn et al. policy (100x100 ReLU).",
                       meta_batch=20, **_PAPER),
    "nav2d-finn": _rl("Navigation2DNormalized", "2D navigation as Finn et al.'s code ran it: "
                      "actions in [-1, 1]^2 scaled by 0.1, 100x100 ReLU, meta-batch 40, inner lr "
                      "0.5, 100 iterations; evaluate with --episodes 40 as their test script.",
                      meta_batch=40, inner_lr=0.5, iterations=100, **_PAPER),
    "cheetah-vel": _rl("HalfCheetahVel", "HalfCheetah velocity, reference (horizon 100).",
                       meta_batch=40),
    "cheetah-dir": _rl("HalfCheetahDir", "HalfCheetah direction, reference (horizon 100).",
                       meta_batch=40),
    "ant-vel": _rl("AntVel", "Ant velocity, reference (horizon 100).", meta_batch=40),
    "ant-dir": _rl("AntDir", "Ant direction, reference (horizon 100).", meta_batch=40),
    "cheetah-vel-paper": _rl("HalfCheetahVelH200", "HalfCheetah velocity, Finn et al. "
                             "(horizon 200, 100x100 ReLU).", meta_batch=40, **_PAPER),
    "cheetah-dir-paper": _rl("HalfCheetahDirH200", "HalfCheetah direction, Finn et al. "
                             "(horizon 200, 100x100 ReLU).", meta_batch=40, **_PAPER),
    "ant-vel-paper": _rl("AntVelH200", "Ant velocity, Finn et al. (horizon 200).",
                         meta_batch=40, **_PAPER),
    "ant-dir-paper": _rl("AntDirH200", "Ant direction, Finn et al. (horizon 200, 40 episodes "
                         "per step).", meta_batch=40, episodes=40, **_PAPER),
    # cbfinn/maml_rl's ant script: 20 episodes, meta-batch 40, 800 iterations, max KL 0.01
    "ant-vel-finn": _rl("AntVelFinn", "Ant velocity as Finn et al.'s code ran it: rllab's "
                        "50 Hz control and start (200 steps = 4 s), 100x100 ReLU, "
                        "800 iterations.", meta_batch=40, iterations=800, **_PAPER),
    "ant-dir-finn": _rl("AntDirFinn", "Ant direction as Finn et al.'s code ran it: rllab's "
                        "50 Hz control and start (200 steps = 4 s), 100x100 ReLU, "
                        "800 iterations.", meta_batch=40, iterations=800, **_PAPER),
}


def task_types() -> tuple[type, ...]:
    """The supervised task-family configs the presets name."""
    return tuple({type(p.task): None for _, p in PRESETS.values()
                  if isinstance(p, Supervised)})
