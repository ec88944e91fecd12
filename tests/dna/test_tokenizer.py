"""DNA tokenisation: characters and non-overlapping k-mers, round trips, and the token-level reverse complement."""
import random

import pytest
import torch
from Bio.Seq import Seq

from titans_seq.errors import UserError
from titans_seq.tasks.dna.tokenizer import PAD, DNATokenizer, reverse_complement_tokens


def random_dna(rng: random.Random, length: int, alphabet: str = "ACGT") -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def test_character_tokens_soft_masking_and_ambiguity_codes():
    tok = DNATokenizer()
    assert tok.encode("ACGTN").tolist() == [4, 5, 6, 7, 8]          # the ids of the character vocabulary
    assert tok.decode(tok.encode("ACGTN")) == "ACGTN"
    assert torch.equal(tok.encode("acgtRY"), tok.encode("ACGTNN"))
    assert tok.vocab_size == 9 and PAD == 0


def test_invalid_base_names_where_it_is():
    with pytest.raises(UserError, match=r"seqs.fa record 3: invalid base 'X' at position 5"):
        DNATokenizer(k=3).encode("ACGTXA", where="seqs.fa record 3")


@pytest.mark.parametrize("k", [0, 9])
def test_kmer_size_out_of_range(k):
    with pytest.raises(UserError, match="task.k"):
        DNATokenizer(k)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_kmer_vocabulary(k):
    tok = DNATokenizer(k)
    assert tok.vocab_size == 4 + 4 ** k + 1 == len(tok.vocab) == len(set(tok.vocab))
    assert tok.vocab[tok.n_token] == "N" * k


def test_kmers_do_not_overlap_and_a_short_last_kmer_is_the_n_token():
    tok = DNATokenizer(k=3)
    ids = tok.encode("ACGTAC")
    assert [tok.vocab[i] for i in ids] == ["ACG", "TAC"]
    assert tok.encode("ACGTA").tolist() == [ids[0].item(), tok.n_token]
    assert tok.encode("ACgtaN").tolist() == [ids[0].item(), tok.n_token]     # soft-masked; any N makes the N token
    assert tok.encode("ACR").tolist() == [tok.n_token]                       # an ambiguity code reads as N
    assert [tok.token_count(n) for n in (0, 1, 3, 4, 6)] == [0, 1, 1, 2, 2]


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_round_trips(k):
    tok, rng = DNATokenizer(k), random.Random(k)
    for length in range(0, 4 * k + 3):
        seq = random_dna(rng, length)
        full = length - length % k
        padded = seq[:full] + ("N" * k if full < length else "")
        assert tok.decode(tok.encode(seq)) == padded
        assert len(tok.encode(seq)) == tok.token_count(length)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_reverse_complement_tokens_equal_encoding_the_biopython_reverse_complement(k):
    """Exact for lengths that are multiples of k, N-holding k-mers included; padding stays last."""
    tok, rng = DNATokenizer(k), random.Random(10 + k)
    rows = [random_dna(rng, k * rng.randrange(1, 12), "ACGTACGTN") for _ in range(8)]
    width = max(tok.token_count(len(s)) for s in rows) + 2
    ids = torch.full((len(rows), width), PAD)
    for i, s in enumerate(rows):
        ids[i, :tok.token_count(len(s))] = tok.encode(s)
    flipped = reverse_complement_tokens(ids, k)
    for i, s in enumerate(rows):
        expected = tok.encode(str(Seq(s).reverse_complement()))
        assert torch.equal(flipped[i, :len(expected)], expected)
        assert (flipped[i, len(expected):] == PAD).all()


def test_reverse_complement_tokens_cannot_be_exact_off_the_kmer_grid():
    """ACGTA -> [ACG, NNN]; its reverse complement TACGT -> [TAC, NNN]: other k-mers, not a token permutation,
    which is why the classification task encodes reverse-complemented strings for such data."""
    tok = DNATokenizer(k=3)
    seq = "ACGTA"
    by_tokens = reverse_complement_tokens(tok.encode(seq).unsqueeze(0), 3)[0]
    assert tok.decode(by_tokens) == "NNNCGT"
    assert tok.decode(tok.encode(str(Seq(seq).reverse_complement()))) == "TACNNN"
