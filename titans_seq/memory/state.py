"""The state a neural memory carries from one call to the next, and how a call's tokens fall into chunks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class ChunkLayout:
    """How ``length`` tokens read from ``position`` fall into chunks aligned to multiples of
    ``chunk_size`` from position 0; both backends take their chunk boundaries from here."""

    position: int
    length: int
    chunk_size: int

    @property
    def offset(self) -> int:
        """Tokens of the current chunk seen before this call (0 on a chunk boundary)."""
        return self.position % self.chunk_size

    @property
    def resumes(self) -> bool:
        """Whether the first chunk was begun by an earlier call (its gradients are at its chunk weights)."""
        return self.offset != 0

    @property
    def first(self) -> int:
        """Tokens of this call in the first chunk it touches."""
        return min(self.length, self.chunk_size - self.offset)

    @property
    def unfinished(self) -> int:
        """Tokens of the chunk this call leaves unfinished (0 when it ends on a chunk boundary)."""
        return (self.position + self.length) % self.chunk_size

    @property
    def n_chunks(self) -> int:
        """Chunks this call touches, the first and the last possibly partial."""
        return 1 + -(-(self.length - self.first) // self.chunk_size)

    def pieces(self) -> list[tuple[int, int]]:
        """(tokens, tokens per chunk) of the rest of a resumed chunk, the whole chunks and an unfinished
        last chunk, the empty ones left out."""
        head = self.first if self.resumes else 0
        whole = (self.length - head) // self.chunk_size
        tail = self.length - head - whole * self.chunk_size
        pieces = ((head, head), (whole * self.chunk_size, self.chunk_size), (tail, tail))
        return [(size, n) for size, n in pieces if size]

    def next_chunk_weights(self, final: list[Tensor], last_entering: list[Tensor],
                           chunk_weights: list[Tensor] | None) -> list[Tensor]:
        """The weights the chunk left unfinished takes its gradients at: ``final`` on a boundary, the
        resumed chunk's ``chunk_weights`` if it is still unfinished, else the weights entering the last chunk."""
        if self.unfinished == 0:
            return final
        if self.resumes and self.n_chunks == 1:
            return chunk_weights
        return last_entering


@dataclass
class MemoryState:
    """Everything needed to continue a sequence exactly where a call stopped.

    Each list holds one tensor per memory layer, shaped (B, H, D_{l-1}, D_l), kept in float32
    (float64 when the inputs are float64).
    """

    weights: list[Tensor]
    """W_t: the memory after the last token seen."""
    surprise: list[Tensor]
    """S_t: the accumulated surprise (the momentum of the memory's gradients) after the last token seen."""
    chunk_weights: list[Tensor]
    """The weights entering the unfinished chunk: its remaining tokens take their gradients here."""
    position: int
    """Tokens seen so far; chunks are aligned to multiples of ``chunk_size`` from position 0."""
    chunk_size: int

    @staticmethod
    def layout(state: MemoryState | None, length: int, chunk_size: int) -> ChunkLayout:
        """The chunks of a call of ``length`` tokens continuing ``state`` (None: from position 0)."""
        return ChunkLayout(0 if state is None else state.position, length, chunk_size)

    @staticmethod
    def deferred(compute: Callable[[], tuple[list[Tensor], list[Tensor], list[Tensor]]], position: int,
                 chunk_size: int) -> MemoryState:
        """A state whose tensors ``compute()`` gives (weights, surprise, chunk weights) when first
        read: a caller that drops the state, as training without a carried state does, never pays
        for the update after the last chunk."""
        state = object.__new__(MemoryState)
        state.position, state.chunk_size, state._compute = position, chunk_size, compute
        return state

    def __getattr__(self, name: str):   # reached only for the tensors of a deferred state not yet computed
        compute = self.__dict__.get("_compute")
        if compute is None or name not in ("weights", "surprise", "chunk_weights"):
            raise AttributeError(name)
        del self._compute
        self.weights, self.surprise, self.chunk_weights = compute()
        return getattr(self, name)

    def detach(self) -> MemoryState:
        """The same state cut from the autograd graph (truncated back-propagation through time)."""
        cut = lambda ts: [t.detach() for t in ts]  # noqa: E731
        return MemoryState(cut(self.weights), cut(self.surprise), cut(self.chunk_weights),
                           self.position, self.chunk_size)

    def to(self, device: torch.device | str) -> MemoryState:
        move = lambda ts: [t.to(device) for t in ts]  # noqa: E731
        return MemoryState(move(self.weights), move(self.surprise), move(self.chunk_weights),
                           self.position, self.chunk_size)

