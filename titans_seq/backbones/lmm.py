"""LMM: the neural memory alone as the sequence mixer."""
from __future__ import annotations

from .common import build_memory
from .config import TitansConfig


def lmm_mixer(cfg: TitansConfig):
    return build_memory(cfg)
