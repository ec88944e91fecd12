"""A tiny trained language model checkpoint per variant, shared by the tests of one module."""
import pytest

from titans_seq.engine.config import load_recipe
from titans_seq.engine.trainer import train

TEXT = "".join(f"Line {i}: the cat sat on the mat, and the dog lay by the door.\n" for i in range(60))
TINY_MODEL = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.chunk_size=4", "model.segment_len=8",
              "model.window=8", "train.batch_size=4", "train.log_every=1", "train.eval_batches=2",
              "optim.warmup_steps=1"]


@pytest.fixture(scope="module")
def trained_lm(tmp_path_factory):
    """variant -> the best checkpoint of a 2-step byte-level LM run on a small text (seq_len 32)."""
    root = tmp_path_factory.mktemp("lm")
    (root / "corpus.txt").write_text(TEXT)
    checkpoints = {}

    def checkpoint(variant: str):
        if variant not in checkpoints:
            recipe = load_recipe("lm_tiny", [*TINY_MODEL, f"model.variant={variant}", "data.seq_len=32",
                                             f"data.path={root / 'corpus.txt'}", f"data.cache_dir={root / 'cache'}",
                                             "train.max_steps=2", f"run.out_dir={root / 'runs'}"])
            train(recipe)
            checkpoints[variant] = recipe.run_dir / "best"
        return checkpoints[variant]
    return checkpoint
