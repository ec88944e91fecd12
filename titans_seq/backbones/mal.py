"""MAL (Eqs. 29-31): the memory as a layer, followed by sliding-window attention."""
from __future__ import annotations

from torch import Tensor, nn

from .common import build_attention, build_memory
from .config import TitansConfig


class MALMixer(nn.Module):
    def __init__(self, cfg: TitansConfig):
        super().__init__()
        self.memory = build_memory(cfg)
        self.attention = build_attention(cfg, window=cfg.window, n_persistent=cfg.n_persistent)

    def forward(self, x: Tensor, state: tuple | None = None) -> tuple[Tensor, tuple]:
        memory_state, attention_cache = state or (None, None)
        m, memory_state = self.memory(x, memory_state)
        y, attention_cache = self.attention(m, attention_cache)
        return y, (memory_state, attention_cache)
