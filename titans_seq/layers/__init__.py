"""Attention, feed-forward and gating layers shared by the backbones."""
from .attention import Attention, KVCache
from .gate import NormalizedGate
from .mlp import SwiGLU, swiglu_hidden

__all__ = ["Attention", "KVCache", "NormalizedGate", "SwiGLU", "swiglu_hidden"]
