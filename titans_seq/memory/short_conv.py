"""A causal depthwise 1-D convolution that can carry its last inputs across calls."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ShortConv(nn.Module):
    """Depthwise causal convolution over (B, T, C); ``cache`` is the previous (B, C, kernel - 1) inputs."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)

    def forward(self, x: Tensor, cache: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = x.transpose(1, 2)
        if cache is None:
            cache = x.new_zeros(x.shape[0], x.shape[1], self.kernel - 1)
        x = torch.cat((cache, x), dim=-1)
        y = F.conv1d(x, self.weight, self.bias, groups=x.shape[1])
        return y.transpose(1, 2), x[..., x.shape[-1] - (self.kernel - 1):]
