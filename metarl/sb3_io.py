"""Policies to and from stable-baselines3: our Gaussian MLP as SB3's ``MlpPolicy``, and back.

:class:`~metarl.policies.GaussianMLPPolicy` maps exactly onto SB3's ``ActorCriticPolicy`` with
``net_arch=dict(pi=hidden, vf=...)`` and ``activation_fn`` Tanh or ReLU: hidden layer ``k``
(``mean.{2k}``) to ``mlp_extractor.policy_net.{2k}``, the output layer to ``action_net``,
``log_std`` to ``log_std``. So a meta-trained or adapted policy (Finn et al., 2017) becomes an
SB3 model that ``PPO.load``, ``predict`` and ``evaluate_policy`` use as any other, and an
SB3-trained policy becomes params (``dict[str, Tensor]``) to meta-train or adapt from through
``torch.func.functional_call``. The exported value head is SB3's fresh initialisation: our
policies have none, so it is untrained, and the model says so in ``model.metarl_export``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from metarl.errors import CheckpointError, ConfigError
from metarl.models import ACTIVATIONS
from metarl.params import Params
from metarl.policies import GaussianMLPPolicy

# SB3 (and with it Gymnasium) is imported where it is used: the core imports no simulator
# library (tests/test_layering.py).
if TYPE_CHECKING:
    from gymnasium import spaces
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy

VALUE_HEAD_NOTE = ("untrained: SB3's initialisation (the exported policy has no value "
                   "function); train it (e.g. model.learn) before using values or advantages")

_LAYER = re.compile(r"mean\.(\d+)\.(weight|bias)")


def _layers(params: Mapping[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
    """The (weight ``[out, in]``, bias ``[out]``) pairs of a Gaussian MLP's mean, in order;
    a clear error for any other policy's params."""
    keys = set(params)
    if any(k.startswith("logits.") for k in keys):
        raise ConfigError("to_sb3 exports Gaussian MLP policies (continuous actions); these "
                          "params are a categorical policy's (logits.*), which has no SB3 "
                          "MlpPolicy counterpart here")
    indices = sorted({int(m.group(1)) for k in keys if (m := _LAYER.fullmatch(k))})
    expected = {"log_std", *(f"mean.{i}.{p}" for i in indices for p in ("weight", "bias"))}
    if not indices or keys != expected or indices != list(range(0, 2 * len(indices), 2)):
        raise ConfigError(f"to_sb3 expects a GaussianMLPPolicy's params (mean.0.weight, ..., "
                          f"log_std), got keys {sorted(keys)}")
    layers = [(params[f"mean.{i}.weight"], params[f"mean.{i}.bias"]) for i in indices]
    log_std = params["log_std"]
    if log_std.dim() != 1 or any(w.dim() != 2 or b.dim() != 1 for w, b in layers):
        raise ConfigError(f"to_sb3 exports one policy; these params have a leading task "
                          f"dimension (log_std {tuple(log_std.shape)}): pass one task's, e.g. "
                          "{k: v[i] for k, v in params.items()}")
    for (w, b), (w_next, _) in zip(layers, [*layers[1:], (None, None)]):
        if b.shape[0] != w.shape[0] or (w_next is not None and w_next.shape[1] != w.shape[0]):
            raise ConfigError("to_sb3: the params' layer sizes do not chain "
                              f"({[tuple(w.shape) for w, _ in layers]})")
    if log_std.shape[0] != layers[-1][0].shape[0]:
        raise ConfigError(f"to_sb3: log_std has {log_std.shape[0]} entries for "
                          f"{layers[-1][0].shape[0]} actions")
    return layers


def to_sb3(params: Mapping[str, Tensor], observation_space: spaces.Space,
           action_space: spaces.Space, nonlinearity: str = "tanh",
           algorithm: type[OnPolicyAlgorithm] | None = None, **kwargs: Any
           ) -> OnPolicyAlgorithm:
    """An SB3 model (PPO by default, or A2C, sb3-contrib's TRPO, ...) whose policy is the
    Gaussian MLP of ``params`` (one policy's: ``mean.*`` ``[out, in]``, ``log_std [act]``).

    Its action means and log-std equal ours exactly (float32); ``predict(obs,
    deterministic=True)`` is the mean clipped to ``action_space``. ``kwargs`` go to the
    algorithm (``policy_kwargs["net_arch"]["vf"]`` sizes the value network, default the
    policy's). The model has no env: ``model.set_env(env)`` before ``learn``.
    """
    from gymnasium import spaces
    from stable_baselines3 import PPO

    if not isinstance(action_space, spaces.Box):
        raise ConfigError(f"to_sb3 exports Gaussian policies for continuous (Box) actions; "
                          f"got {action_space}: a categorical policy has no export here")
    if not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 1):
        raise ConfigError(f"to_sb3 needs a flat Box observation space, got {observation_space}")
    if nonlinearity not in ACTIVATIONS:
        raise ConfigError(f"to_sb3: unknown nonlinearity {nonlinearity!r}; choose one of "
                          f"{sorted(ACTIVATIONS)}")
    layers = _layers(params)
    obs_dim, act_dim = observation_space.shape[0], action_space.shape[0]
    got = (layers[0][0].shape[1], layers[-1][0].shape[0])
    if got != (obs_dim, act_dim):
        raise ConfigError(f"to_sb3: the policy maps {got[0]} observations to {got[1]} actions, "
                          f"the spaces have {obs_dim} and {act_dim}; export it with its own "
                          "env's spaces")
    bad = [k for k, v in params.items() if not torch.isfinite(v).all()]
    if bad:
        raise ConfigError(f"to_sb3: params {bad} hold NaN or inf; export a finite checkpoint")
    hidden = [w.shape[0] for w, _ in layers[:-1]]
    policy_kwargs = dict(kwargs.pop("policy_kwargs", None) or {})
    net_arch = dict(policy_kwargs.pop("net_arch", None) or {})
    policy_kwargs.update(net_arch={"pi": hidden, "vf": list(net_arch.get("vf", hidden))},
                         activation_fn=ACTIVATIONS[nonlinearity])
    kwargs.setdefault("device", "cpu")
    model = (algorithm or PPO)("MlpPolicy", _spaces_only(observation_space, action_space),
                      policy_kwargs=policy_kwargs, **kwargs)
    model.env = None  # it was only there to give the spaces
    policy = model.policy
    linears = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for (w, b), linear in zip(layers, [*linears, policy.action_net]):
            linear.weight.copy_(w)
            linear.bias.copy_(b)
        policy.log_std.copy_(params["log_std"])
    model.metarl_export = {"value_head": VALUE_HEAD_NOTE, "nonlinearity": nonlinearity,
                           "hidden": hidden}
    return model


def _spaces_only(observation_space: spaces.Space, action_space: spaces.Space) -> Any:
    """An env that carries the spaces an SB3 model is built for, and nothing else."""
    import gymnasium

    class SpacesOnly(gymnasium.Env):
        def reset(self, *, seed: int | None = None, options: dict | None = None):
            raise RuntimeError("an exported model has no env; call model.set_env(env) first")

        def step(self, action):
            raise RuntimeError("an exported model has no env; call model.set_env(env) first")

    env = SpacesOnly()
    env.observation_space, env.action_space = observation_space, action_space
    return env


def _policy(source: Any) -> ActorCriticPolicy:
    """The actor-critic policy of an SB3 model, a policy, or a model file (``.zip``)."""
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy

    if isinstance(source, BaseAlgorithm):
        return source.policy
    if isinstance(source, ActorCriticPolicy):
        return source
    if isinstance(source, (str, Path)):
        return _load_policy(Path(source))
    raise ConfigError(f"from_sb3 takes an SB3 model, its policy or a saved model (.zip); got "
                      f"{type(source).__name__}")


def _load_policy(path: Path) -> ActorCriticPolicy:
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.save_util import load_from_zip_file

    if not path.is_file() and path.with_suffix(".zip").is_file():
        path = path.with_suffix(".zip")
    if not path.is_file():
        raise CheckpointError(f"no SB3 model at {path}; pass the .zip that model.save wrote")
    try:
        data, state, _ = load_from_zip_file(path, device="cpu")
        policy_class = data["policy_class"]
        policy = policy_class(data["observation_space"], data["action_space"],
                              lambda _: 0.0, **data.get("policy_kwargs", {}))
        policy.load_state_dict(state["policy"])
    except Exception as e:  # SB3 and zipfile raise many types for a foreign or broken file
        raise CheckpointError(f"{path} is not a stable-baselines3 model ({type(e).__name__}); "
                              "pass a .zip written by model.save (PPO, A2C, TRPO, ...)") from None
    if not isinstance(policy, ActorCriticPolicy):
        raise ConfigError(f"{path}: from_sb3 reads actor-critic MLP policies (PPO, A2C, TRPO); "
                          f"this model's policy is a {type(policy).__name__}")
    return policy


def _mean_layers(policy: ActorCriticPolicy) -> tuple[list[nn.Linear], str]:
    """The linear layers of the action mean (hidden ones, then ``action_net``) and their
    activation's name; a clear error for policies that are not a Gaussian MLP."""
    from stable_baselines3.common.distributions import DiagGaussianDistribution
    from stable_baselines3.common.torch_layers import FlattenExtractor

    kind = type(policy.action_dist).__name__
    if not isinstance(policy.action_dist, DiagGaussianDistribution):
        raise ConfigError(f"from_sb3 reads diagonal-Gaussian policies (continuous actions); "
                          f"this one's distribution is {kind}")
    if policy.squash_output:
        raise ConfigError("from_sb3: this policy squashes its actions (tanh); ours do not")
    if not isinstance(policy.pi_features_extractor, FlattenExtractor):
        raise ConfigError("from_sb3 reads MlpPolicy models (flat observations); this one "
                          f"extracts features with {type(policy.pi_features_extractor).__name__}")
    modules = list(policy.mlp_extractor.policy_net)
    linears = [m for m in modules[::2] if isinstance(m, nn.Linear)]
    activations = {type(m) for m in modules[1::2]}
    names = [name for name, cls in ACTIVATIONS.items() if activations <= {cls}]
    if len(linears) != len(modules[::2]) or (modules and len(activations) != 1) or not names:
        raise ConfigError(f"from_sb3: the policy network {modules} is not alternating Linear "
                          f"and one of {sorted(ACTIVATIONS)}")
    nonlinearity = names[0] if modules else _activation_name(policy.activation_fn)
    return [*linears, policy.action_net], nonlinearity


def _activation_name(cls: type) -> str:
    names = [name for name, c in ACTIVATIONS.items() if c is cls]
    return names[0] if names else "tanh"  # no hidden layer: the activation is never used


def from_sb3(source: Any, policy: nn.Module | None = None) -> Params:
    """The params (``mean.*``, ``log_std``) of an SB3 model's Gaussian MLP policy: an SB3 model
    (PPO, A2C, TRPO, ...), its policy, or a saved model's path. With ``policy`` (ours), the
    architecture must match it (layer sizes and nonlinearity). Float32 copies on the CPU."""
    sb3 = _policy(source)
    linears, nonlinearity = _mean_layers(sb3)
    params: Params = {}
    for k, linear in enumerate(linears):
        params[f"mean.{2 * k}.weight"] = linear.weight.detach().cpu().float().clone()
        params[f"mean.{2 * k}.bias"] = linear.bias.detach().cpu().float().clone()
    params["log_std"] = sb3.log_std.detach().cpu().float().clone()
    if policy is not None:
        ours = {k: tuple(v.shape) for k, v in policy.named_parameters()}
        theirs = {k: tuple(v.shape) for k, v in params.items()}
        act = next((name for name, cls in ACTIVATIONS.items()
                    if any(isinstance(m, cls) for m in policy.modules())), nonlinearity)
        if ours != theirs or act != nonlinearity:
            raise ConfigError(f"from_sb3: the SB3 policy ({_describe(theirs, nonlinearity)}) "
                              f"does not match ours ({_describe(ours, act)}); build ours with "
                              "matching_policy(model)")
    return params


def matching_policy(source: Any) -> GaussianMLPPolicy:
    """Our :class:`~metarl.policies.GaussianMLPPolicy` with the SB3 policy's architecture, so
    that ``from_sb3(source)`` are its params."""
    linears, nonlinearity = _mean_layers(_policy(source))
    return GaussianMLPPolicy(linears[0].in_features, linears[-1].out_features,
                             [m.out_features for m in linears[:-1]], nonlinearity)


def _describe(shapes: Mapping[str, tuple[int, ...]], nonlinearity: str) -> str:
    sizes = [s[0] for k, s in shapes.items() if k.endswith(".weight")]
    first = shapes.get("mean.0.weight", (0, 0))
    return f"{first[1]} -> {' x '.join(map(str, sizes))}, {nonlinearity}"


__all__ = ["VALUE_HEAD_NOTE", "from_sb3", "matching_policy", "to_sb3"]
