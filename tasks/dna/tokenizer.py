"""DNA tokenisation: characters (A, C, G, T, N) by default, overlapping k-mers as an option.

Soft-masked (lowercase) bases are read as their uppercase base; the IUPAC ambiguity codes
(R, Y, S, W, K, M, B, D, H, V) become N; any other character stops with the file, the record
and the position, because a silently dropped base shifts everything after it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from titans_seq.engine.errors import UserError

BASES = "ACGTN"
SPECIALS = ("<pad>", "<cls>", "<eos>", "<mask>")
PAD, CLS, EOS, MASK = range(len(SPECIALS))
IUPAC_AMBIGUOUS = "RYSWKMBDHV"
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
_NORMALISE = str.maketrans({**{c: c.upper() for c in "acgtn"},
                            **{c: "N" for c in IUPAC_AMBIGUOUS + IUPAC_AMBIGUOUS.lower()}})
_BASE_CODES = np.full(256, -1, dtype=np.int16)   # byte -> index in BASES, -1 for anything else
for _char in BASES + BASES.lower() + IUPAC_AMBIGUOUS + IUPAC_AMBIGUOUS.lower():
    _BASE_CODES[ord(_char)] = BASES.index(_char.translate(_NORMALISE))


def normalise(sequence: str, where: str = "sequence") -> str:
    """Uppercase A/C/G/T/N with ambiguity codes as N; UserError at the first other character."""
    clean = sequence.translate(_NORMALISE)
    bad = next((i for i, c in enumerate(clean) if c not in BASES), None)
    if bad is not None:
        raise UserError(f"{where}: invalid base {sequence[bad]!r} at position {bad + 1}")
    return clean


@dataclass(frozen=True)
class DNATokenizer:
    """Maps normalised DNA to token ids: the specials first, then every k-mer over A, C, G, T, N."""

    k: int = 1

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UserError(f"k-mer size must be >= 1; got {self.k}")

    @property
    def vocab(self) -> list[str]:
        return [*SPECIALS, *("".join(p) for p in itertools.product(BASES, repeat=self.k))]

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(BASES) ** self.k

    def encode(self, sequence: str, where: str = "sequence") -> Tensor:
        """Token ids of a sequence: one per base (k = 1), or one per overlapping k-mer."""
        raw = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
        codes = _BASE_CODES[raw]
        if (codes < 0).any():
            normalise(sequence, where)             # raises, naming the first bad character
        codes = torch.from_numpy(codes.astype(np.int64))
        if self.k > 1:
            if len(codes) < self.k:
                raise UserError(f"{where}: {len(codes)} bases, fewer than the k-mer size {self.k}")
            windows = codes.unfold(0, self.k, 1)
            codes = (windows * len(BASES) ** torch.arange(self.k - 1, -1, -1)).sum(-1)
        return codes + len(SPECIALS)

    def decode(self, ids: Tensor) -> str:
        vocab = self.vocab
        return " ".join(vocab[i] for i in ids.tolist()) if self.k > 1 else "".join(
            vocab[i] for i in ids.tolist() if i >= len(SPECIALS))


def reverse_complement_tokens(ids: Tensor, k: int = 1) -> Tensor:
    """The token ids of the reverse complement, for ids of character tokens (k = 1) on the last axis."""
    if k != 1:
        raise UserError("reverse-complement augmentation needs character tokens (k = 1)")
    complement = torch.arange(len(SPECIALS) + len(BASES))
    offset = len(SPECIALS)
    for base, partner in zip(BASES, BASES.translate(COMPLEMENT)):
        complement[offset + BASES.index(base)] = offset + BASES.index(partner)
    flipped = complement[ids].flip(-1)
    # padding stays at the end: move every pad of a right-padded row back behind the bases
    real = ids != PAD
    lengths = real.sum(-1, keepdim=True)
    positions = torch.arange(ids.shape[-1], device=ids.device).expand_as(ids)
    shift = ids.shape[-1] - lengths
    return torch.where(positions < lengths, flipped.gather(-1, (positions + shift).clamp(max=ids.shape[-1] - 1)),
                       torch.full_like(ids, PAD))
