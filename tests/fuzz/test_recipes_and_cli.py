"""Random malformed recipes, overrides and command lines: exit 0, or exit 2 with one line; never a traceback.

The engine is stopped where a well-formed request would start building a model (``Trainer``), so
that an accidentally valid command line trains nothing.
"""
import contextlib
import io
import os

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from titans_seq.cli import main
from titans_seq.engine.config import load_recipe
from titans_seq.engine.trainer import Trainer

from .common import FUZZ, NASTY, TOKEN, one_line_or_success

SECTIONS = ["model", "task", "data", "optim", "train", "run", "eval", "extends"]
KEYS = ["variant", "d_model", "n_layers", "name", "max_steps", "lr", "betas", "seq_len", "path", "device",
        "strategy", "batch_size", "metric", "mode", "chunk_size", "segment_len", "n_train", *SECTIONS]
VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 10 ** 12), st.floats(), TOKEN,
                                st.sampled_from(["demo", "mac", "recall", "${model.d_model}", "${oops}", "???"])),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
                      max_leaves=8)
OVERRIDE_KEYS = st.builds(".".join, st.lists(st.sampled_from(KEYS), min_size=1, max_size=3))
OVERRIDES = st.one_of(st.builds(lambda k, v: f"{k}={v}", OVERRIDE_KEYS, TOKEN), NASTY,
                      st.sampled_from(["train.max_steps=1", "model.variant=mag", "=", "a=", "=b", "x==y"]))


class _WouldBuildAModel(Exception):
    pass


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("recipes")


@pytest.fixture(scope="module")
def no_models():
    def refuse(self, *args, **kwargs):
        raise _WouldBuildAModel
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "__init__", refuse)
        yield


@FUZZ
@given(document=st.one_of(st.dictionaries(st.sampled_from(SECTIONS), VALUES, max_size=5).map(yaml.safe_dump),
                          NASTY),
       overrides=st.lists(OVERRIDES, max_size=3))
def test_recipe_files_and_overrides(folder, document, overrides):
    path = folder / "recipe.yaml"
    path.write_text(document)
    one_line_or_success(lambda: load_recipe(str(path), overrides))
    one_line_or_success(lambda: load_recipe("demo", overrides))


COMMANDS = ["train", "eval", "bench", "demo", "forecast", "list", "generate", "niah", "babilong", "tokenizer",
            "lm-eval"]
OPTIONS = ["--resume", "--checkpoint", "--split", "--out", "--variants", "--seeds", "--name", "--data",
           "--horizon", "--lookback", "--target", "--time-col", "--variant", "--quantiles", "--steps",
           "--on-irregular", "--prompt", "--input-file", "--max-new-tokens", "--temperature", "--top-k", "--top-p",
           "--kinds", "--lengths", "--depths", "--samples", "--haystack", "--vocab-size", "--text-field", "--tasks",
           "--limit", "--device", "--num-fewshot"]
WORDS = st.one_of(st.sampled_from(OPTIONS), TOKEN, OVERRIDES, st.sampled_from(["demo", "lm_tiny", "cpu", "1K,2K", "."]))


@FUZZ
@given(argv=st.tuples(st.sampled_from(COMMANDS), st.lists(WORDS, max_size=6)).map(lambda t: [t[0], *t[1]]))
def test_command_lines(folder, no_models, argv):
    err, here = io.StringIO(), os.getcwd()
    os.chdir(folder)                  # relative paths (run folders, --out) land in the test's folder
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except _WouldBuildAModel:
        return
    finally:
        os.chdir(here)
    message = err.getvalue()
    assert code in (0, 2), (code, message)
    if code == 2:
        assert len(message.strip().splitlines()) == 1 and "Traceback" not in message, message
