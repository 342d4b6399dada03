"""A small Transformer encoder-decoder (Vaswani et al., 2017) as pure functions of a params dict.

Pre-norm layers, sinusoidal positions, a source embedding (one subword vocabulary shared by
every source language) and a target embedding tied with the output layer, no dropout (so a
task's loss is a deterministic function of its params, and ``vmap`` over tasks needs no
random state).

Attention and layer norm are written with plain tensor ops on purpose (measured in torch
2.13): the fused ``F.scaled_dot_product_attention`` kernel on CPU
has no double backward, so second-order MAML through it fails, and ``F.layer_norm`` under
``vmap`` gives a second-order meta-gradient 1e-3 to 1e-1 off (the loss is right), as the
built-in batch norm does in :mod:`metarl.conv4`. Written out, the vmapped meta-gradient
matches the per-task ``torch.autograd.grad`` loop to float64 precision.

Token id 0 is padding. Sources are ``[B, S]`` ids ending in EOS; decoder inputs ``[B, T]``
start with BOS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from metarl.params import Params

PAD = 0
NEG = -1e9
"""Added to the attention scores of padding keys and future positions: ``exp`` of it is 0,
and unlike ``-inf`` it keeps a row finite even if all its keys were masked."""


@dataclass(frozen=True)
class Shape:
    """The network's sizes."""

    vocab: int
    """Source subwords."""
    target_vocab: int
    """Target subwords (the output layer)."""
    d_model: int = 64
    heads: int = 4
    ff: int = 256
    encoder_layers: int = 2
    decoder_layers: int = 2

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")


# --- the building blocks ------------------------------------------------------------------------


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Layer norm over the last dimension of ``x [..., D]`` in tensor ops (exact under vmap,
    unlike ``F.layer_norm``'s second derivative)."""
    mean = x.mean(-1, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdim=True)
    return centred * torch.rsqrt(var + eps) * weight + bias


def attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v``: ``q [B, H, T, Dh]``, ``k, v [B, H, S, Dh]``,
    ``bias`` broadcastable to ``[B, H, T, S]`` (0 or :data:`NEG`) -> ``[B, H, T, Dh]``."""
    scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5) + bias
    return torch.softmax(scores, -1) @ v


def _heads(x: Tensor, heads: int) -> Tensor:
    """``[B, T, D]`` -> ``[B, H, T, D / H]``."""
    b, t, d = x.shape
    return x.view(b, t, heads, d // heads).transpose(1, 2)


def _merge(x: Tensor) -> Tensor:
    """``[B, H, T, Dh]`` -> ``[B, T, H * Dh]``."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


def _linear(p: Params, name: str, x: Tensor) -> Tensor:
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _norm(p: Params, name: str, x: Tensor) -> Tensor:
    return layer_norm(x, p[f"{name}.weight"], p[f"{name}.bias"])


def _feed_forward(p: Params, name: str, x: Tensor) -> Tensor:
    return _linear(p, f"{name}.out", torch.relu(_linear(p, f"{name}.inner", x)))


def positions(length: int, d_model: int, like: Tensor, start: int = 0) -> Tensor:
    """Sinusoidal position encodings ``[length, d_model]`` from position ``start``."""
    pos = torch.arange(start, start + length, dtype=like.dtype, device=like.device)[:, None]
    rate = torch.exp(torch.arange(0, d_model, 2, dtype=like.dtype, device=like.device)
                     * (-math.log(10_000.0) / d_model))
    angle = pos * rate
    return torch.stack([angle.sin(), angle.cos()], -1).view(length, d_model)


def embed(p: Params, side: str, tokens: Tensor, start: int = 0) -> Tensor:
    """Token ids ``[B, T]`` of ``side`` (source or target) -> scaled embeddings plus positions
    ``[B, T, D]``."""
    table = p[f"{side}.weight"]
    d = table.shape[-1]
    x = table[tokens] * math.sqrt(d)
    return x + positions(tokens.shape[-1], d, x, start)


def key_bias(src: Tensor, dtype: torch.dtype) -> Tensor:
    """``[B, 1, 1, S]``: :data:`NEG` at padding positions of ``src [B, S]``, else 0."""
    return torch.where(src == PAD, NEG, 0.0).to(dtype)[:, None, None, :]


def causal_bias(length: int, like: Tensor) -> Tensor:
    """``[T, T]``: :data:`NEG` above the diagonal (a position sees itself and the past)."""
    future = torch.ones(length, length, dtype=torch.bool, device=like.device).triu(1)
    return torch.where(future, NEG, 0.0).to(like.dtype)


# --- the network ------------------------------------------------------------------------------


def encode(p: Params, shape: Shape, src: Tensor) -> Tensor:
    """Source ids ``[B, S]`` -> encoder states ``[B, S, D]``."""
    x, h = embed(p, "source", src), shape.heads
    bias = key_bias(src, x.dtype)
    for i in range(shape.encoder_layers):
        name = f"encoder.{i}"
        y = _norm(p, f"{name}.norm1", x)
        q, k, v = _linear(p, f"{name}.attn.qkv", y).chunk(3, -1)
        x = x + _linear(p, f"{name}.attn.out",
                        _merge(attention(_heads(q, h), _heads(k, h), _heads(v, h), bias)))
        x = x + _feed_forward(p, f"{name}.ff", _norm(p, f"{name}.norm2", x))
    return _norm(p, "encoder.norm", x)


class Memory(NamedTuple):
    """What every decoding step reads from the source: each layer's cross-attention keys and
    values ``[B, H, S, Dh]`` and the padding bias ``[B, 1, 1, S]``."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    bias: Tensor


def memory(p: Params, shape: Shape, src: Tensor) -> Memory:
    """Encode ``src [B, S]`` and project it for every decoder layer's cross-attention."""
    states, h = encode(p, shape, src), shape.heads
    keys, values = [], []
    for i in range(shape.decoder_layers):
        k, v = _linear(p, f"decoder.{i}.cross.kv", states).chunk(2, -1)
        keys.append(_heads(k, h))
        values.append(_heads(v, h))
    return Memory(tuple(keys), tuple(values), key_bias(src, states.dtype))


Cache = tuple[tuple[Tensor, Tensor], ...]
"""Each decoder layer's self-attention keys and values of the positions decoded so far."""


def decode(p: Params, shape: Shape, mem: Memory, tgt: Tensor, cache: Cache | None = None,
           last: bool = False) -> tuple[Tensor, Cache]:
    """Decoder inputs ``tgt [B, T]`` (continuing ``cache``, the positions before them) ->
    logits ``[B, T, V]`` (``[B, V]`` of the last position with ``last``) and the extended
    cache."""
    start = 0 if cache is None else cache[0][0].shape[2]
    x, h = embed(p, "target", tgt, start), shape.heads
    t = tgt.shape[-1]
    # Future positions are masked within tgt; the cached ones are all in the past.
    bias = torch.cat([x.new_zeros(t, start), causal_bias(t, x)], 1)
    new_cache = []
    for i in range(shape.decoder_layers):
        name = f"decoder.{i}"
        y = _norm(p, f"{name}.norm1", x)
        q, k, v = _linear(p, f"{name}.self.qkv", y).chunk(3, -1)
        k, v = _heads(k, h), _heads(v, h)
        if cache is not None:
            k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
        new_cache.append((k, v))
        x = x + _linear(p, f"{name}.self.out", _merge(attention(_heads(q, h), k, v, bias)))
        q = _heads(_linear(p, f"{name}.cross.q", _norm(p, f"{name}.norm2", x)), h)
        x = x + _linear(p, f"{name}.cross.out",
                        _merge(attention(q, mem.keys[i], mem.values[i], mem.bias)))
        x = x + _feed_forward(p, f"{name}.ff", _norm(p, f"{name}.norm3", x))
    if last:
        x = x[:, -1]
    x = _norm(p, "decoder.norm", x)
    return x @ p["target.weight"].T, tuple(new_cache)


def logits(p: Params, shape: Shape, src: Tensor, tgt: Tensor) -> Tensor:
    """Teacher-forced logits ``[B, T, V]`` of decoder inputs ``tgt [B, T]`` given ``src``."""
    return decode(p, shape, memory(p, shape, src), tgt)[0]


# --- the module that owns the parameters --------------------------------------------------------


def _linear_module(d_in: int, d_out: int) -> nn.Linear:
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class _Norm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))


def _modules(**parts: nn.Module) -> nn.ModuleDict:
    return nn.ModuleDict(parts)


def _layer(d: int, ff: int, decoder: bool) -> nn.ModuleDict:
    """One layer's parameters: ``attn`` (encoder) or ``self`` and ``cross`` (decoder)
    attention, the feed-forward block and its layer norms."""
    qkv = lambda: _modules(qkv=_linear_module(d, 3 * d), out=_linear_module(d, d))
    parts = {"self": qkv(), "cross": _modules(q=_linear_module(d, d),
                                              kv=_linear_module(d, 2 * d),
                                              out=_linear_module(d, d))} if decoder else {
        "attn": qkv()}
    norms = {f"norm{i}": _Norm(d) for i in range(1, 4 if decoder else 3)}
    return _modules(**parts, ff=_modules(inner=_linear_module(d, ff), out=_linear_module(ff, d)),
                    **norms)


class Transformer(nn.Module):
    """``forward(src [B, S], tgt [B, T]) -> logits [B, T, V]``. It only owns the parameters:
    the pure functions above read them by name, so ``functional_call`` and ``vmap`` run it
    with adapted params."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = shape
        d = shape.d_model
        self.source = nn.Embedding(shape.vocab, d)
        self.target = nn.Embedding(shape.target_vocab, d)
        for table in (self.source, self.target):
            nn.init.normal_(table.weight, std=d ** -0.5)
        self.encoder = _modules(**{str(i): _layer(d, shape.ff, False)
                                   for i in range(shape.encoder_layers)}, norm=_Norm(d))
        self.decoder = _modules(**{str(i): _layer(d, shape.ff, True)
                                   for i in range(shape.decoder_layers)}, norm=_Norm(d))

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        return logits(dict(self.named_parameters()), self.shape, src, tgt)
