"""Forecasting networks: RevIN -> patches -> Backbone -> linear head, and the linear baselines.

Each maps a lookback window ``(B, L, C)`` to ``(B, H, C, Q)``: H future steps of C variates, with
Q outputs per step (1 for a point forecast, one per quantile otherwise). With the ``transformer``
backbone variant the patch model is the PatchTST-style baseline.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from titans_seq.backbones import Backbone, TitansConfig


def ordered(outputs: Tensor) -> Tensor:
    """Quantile outputs sorted along the last axis, so that quantile forecasts never cross."""
    return outputs.sort(dim=-1).values if outputs.shape[-1] > 1 else outputs


class RevIN(nn.Module):
    """Reversible instance normalisation: each series is standardised by its own lookback window
    statistics on the way in and restored on the way out, with a learnable affine per variate."""

    def __init__(self, n_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_channels))
        self.bias = nn.Parameter(torch.zeros(n_channels))

    def normalise(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        mean = x.mean(1, keepdim=True).detach()
        std = (x.var(1, keepdim=True, unbiased=False) + self.eps).sqrt().detach()
        return (x - mean) / std * self.weight + self.bias, (mean, std)

    def restore(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        """``y`` (B, H, C, Q) back to the input's scale."""
        mean, std = stats
        y = (y - self.bias[:, None]) / (self.weight[:, None] + self.eps * self.eps)
        return y * std.unsqueeze(-1) + mean.unsqueeze(-1)


def n_patches(lookback: int, patch_len: int, stride: int) -> int:
    """Patches of a lookback padded at the end by ``stride`` copies of its last value (as PatchTST)."""
    if patch_len > lookback:
        raise ValueError(f"patch_len={patch_len} is longer than the lookback {lookback}")
    return (lookback + stride - patch_len) // stride + 1


class PatchForecaster(nn.Module):
    """Patches of the normalised lookback become tokens for any Backbone variant; a flatten head forecasts.

    Channel-independent when ``n_channels`` is 1 (each variate is its own series, weights shared);
    with several channels, a token holds the same patch of every variate (channel mixing).
    """

    def __init__(self, config: TitansConfig, lookback: int, horizon: int, n_channels: int = 1,
                 patch_len: int = 16, stride: int = 8, n_outputs: int = 1, dropout: float = 0.0):
        super().__init__()
        self.horizon, self.n_channels, self.n_outputs = horizon, n_channels, n_outputs
        self.patch_len, self.stride = patch_len, stride
        self.tokens = n_patches(lookback, patch_len, stride)
        self.revin = RevIN(n_channels)
        self.embed = nn.Linear(patch_len * n_channels, config.d_model)
        self.position = nn.Parameter(torch.zeros(self.tokens, config.d_model))
        self.dropout = nn.Dropout(dropout)
        self.backbone = Backbone(config)
        self.head = nn.Linear(self.tokens * config.d_model, horizon * n_channels * n_outputs)

    def forward(self, past: Tensor) -> Tensor:
        x, stats = self.revin.normalise(past)
        x = torch.cat([x, x[:, -1:].expand(-1, self.stride, -1)], dim=1)
        patches = x.unfold(1, self.patch_len, self.stride)                  # (B, P, C, patch_len)
        tokens = self.embed(patches.flatten(2)) + self.position
        states = self.backbone(self.dropout(tokens))
        y = self.head(self.dropout(states.flatten(1)))
        return self.revin.restore(ordered(y.view(-1, self.horizon, self.n_channels, self.n_outputs)), stats)


class RLinear(nn.Module):
    """RLinear (Li et al., 2023): RevIN, then one linear map over the lookback, shared by every variate."""

    def __init__(self, lookback: int, horizon: int, n_channels: int = 1, n_outputs: int = 1):
        super().__init__()
        self.horizon, self.n_channels, self.n_outputs = horizon, n_channels, n_outputs
        self.revin = RevIN(n_channels)
        self.linear = nn.Linear(lookback, horizon * n_outputs)

    def forward(self, past: Tensor) -> Tensor:
        x, stats = self.revin.normalise(past)
        y = self.linear(x.transpose(1, 2)).view(-1, self.n_channels, self.horizon, self.n_outputs)
        return self.revin.restore(ordered(y.transpose(1, 2)), stats)


class DLinear(nn.Module):
    """DLinear (Zeng et al., 2023): a moving-average trend and the remainder, each forecast by one
    linear map over the lookback, shared by every variate."""

    def __init__(self, lookback: int, horizon: int, n_channels: int = 1, n_outputs: int = 1, kernel: int = 25):
        super().__init__()
        self.horizon, self.n_channels, self.n_outputs, self.kernel = horizon, n_channels, n_outputs, kernel
        self.trend = nn.Linear(lookback, horizon * n_outputs)
        self.seasonal = nn.Linear(lookback, horizon * n_outputs)
        for linear in (self.trend, self.seasonal):        # start as a mean of the lookback, as the original
            nn.init.constant_(linear.weight, 1.0 / lookback)

    def moving_average(self, x: Tensor) -> Tensor:
        """A centred moving average over time, the ends padded by repeating the first and last values."""
        front = x[:, :1].expand(-1, (self.kernel - 1) // 2, -1)
        back = x[:, -1:].expand(-1, self.kernel // 2, -1)
        padded = torch.cat([front, x, back], dim=1)
        return padded.unfold(1, self.kernel, 1).mean(-1)

    def forward(self, past: Tensor) -> Tensor:
        trend = self.moving_average(past)
        y = self.trend(trend.transpose(1, 2)) + self.seasonal((past - trend).transpose(1, 2))   # (B, C, H*Q)
        return ordered(y.view(-1, self.n_channels, self.horizon, self.n_outputs).transpose(1, 2))
