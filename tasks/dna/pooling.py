"""Pooling a sequence's position states into one vector, over its real (non-pad) positions only."""
from __future__ import annotations

import torch
from torch import Tensor

POOLINGS = ("mean", "max", "last")


def pool(states: Tensor, real: Tensor, how: str) -> Tensor:
    """``states`` (B, T, C) and ``real`` (B, T), true at real positions (a prefix of each row), to (B, C)."""
    real = real.unsqueeze(-1)
    if how == "mean":
        return (states * real).sum(1) / real.sum(1).clamp(min=1)
    if how == "max":
        return states.masked_fill(~real, float("-inf")).amax(1)
    last = real.squeeze(-1).sum(1).clamp(min=1) - 1
    return states[torch.arange(len(states), device=states.device), last]
