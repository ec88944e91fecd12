"""S-NIAH: exactly one needle at the requested depth, the prompt exactly the requested length; the scorer."""
import random

import pytest

from titans_seq.errors import UserError
from titans_seq.data import resolve
from titans_seq.tasks.lm.niah import ESSAYS, Haystack, make_needle, make_sample, read_haystack, string_match_all
from titans_seq.tasks.lm.tokenizers import ByteTokenizer


def occurrences(sequence, part):
    return [i for i in range(len(sequence) - len(part) + 1) if sequence[i:i + len(part)] == part]


@pytest.mark.parametrize("kind", ["pk", "n", "w"])
@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_one_needle_at_the_requested_depth(kind, depth, shared_data):
    tokenizer, rng = ByteTokenizer(), random.Random(7)
    haystack = Haystack.for_kind(kind, tokenizer, shared_data("niah", "paul_graham_essays_concat.txt"))
    longest_sentence = max(len(s) for s in haystack.sentences)
    for length in (600, 2048):
        sample = make_sample(kind, length, depth, tokenizer, haystack, rng)
        needle_ids = tokenizer.encode(sample.needle.text)
        assert len(sample.ids) == length
        assert occurrences(sample.ids, needle_ids) == [sample.needle_start]
        start, end = sample.needle_start, sample.needle_start + len(needle_ids)
        assert sample.needle.answer not in tokenizer.decode(sample.ids[:start] + sample.ids[end:])
        budget = length - len(needle_ids) - len(tokenizer.encode(" " + sample.needle.question))
        assert abs(sample.needle_start - depth * budget) <= longest_sentence / 2 + 1
        assert tokenizer.decode(sample.ids).endswith(sample.needle.question)


def test_needles_differ_by_kind():
    rng = random.Random(0)
    pk, number, word = (make_needle(kind, rng) for kind in ("pk", "n", "w"))
    assert len(pk.answer) == 5 and pk.answer.isdigit() and "pass key" in pk.question
    assert len(number.answer) == 7 and number.answer.isdigit() and number.answer in number.text
    assert len(word.answer) == 36 and word.answer.count("-") == 4 and "uuid" in word.question


def test_bad_requests_are_user_errors(tmp_path):
    tokenizer, rng = ByteTokenizer(), random.Random(0)
    with pytest.raises(UserError, match="too short"):
        make_sample("pk", 50, 0.5, tokenizer, Haystack.for_kind("pk", tokenizer), rng)
    with pytest.raises(UserError, match="no such file"):
        Haystack.for_kind("n", tokenizer, tmp_path / "missing.txt")
    with pytest.raises(UserError, match="not one of"):
        make_needle("q", rng)


@pytest.mark.parametrize("prediction,references,score", [
    (" 71432. Remember it.", ["71432"], 1.0),
    ("the pass key is 7143", ["71432"], 0.0),
    ("ABC-def", ["abc-DEF"], 1.0),                 # case does not matter
    ("", ["1"], 0.0),
    ("1 and 2", ["1", "2", "3", "4"], 0.5),        # the fraction of references found
])
def test_string_match_all(prediction, references, score):
    assert string_match_all(prediction, references) == score


def test_the_essays_folder_reads_as_the_joined_file(shared_data, tmp_path):
    import tarfile

    with tarfile.open(shared_data("niah", "PaulGrahamEssays.tar.gz")) as archive:
        archive.extractall(tmp_path, filter="data")
    joined = shared_data("niah", "paul_graham_essays_concat.txt").read_text(encoding="utf-8")
    assert read_haystack(tmp_path / "PaulGrahamEssays") == joined


def test_the_default_haystack_is_the_essays_dataset_from_the_mirror(shared_data):
    assert resolve(ESSAYS) == shared_data("niah", "paul_graham_essays_concat.txt")   # the mirror's one file
    assert Haystack.for_kind("n", ByteTokenizer()).sentences                          # found by key
