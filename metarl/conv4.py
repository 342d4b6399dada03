"""The Conv4 few-shot classifier of Finn et al. (2017), Section 5.2 (after Vinyals et al., 2016).

Four blocks of [3x3 convolution with 64 filters, batch norm, ReLU, 2x2 max-pool] and a linear
head. Batch norm always normalises with the statistics of the current batch and keeps no
running averages, as in the reference code: at test time a task's support or query set is
its own batch.

Batch norm is written with plain tensor operations on purpose: in torch 2.13 the built-in
batch-norm kernel under ``torch.func.vmap`` over tasks gives a wrong second-order
meta-gradient (about 1e-2 off in float64, while the loss itself is right); the plain version
matches the per-task ``torch.autograd.grad`` loop to 1e-10 (``tests/test_omniglot.py``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Downsample = Literal["maxpool", "stride"]


class BatchStatNorm2d(nn.Module):
    """Batch norm over ``[B, C, H, W]`` with the current batch's mean and (biased) variance.

    ``weight`` and ``bias`` ``[C]`` are the learnable scale and shift; there are no running
    statistics, so training and evaluation compute the same function.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        # One scale and shift per channel, so the graph has two full-size ops, not five: the
        # second-order backward on CPU is bound by memory traffic over these activations.
        mean = x.mean(dim=(0, 2, 3))
        var = ((x * x).mean(dim=(0, 2, 3)) - mean * mean).clamp_min(0)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


class Conv4(nn.Module):
    """``[B, in_channels, H, W]`` images -> ``[B, ways]`` logits, or ``[B, features]``
    embeddings with ``ways=None`` (the body alone, as metric learners embed images).

    ``downsample="maxpool"`` is the published architecture (28x28 -> 14 -> 7 -> 3 -> 1);
    ``"stride"`` replaces each max-pool by a stride-2 convolution and averages the last feature
    map, which is what Finn et al.'s released code does for Omniglot (about 4x cheaper).
    """

    def __init__(self, ways: int | None, in_channels: int = 1, hidden: int = 64,
                 image_size: int = 28, downsample: Downsample = "maxpool") -> None:
        super().__init__()
        if downsample not in ("maxpool", "stride"):
            raise ValueError(f"downsample must be 'maxpool' or 'stride', got {downsample!r}")
        self.downsample = downsample
        stride = 2 if downsample == "stride" else 1
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        channels, size = in_channels, image_size
        for _ in range(4):
            self.convs.append(nn.Conv2d(channels, hidden, 3, stride=stride, padding=1))
            self.norms.append(BatchStatNorm2d(hidden))
            channels = hidden
            size = (size + 1) // 2 if downsample == "stride" else size // 2
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for four 2x downsamplings")
        # Max-pool keeps the flattened map (1x1 at 28x28, as published); stride averages it.
        self.features = hidden * size * size if downsample == "maxpool" else hidden
        self.head = nn.Identity() if ways is None else nn.Linear(self.features, ways)

    def forward(self, x: Tensor) -> Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)))
            if self.downsample == "maxpool":
                x = F.max_pool2d(x, 2)
        x = x.flatten(1) if self.downsample == "maxpool" else x.mean(dim=(2, 3))
        return self.head(x)
