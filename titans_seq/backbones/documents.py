"""Packed documents: rows that hold several documents, each run exactly as if it were alone.

Language-model pretraining packs documents back to back into fixed-length rows. Nothing in a
Titans block may then look across a boundary: attention, the short convolutions, MAC's segments
and, above all, the memory, which must restart each document from its learnt initial weights with
zero surprise and its chunks aligned to the document's first token. Every mixer is exactly
causal, so the simplest exact way is also the one used here: each document is cut out of its row
and run alone, and the outputs are put back in place. Documents of similar length are batched
together (lengths rounded up to a multiple of an eighth of the row), so padding adds at most an
eighth of a row per document, while attention costs less than over the packed row (it is
quadratic in length).

A carried state belongs to one sequence position for the whole batch, so a state crosses a
boundary only with batch size 1 (streaming one packed stream): its documents then run one after
another, the first continuing the state unless it starts a new document.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Forward = Callable[[Tensor, Any], tuple[Tensor, Any]]   # (x, state) -> (y, state): the plain backbone


@dataclass(frozen=True)
class Documents:
    """Where the documents of a packed batch start: ``starts`` (B, T) is True at a document's first
    token. A row's first token continues the sequence of a carried state unless it is marked."""

    starts: Tensor

    @staticmethod
    def after(ids: Tensor, end_token: int, previous: Tensor | None = None) -> Documents:
        """The documents of token rows (B, T) in which ``end_token`` ends each document; ``previous``
        (B,) is the token before each row, when the rows continue a stream."""
        starts = torch.zeros_like(ids, dtype=torch.bool)
        starts[:, 1:] = ids[:, :-1] == end_token
        if previous is not None:
            starts[:, 0] = previous == end_token
        return Documents(starts)

    def splits(self, x: Tensor, with_state: bool) -> bool:
        """Whether any row of x (B, T, D) holds a boundary (at its first token too, when a state is carried)."""
        if tuple(self.starts.shape) != tuple(x.shape[:2]):
            raise ValueError(f"documents.starts must be (B, T) = {tuple(x.shape[:2])}; got {tuple(self.starts.shape)}")
        return bool(self.starts[:, 1:].any()) or (with_state and bool(self.starts[:, 0].any()))

    def spans(self) -> list[tuple[int, int, int]]:
        """(row, start, end) of every document piece, row by row, in order."""
        B, T = self.starts.shape
        marked = self.starts.clone()
        marked[:, 0] = True
        spans = []
        for row, start in marked.nonzero().tolist():
            if spans and spans[-1][0] == row:
                spans[-1] = (row, spans[-1][1], start)
            spans.append((row, start, T))
        return spans


def _bucket(length: int, row_length: int) -> int:
    """The padded length a document runs at: the next multiple of an eighth of the row (at least 16)."""
    step = max(16, row_length // 8)
    return min(row_length, -(-length // step) * step)


def run_documents(forward: Forward, x: Tensor, documents: Documents, state: Any,
                  return_state: bool) -> tuple[Tensor, Any]:
    """``forward`` over each document of x (B, T, D) alone; the state after the last document."""
    spans = documents.spans()
    if state is not None or return_state:
        if x.shape[0] != 1:
            raise ValueError("a state carried across document boundaries needs batch size 1: the rows' "
                             "documents end at different positions (pass no state, or one row)")
        outputs = []
        for i, (_, start, end) in enumerate(spans):
            continues = i == 0 and not bool(documents.starts[0, 0])
            y, state = forward(x[:, start:end], state if continues else None)
            outputs.append(y)
        return torch.cat(outputs, dim=1), state

    T = x.shape[1]
    buckets: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for span in spans:
        buckets[_bucket(span[2] - span[1], T)].append(span)
    pieces: dict[tuple[int, int], Tensor] = {}
    for length, members in buckets.items():
        batch = torch.stack([F.pad(x[row, start:end], (0, 0, 0, length - (end - start)))
                             for row, start, end in members])
        y, _ = forward(batch, None)
        for (row, start, end), y_doc in zip(members, y):
            pieces[row, start] = y_doc[:end - start]
    rows = [torch.cat([pieces[row, start] for r, start, _ in spans if r == row]) for row in range(x.shape[0])]
    return torch.stack(rows), None
