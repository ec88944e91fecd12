"""The SwiGLU feed-forward layer."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def swiglu_hidden(d_model: int) -> int:
    """Llama's choice: 8/3 d_model (the parameter count of a 4x GELU MLP), rounded up to 64."""
    return -(-int(8 * d_model / 3) // 64) * 64


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)
