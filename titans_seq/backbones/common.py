"""Builders shared by the variants: the memory and attention layers as a config describes them."""
from __future__ import annotations

from titans_seq.layers import Attention
from titans_seq.memory import NeuralMemory

from .config import TitansConfig


def build_memory(cfg: TitansConfig) -> NeuralMemory:
    return NeuralMemory(cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.memory_depth, cfg.memory_expansion,
                        cfg.chunk_size, cfg.conv_kernel, cfg.memory_lr_max, cfg.memory_activation,
                        cfg.memory_backend, cfg.norm_eps, cfg.memory_damped_momentum, cfg.memory_chunk_budget,
                        cfg.memory_decay_target, cfg.memory_bound_by_input_norm)


def build_attention(cfg: TitansConfig, window: int | None, n_persistent: int) -> Attention:
    return Attention(cfg.d_model, cfg.n_heads, window, n_persistent, cfg.rope_base)
