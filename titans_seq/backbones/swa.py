"""Sliding-window attention baseline: Transformer++ with attention limited to the last `window` tokens."""
from __future__ import annotations

from .common import build_attention
from .config import TitansConfig


def swa_mixer(cfg: TitansConfig):
    return build_attention(cfg, window=cfg.window, n_persistent=0)
