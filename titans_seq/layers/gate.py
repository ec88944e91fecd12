"""The normalised non-linear gate that combines attention with the memory (MAC's and MAG's (x))."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class NormalizedGate(nn.Module):
    """o = RMSNorm_a(a) * sigmoid(RMSNorm_b(b)), each norm with its own learnable scale."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.norm_value = nn.RMSNorm(d_model, eps=eps)
        self.norm_gate = nn.RMSNorm(d_model, eps=eps)

    def forward(self, value: Tensor, gate: Tensor) -> Tensor:
        return self.norm_value(value) * torch.sigmoid(self.norm_gate(gate))
