"""The state a neural memory carries from one call to the next."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class MemoryState:
    """Everything needed to continue a sequence exactly where a call stopped.

    Each list holds one tensor per memory layer, shaped (B, H, D_{l-1}, D_l), kept in float32
    (float64 when the inputs are float64).
    """

    weights: list[Tensor]
    """W_t: the memory after the last token seen."""
    momentum: list[Tensor]
    """S_t: the accumulated surprise after the last token seen."""
    chunk_weights: list[Tensor]
    """The weights entering the unfinished chunk: its remaining tokens take their gradients here."""
    position: int
    """Tokens seen so far; chunks are aligned to multiples of ``chunk_size`` from position 0."""
    chunk_size: int

    @property
    def offset(self) -> int:
        """Tokens already seen inside the current chunk (0 on a chunk boundary)."""
        return self.position % self.chunk_size

    def detach(self) -> MemoryState:
        """The same state cut from the autograd graph (truncated back-propagation through time)."""
        cut = lambda ts: [t.detach() for t in ts]  # noqa: E731
        return MemoryState(cut(self.weights), cut(self.momentum), cut(self.chunk_weights),
                           self.position, self.chunk_size)

    def to(self, device: torch.device | str) -> MemoryState:
        move = lambda ts: [t.to(device) for t in ts]  # noqa: E731
        return MemoryState(move(self.weights), move(self.momentum), move(self.chunk_weights),
                           self.position, self.chunk_size)
