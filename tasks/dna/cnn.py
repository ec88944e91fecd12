"""A plain CNN for DNA classification: the Genomic Benchmarks baseline (Grešová et al., 2023).

As their ``CNN``: a token embedding, three blocks of Conv1d -> BatchNorm -> ReLU -> MaxPool(2),
then a dense head. Unlike it, the convolutions keep the length (zero-padded), and the flatten
that ties their model to one input length is a global pooling over each sequence's real
positions. Positions past a sequence's end are zeroed before every convolution, left out of the
batch statistics and of the pooling, so that a sequence's prediction does not depend on how much
padding its batch gives it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from titans_seq.errors import UserError

from .pooling import pool
from .tokenizer import PAD


@dataclass
class CNNConfig:
    """The CNN's sizes (``task.cnn.*`` in a recipe)."""

    embedding_dim: int = 100          # token embedding width (as Genomic Benchmarks)
    channels: list[int] = field(default_factory=lambda: [64, 64, 64])  # one block each (theirs: 16, 8, 4, flattened)
    kernel_size: int = 8              # tokens per convolution window (as theirs)
    hidden: int = 512                 # the dense head's hidden width (as theirs)


def check_cnn_config(config: CNNConfig) -> None:
    """A UserError naming the option when a size is not a positive whole number."""
    sizes = {"embedding_dim": [config.embedding_dim], "channels": list(config.channels),
             "kernel_size": [config.kernel_size], "hidden": [config.hidden]}
    for name, values in sizes.items():
        if not values or min(values) < 1:
            raise UserError(f"task.cnn.{name}={values if name == 'channels' else values[0]}: "
                            "give positive sizes" + (" (one per block)" if name == "channels" else ""))


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm whose training statistics (batch and running) come from the real positions only."""

    def forward(self, x: Tensor, real: Tensor) -> Tensor:
        """``x`` (B, C, T), ``real`` (B, T); padded positions come out as zeros while training."""
        if not self.training:
            return super().forward(x)
        values = x.transpose(1, 2)
        out = torch.zeros_like(values)
        out[real] = super().forward(values[real])
        return out.transpose(1, 2)


class ConvBlock(nn.Module):
    """Conv1d (same length) -> BatchNorm -> ReLU -> MaxPool(2), padded positions kept at zero."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = MaskedBatchNorm1d(out_channels)
        # ceil_mode: an odd-length sequence keeps its last position, as it would beside padding
        self.pool = nn.MaxPool1d(2, ceil_mode=True)

    def forward(self, x: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` (B, C, T), zero where ``real`` (B, T) is false; both halved in length."""
        x = self.norm(self.conv(x)[..., :x.shape[-1]], real).relu() * real.unsqueeze(1)
        return self.pool(x), self.pool(real.unsqueeze(1).float()).squeeze(1).bool()


class DNACNN(nn.Module):
    """Embedding -> convolution blocks -> pooling over the real positions -> Linear, ReLU, Linear."""

    def __init__(self, vocab_size: int, n_classes: int, config: CNNConfig, pooling: str = "mean"):
        super().__init__()
        self.pooling = pooling
        widths = [config.embedding_dim, *config.channels]
        self.embed = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=PAD)
        self.blocks = nn.ModuleList(ConvBlock(a, b, config.kernel_size) for a, b in zip(widths, widths[1:]))
        self.head = nn.Sequential(nn.Linear(widths[-1], config.hidden), nn.ReLU(), nn.Linear(config.hidden, n_classes))

    def forward(self, ids: Tensor) -> Tensor:
        real = ids != PAD
        x = (self.embed(ids) * real.unsqueeze(-1)).transpose(1, 2)
        for block in self.blocks:
            x, real = block(x, real)
        return self.head(pool(x.transpose(1, 2), real, self.pooling))
