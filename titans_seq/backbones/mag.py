"""MAG (Eqs. 26-28): sliding-window attention and the memory side by side, joined by a gate."""
from __future__ import annotations

from torch import Tensor, nn

from titans_seq.layers import NormalizedGate

from .common import build_attention, build_memory
from .config import TitansConfig


class MAGMixer(nn.Module):
    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.attention = build_attention(cfg, window=cfg.window, n_persistent=cfg.n_persistent)
        self.memory = build_memory(cfg)
        self.gate = NormalizedGate(cfg.d_model, cfg.norm_eps)

    def forward(self, x: Tensor, state: tuple | None = None) -> tuple[Tensor, tuple]:
        attention_cache, memory_state = state or (None, None)
        y, attention_cache = self.attention(x, attention_cache)
        m, memory_state = self.memory(x, memory_state)
        return self.gate(y, m), (attention_cache, memory_state)
