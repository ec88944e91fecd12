"""Causal multi-head attention with persistent memory tokens, RoPE and an optional sliding window.

Persistent tokens are learnable rows passed through the key/value projections without rotation:
every query sees them, whatever the window. With a window w, token i sees tokens (i - w, i];
the sequence is cut into blocks of w queries that each attend to their own and the previous
block, so the cost grows as O(T * w), not O(T^2).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .rope import apply_rope


@dataclass
class KVCache:
    """Rotated keys and values of the tokens a later query may still see, and the next position."""

    k: Tensor  # (B, H, n, D)
    v: Tensor
    position: int


def with_persistent(k: Tensor, v: Tensor, mask: Tensor, persistent: tuple[Tensor, Tensor] | None):
    """Prepend persistent keys/values (1, H, Np, D) to k, v (..., H, n, D) and open them in ``mask``."""
    if persistent is None:
        return k, v, mask
    pk, pv = persistent
    if k.dim() == 5:                                           # blocked: (B, H, blocks, n, D)
        pk, pv = pk.unsqueeze(2), pv.unsqueeze(2)
    pk = pk.expand(*k.shape[:-2], -1, -1)
    pv = pv.expand(*v.shape[:-2], -1, -1)
    open_ = torch.ones(*mask.shape[:-1], pk.shape[-2], dtype=torch.bool, device=mask.device)
    return torch.cat((pk, k), -2), torch.cat((pv, v), -2), torch.cat((open_, mask), -1)


def causal_attention(q: Tensor, k: Tensor, v: Tensor, persistent=None) -> Tensor:
    """q: (B, H, T, D), the last T of the (B, H, c + T, D) keys; full causal attention."""
    T, n = q.shape[-2], k.shape[-2]
    mask = torch.ones(T, n, dtype=torch.bool, device=q.device).tril(n - T)
    k, v, mask = with_persistent(k, v, mask, persistent)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def sliding_window_attention(q: Tensor, k: Tensor, v: Tensor, window: int, persistent=None) -> Tensor:
    """Like :func:`causal_attention`, but query i sees keys (i - window, i] only, at O(T * window)."""
    B, H, T, D = q.shape
    cached = k.shape[-2] - T
    w = window
    blocks = -(-T // w)
    pad_q = blocks * w - T
    q = F.pad(q, (0, 0, 0, pad_q)).view(B, H, blocks, w, D)
    # Keys of block b are positions [cached + b*w - w, cached + b*w + w) in k's coordinates.
    k, v = (F.pad(x, (0, 0, w, pad_q)).narrow(-2, cached, (blocks + 1) * w) for x in (k, v))
    k, v = (x.unfold(-2, 2 * w, w).transpose(-1, -2) for x in (k, v))   # (B, H, blocks, 2w, D)
    r = torch.arange(w, device=q.device).view(w, 1)
    m = torch.arange(2 * w, device=q.device).view(1, 2 * w)
    start = cached - w + w * torch.arange(blocks, device=q.device).view(blocks, 1, 1)
    mask = (m > r) & (m <= r + w) & (start + m >= 0)                          # (blocks, w, 2w)
    k, v, mask = with_persistent(k, v, mask, persistent)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return y.reshape(B, H, blocks * w, D)[:, :, :T]


class Attention(nn.Module):
    """Causal attention (sliding-window when ``window`` is set) with ``n_persistent`` learnable tokens."""

    def __init__(self, d_model: int, n_heads: int, window: int | None = None, n_persistent: int = 0,
                 rope_base: float = 10000.0):
        super().__init__()
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model={d_model} must split into {n_heads} heads of an even size")
        self.n_heads, self.window, self.rope_base = n_heads, window, rope_base
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.persistent = nn.Parameter(0.02 * torch.randn(n_persistent, d_model)) if n_persistent else None

    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, -1).transpose(1, 2)

    def project(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, T, d) -> rotated queries, rotated keys and values, each (B, H, T, D)."""
        q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        return apply_rope(q, positions, self.rope_base), apply_rope(k, positions, self.rope_base), v

    def persistent_kv(self) -> tuple[Tensor, Tensor] | None:
        if self.persistent is None:
            return None
        _, k, v = self.qkv(self.persistent.unsqueeze(0)).chunk(3, dim=-1)
        return self._heads(k), self._heads(v)

    def merge(self, y: Tensor) -> Tensor:
        """(B, H, T, D) -> the output projection of the merged heads, (B, T, d)."""
        B, H, T, D = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, H * D))

    def forward(self, x: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        B, T, _ = x.shape
        start = 0 if cache is None else cache.position
        positions = torch.arange(start, start + T, device=x.device)
        q, k, v = self.project(x, positions)
        if cache is not None:
            k, v = torch.cat((cache.k, k), -2), torch.cat((cache.v, v), -2)
        if self.window is None:
            y = causal_attention(q, k, v, self.persistent_kv())
            keep = k.shape[-2]
        else:
            y = sliding_window_attention(q, k, v, self.window, self.persistent_kv())
            keep = min(self.window - 1, k.shape[-2])
        tail = slice(k.shape[-2] - keep, None)
        return self.merge(y), KVCache(k[:, :, tail], v[:, :, tail], start + T)
