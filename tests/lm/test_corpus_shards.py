"""Corpora, token shards and packing: documents keep their boundaries, shards round-trip, empty corpora stop."""
import json

import numpy as np
import pytest

from titans_seq.errors import UserError
from titans_seq.tasks.lm.corpus import Corpus
from titans_seq.tasks.lm.shards import INDEX, PackedSequences, TokenShards, cached_shards, write_shards
from titans_seq.tasks.lm.tokenizers import ByteTokenizer

DOCUMENTS = ["first document.", "the second, a little longer, document", "héllo wörld", "x"]


def test_shards_round_trip_across_shard_files(tmp_path):
    tokenizer = ByteTokenizer()
    shards = write_shards(DOCUMENTS, tokenizer, tmp_path / "s", shard_tokens=7)
    expected = np.concatenate([[*tokenizer.encode(d), tokenizer.eos_id] for d in DOCUMENTS])
    assert len(shards) == len(expected)
    assert len(shards.shards) == -(-len(expected) // 7)          # several files, the last one partial
    assert np.array_equal(shards.read(0, len(shards)), expected)
    assert np.array_equal(shards.read(5, 23), expected[5:23])    # a slice spanning three files
    index = json.loads((tmp_path / "s" / INDEX).read_text())
    assert index["dtype"] == "uint16" and index["documents"] == 4
    assert index["text_bytes"] == sum(len(d.encode()) for d in DOCUMENTS)
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".")]   # no temporary file left
    reopened = TokenShards(tmp_path / "s")
    assert np.array_equal(reopened.read(0, len(reopened)), expected)


def test_large_vocabularies_use_uint32(tmp_path):
    class Wide(ByteTokenizer):
        vocab_size, eos_id = 70_000, 69_999
    shards = write_shards(["ab"], Wide(), tmp_path / "s")
    assert shards.index.dtype == "uint32"
    assert shards.read(0, 3).tolist() == [97, 98, 69_999]


def test_packing_keeps_document_boundaries(tmp_path):
    tokenizer = ByteTokenizer()
    data = PackedSequences(write_shards(DOCUMENTS, tokenizer, tmp_path / "s"), seq_len=8)
    for i in range(len(data)):                                 # targets are the inputs shifted by one
        inputs, targets = data[i]
        assert inputs.shape == targets.shape == (8,) and inputs[1:].tolist() == targets[:-1].tolist()
    stream = [t for i in range(len(data)) for t in data[i][0].tolist()] + [data[len(data) - 1][1][-1].item()]
    expected = [t for d in DOCUMENTS for t in [*tokenizer.encode(d), tokenizer.eos_id]]
    assert stream == expected[:len(stream)]                    # each document whole, then one end-of-document
    assert len(expected) - 8 < len(stream)                     # only the last partial sequence is dropped


def test_corpus_reads_folders_and_jsonl(tmp_path):
    (tmp_path / "b.txt").write_text("plain text")
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n\n{"text": ""}\n{"text": "two"}\n')
    (tmp_path / "ignored.csv").write_text("x,y\n")
    assert list(Corpus(str(tmp_path)).documents()) == ["one", "two", "plain text"]
    assert list(Corpus(str(tmp_path / "a.jsonl")).documents()) == ["one", "two"]


@pytest.mark.parametrize("content,message", [
    ("", "empty"), ("   \n\n", "empty"),
])
def test_an_empty_corpus_is_a_user_error(tmp_path, content, message):
    (tmp_path / "c.txt").write_text(content)
    with pytest.raises(UserError, match=message):
        cached_shards(Corpus(str(tmp_path / "c.txt")), ByteTokenizer(), tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())


def test_bad_corpora_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        Corpus(str(tmp_path / "nope")).files()
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match="holds no"):
        Corpus(str(tmp_path / "d")).files()
    (tmp_path / "x.jsonl").write_text('{"body": "a"}\n')
    with pytest.raises(UserError, match="no 'text' field"):
        list(Corpus(str(tmp_path / "x.jsonl")).documents())
    (tmp_path / "y.jsonl").write_bytes(b'{"text": "a"}\n{"text": "\xe9t\xe9"}\n')    # Latin-1, not UTF-8
    with pytest.raises(UserError, match=r"y.jsonl line 2: not UTF-8 text \(byte 0xe9 at column 11\)"):
        list(Corpus(str(tmp_path / "y.jsonl")).documents())


def test_shards_are_cached_until_the_corpus_changes(tmp_path):
    (tmp_path / "c.txt").write_text("some text")
    first = cached_shards(Corpus(str(tmp_path / "c.txt")), ByteTokenizer(), tmp_path / "cache")
    again = cached_shards(Corpus(str(tmp_path / "c.txt")), ByteTokenizer(), tmp_path / "cache")
    assert again.directory == first.directory
    (tmp_path / "c.txt").write_text("other, longer text")
    changed = cached_shards(Corpus(str(tmp_path / "c.txt")), ByteTokenizer(), tmp_path / "cache")
    assert changed.directory != first.directory and len(changed) == len("other, longer text") + 1


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-3])


@pytest.mark.parametrize("damage", [
    lambda d: (d / INDEX).write_bytes(b'{"dtype": "uint16", "vocab'),               # cut mid-write
    lambda d: (d / INDEX).write_bytes(b"\xff\x00"),
    lambda d: (d / INDEX).write_text('{"dtype": "float99", "vocab_size": 1, "eos_id": 0, "source": ""}'),
    lambda d: (d / INDEX).write_text("[1, 2]"),
    lambda d: _truncate(d / "shard-00000.bin"),
    lambda d: (d / "shard-00000.bin").unlink(),
], ids=["index-cut", "index-binary", "index-dtype", "index-list", "shard-cut", "shard-missing"])
def test_a_damaged_shard_cache_is_rebuilt_and_a_damaged_folder_is_one_line(tmp_path, damage):
    (tmp_path / "c.txt").write_text("some text to tokenise")
    corpus, tokenizer = Corpus(str(tmp_path / "c.txt")), ByteTokenizer()
    first = cached_shards(corpus, tokenizer, tmp_path / "cache")
    expected = first.read(0, len(first)).tolist()
    del first
    directory = next((tmp_path / "cache").iterdir())
    damage(directory)
    with pytest.raises(UserError, match="damaged") as error:
        TokenShards(directory)
    assert "\n" not in str(error.value)
    with pytest.warns(UserWarning, match="tokenising the corpus again"):
        rebuilt = cached_shards(corpus, tokenizer, tmp_path / "cache")
    assert rebuilt.directory == directory and rebuilt.read(0, len(rebuilt)).tolist() == expected
