"""A budget on how far one chunk may move the memory along a key: strong writes without overshoot.

Inside a chunk every gradient is taken at the chunk's starting weights, so tokens whose keys
coincide all push the memory the same way, and momentum re-applies each of those pushes about
1 / (1 - eta) times before a fresh gradient corrects it. For unit keys, s coinciding writes move
the memory sum(theta / (1 - eta)) along that key; a sum past about 1 overshoots the value, and
past 2 it diverges. The default cap, theta <= 1 / chunk_size, bounds the worst case by bounding
every single write. The budget bounds the sum instead. Token t's step is scaled by
min(1, budget / E_t), with

    E_t = sum over tokens s <= t of t's chunk of theta_s / (1 - eta_s) (k_s . k_t)^2,

the steps already taken in the chunk along k_t (its own included), counted with what momentum
will add to them. Distinct keys leave theta as it is; s coinciding keys of equal counted step c
sum to about budget (1 + ln(s c / budget)) rather than s c. E_t reads only earlier tokens, so the memory
stays causal; the keys and counted steps of an unfinished chunk are carried in the layer's state,
so streaming stays exact. The chunks are the operator's (``ChunkLayout``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .state import ChunkLayout


def counted_steps(lr: Tensor, momentum: Tensor) -> Tensor:
    """theta / (1 - eta): a step with the re-applications momentum will add to it."""
    return lr / (1 - momentum).clamp_min(1e-6)


def spent_along_keys(steps: Tensor, k: Tensor, chunk_size: int) -> Tensor:
    """E_t = sum over tokens s <= t of t's chunk of steps_s (k_s . k_t)^2, for steps (B, T, H) and keys
    (B, T, H, D) whose first token starts a chunk; (B, T, H)."""
    length = k.shape[1]
    pad = (-length) % chunk_size
    chunks = lambda x: F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad)).unflatten(1, (-1, chunk_size))  # noqa: E731
    k_c, steps_c = chunks(k), chunks(steps)                                 # (B, C, n, H, D), (B, C, n, H)
    overlap = torch.einsum("bcthd,bcshd->bchts", k_c, k_c).square()
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=k.device).tril()
    spent = (overlap.masked_fill(~causal, 0.0) @ steps_c.permute(0, 1, 3, 2).unsqueeze(-1)).squeeze(-1)
    return spent.permute(0, 1, 3, 2).flatten(1, 2)[:, :length]


def budgeted_lr(lr: Tensor, momentum: Tensor, k: Tensor, budget: float, chunk_size: int, position: int,
                carried: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """lr (B, T, H) scaled by min(1, budget / E_t) for momentum (B, T, H) and unit keys k (B, T, H, D)
    read from ``position``.

    ``carried`` holds the keys (B, P, H, D) and counted steps (B, P, H) of the P = position % chunk_size
    tokens of the current chunk seen before; returns the same for the chunk left unfinished.
    """
    layout = ChunkLayout(position, lr.shape[1], chunk_size)
    offset = layout.offset
    counted = counted_steps(lr, momentum)
    if offset:
        assert carried is not None and carried[0].shape[1] == offset, "a resumed chunk needs its carried keys"
        k, counted = torch.cat((carried[0], k), dim=1), torch.cat((carried[1], counted), dim=1)
    scale = (budget / spent_along_keys(counted, k, chunk_size).clamp_min(1e-12)).clamp(max=1.0)
    left = layout.unfinished
    return lr * scale[:, offset:], (k[:, k.shape[1] - left:], counted[:, counted.shape[1] - left:])
