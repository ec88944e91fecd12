"""Transformer++ baseline: full causal attention with RoPE (blocks add RMSNorm and SwiGLU)."""
from __future__ import annotations

from .common import build_attention
from .config import TitansConfig


def transformer_mixer(cfg: TitansConfig):
    return build_attention(cfg, window=None, n_persistent=0)
