"""Random malformed JSONL and text corpora at the corpus reader and the token-shard writer."""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from titans_seq.tasks.lm.corpus import Corpus
from titans_seq.tasks.lm.shards import cached_shards
from titans_seq.tasks.lm.tokenizers import ByteTokenizer

from .common import FUZZ, NASTY, one_line_or_success

JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), NASTY),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(["text", "body", ""]), inner,
                                                                   max_size=3)), max_leaves=6)
LINES = st.one_of(JSON_VALUES.map(json.dumps), NASTY, st.just('{"text": "ok"}'), st.just(""))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("corpora")


@FUZZ
@given(lines=st.lists(LINES, max_size=6), junk=st.binary(max_size=8), suffix=st.sampled_from([".jsonl", ".txt"]),
       field=st.sampled_from(["text", "body"]))
def test_corpus_reader_and_shards(folder, lines, junk, suffix, field, ):
    path = folder / f"corpus{suffix}"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + junk)
    one_line_or_success(lambda: cached_shards(Corpus(str(path), field), ByteTokenizer(), folder / "cache"))
