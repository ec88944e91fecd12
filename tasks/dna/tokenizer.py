"""DNA tokenisation: one token per base (k = 1) or per non-overlapping k-mer (k > 1).

Soft-masked (lowercase) bases are read as their uppercase base; the IUPAC ambiguity codes
(R, Y, S, W, K, M, B, D, H, V) become N; any other character stops with the file, the record
and the position, because a silently dropped base shifts everything after it.

The vocabulary is the special tokens, then every A/C/G/T k-mer in lexicographic order, then one
N token for any k-mer holding an N. A sequence is cut into k-mers from its first base (stride
k); a trailing partial k-mer is padded with N, so it becomes the N token. For k = 1 this is the
character vocabulary <pad> <cls> <eos> <mask> A C G T N.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from titans_seq.errors import UserError

BASES = "ACGTN"
SPECIALS = ("<pad>", "<cls>", "<eos>", "<mask>")
PAD, CLS, EOS, MASK = range(len(SPECIALS))
MAX_K = 8                      # 4**8 k-mers; beyond that the embedding table outgrows any data set
N_CODE = BASES.index("N")
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
    """Maps DNA to token ids: the specials, the 4**k A/C/G/T k-mers, then the N token."""

    k: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.k <= MAX_K:
            raise UserError(f"task.k (the k-mer size) must be between 1 and {MAX_K}; got {self.k}")

    @property
    def vocab(self) -> list[str]:
        return [*SPECIALS, *("".join(p) for p in itertools.product(BASES[:N_CODE], repeat=self.k)), "N" * self.k]

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + N_CODE ** self.k + 1

    @property
    def n_token(self) -> int:
        """The id of a k-mer holding an N (or cut short by the sequence's end)."""
        return self.vocab_size - 1

    def token_count(self, bases: int) -> int:
        """How many tokens a sequence of ``bases`` bases becomes."""
        return -(-bases // self.k)

    def encode(self, sequence: str, where: str = "sequence") -> Tensor:
        """Token ids of a sequence: one per k bases, the last k-mer padded with N when it is short."""
        raw = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
        codes = _BASE_CODES[raw]
        if (codes < 0).any():
            normalise(sequence, where)             # raises, naming the first bad character
        codes = np.pad(codes.astype(np.int64), (0, -len(codes) % self.k), constant_values=N_CODE)
        kmers = codes.reshape(-1, self.k)
        ids = kmers @ (N_CODE ** np.arange(self.k - 1, -1, -1))
        ids[(kmers == N_CODE).any(axis=1)] = N_CODE ** self.k
        return torch.from_numpy(ids + len(SPECIALS))

    def decode(self, ids: Tensor) -> str:
        """The bases of token ids, specials left out; the N token reads as k Ns."""
        vocab = self.vocab
        return "".join(vocab[i] for i in ids.tolist() if i >= len(SPECIALS))


@lru_cache(maxsize=None)
def _complement_table(k: int) -> Tensor:
    """Token id -> the id of its reverse-complemented k-mer; specials map to themselves."""
    vocab = DNATokenizer(k).vocab
    index = {kmer: i for i, kmer in enumerate(vocab)}
    return torch.tensor([i if i < len(SPECIALS) else index[kmer.translate(COMPLEMENT)[::-1]]
                         for i, kmer in enumerate(vocab)])


def reverse_complement_tokens(ids: Tensor, k: int = 1) -> Tensor:
    """The token ids of the reverse complement of right-padded rows of ids on the last axis.

    Exact (equal to encoding the reverse-complemented sequence) when every row's sequence length
    is a multiple of k, as it always is for k = 1; otherwise the k-mer boundaries of the reverse
    complement differ, and the reverse-complemented strings must be encoded instead.
    """
    flipped = _complement_table(k).to(ids.device)[ids].flip(-1)
    # padding stays at the end: move every pad of a right-padded row back behind the tokens
    real = ids != PAD
    lengths = real.sum(-1, keepdim=True)
    positions = torch.arange(ids.shape[-1], device=ids.device).expand_as(ids)
    shift = ids.shape[-1] - lengths
    return torch.where(positions < lengths, flipped.gather(-1, (positions + shift).clamp(max=ids.shape[-1] - 1)),
                       torch.full_like(ids, PAD))
