"""Tokenisers: bytes, SentencePiece and tokenizers files, BPE training, bytes per token, unloadable files."""
import numpy as np
import pytest

from titans_seq.errors import UserError
from titans_seq.tasks.lm.tokenizers import ByteTokenizer, load_tokenizer, train_bpe

TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. Ünïcödé! " * 40


def test_byte_tokenizer_round_trips_and_counts_bytes():
    tokenizer = load_tokenizer("byte")
    ids = tokenizer.encode("héllo")
    assert ids == list("héllo".encode()) and tokenizer.decode([*ids, tokenizer.eos_id]) == "héllo"
    assert tokenizer.token_bytes()[ids].sum() == 6 and tokenizer.token_bytes()[tokenizer.eos_id] == 0


def test_trained_bpe_round_trips_and_counts_bytes_exactly(tmp_path):
    path = tmp_path / "tok.json"
    trained = train_bpe([TEXT], vocab_size=300, out=path)
    tokenizer = load_tokenizer(str(path))
    assert tokenizer.vocab_size == trained.vocab_size <= 300
    ids = tokenizer.encode(TEXT)
    assert len(ids) < len(TEXT.encode()) and tokenizer.decode(ids) == TEXT
    assert tokenizer.token_bytes()[ids].sum() == len(TEXT.encode())
    assert tokenizer.token_bytes()[tokenizer.eos_id] == 0


def test_sentencepiece_model_loads(tmp_path):
    sentencepiece = pytest.importorskip("sentencepiece")
    (tmp_path / "corpus.txt").write_text(TEXT.replace(". ", ".\n"))
    sentencepiece.SentencePieceTrainer.train(input=str(tmp_path / "corpus.txt"), model_prefix=str(tmp_path / "sp"),
                                             vocab_size=295, byte_fallback=True, minloglevel=2)
    tokenizer = load_tokenizer(str(tmp_path / "sp.model"))
    ids = tokenizer.encode("to be or not")
    assert tokenizer.decode([*ids, tokenizer.eos_id]) == "to be or not"
    sizes = tokenizer.token_bytes()
    assert sizes[tokenizer.eos_id] == 0 and np.all(sizes >= 0)
    assert sizes[ids].sum() == len(" to be or not")            # '▁' counts as the space it stands for


@pytest.mark.parametrize("name,content", [("bad.json", "{not json"), ("bad.model", "not a model"),
                                          ("empty.json", "")])
def test_a_tokenizer_file_that_does_not_load_is_a_user_error(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=f"tokenizer .*{name}"):
        load_tokenizer(str(tmp_path / name))


def test_a_missing_tokenizer_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_tokenizer(str(tmp_path / "nope.json"))


def test_byte_tokenizer_needs_no_file():
    assert isinstance(load_tokenizer("byte"), ByteTokenizer)
