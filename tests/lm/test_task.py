"""The LM task: a tiny recipe trains end to end from the command line; bits per byte is nats over bytes."""
import json
import math

import pytest
import torch

from titans_seq.cli import main
from titans_seq.tasks.lm.task import lm_metrics, token_loss_sums

TINY_LM = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.chunk_size=4", "model.segment_len=8",
           "model.window=8", "data.seq_len=32", "data.val_fraction=0.001", "data.test_fraction=0.001",
           "train.batch_size=4", "train.log_every=1", "train.eval_batches=2", "optim.warmup_steps=2"]


def test_train_a_tiny_lm_recipe_on_tinyshakespeare(shared_data, tmp_path, capsys):
    corpus = shared_data("text", "tinyshakespeare.txt")
    assert main(["train", "lm_tiny", *TINY_LM, f"data.path={corpus}", f"data.cache_dir={tmp_path / 'cache'}",
                 "train.max_steps=3", f"run.out_dir={tmp_path}"]) == 0
    record = json.loads((tmp_path / "lm-tiny-mac" / "test_results.json").read_text())
    assert set(record["metrics"]) == {"loss", "perplexity", "bits_per_byte"}
    assert record["metrics"]["bits_per_byte"] == pytest.approx(record["metrics"]["loss"] / math.log(2), rel=1e-3)
    assert "lm (" in capsys.readouterr().out


@pytest.mark.parametrize("setup,override,message", [
    (lambda d: (d / "empty.txt").write_text(""), "data.path={d}/empty.txt", "the corpus is empty"),
    (lambda d: (d / "bad.json").write_text("{oops"), "task.tokenizer={d}/bad.json", "not a tokenizers JSON file"),
    (lambda d: None, "data.path={d}/missing", "no such file or folder"),
    (lambda d: None, "task.carry_state=-1", "task.carry_state=-1: give a number of batches"),
    (lambda d: None, "task.carry_state=3", "set data.reset_at_documents=false too"),
])
def test_bad_lm_inputs_are_one_line_and_exit_2(tmp_path, capsys, setup, override, message):
    setup(tmp_path)
    (tmp_path / "ok.txt").write_text("some text " * 200)
    assert main(["train", "lm_tiny", *TINY_LM, f"data.path={tmp_path}/ok.txt", override.format(d=tmp_path),
                 f"data.cache_dir={tmp_path / 'cache'}", "train.max_steps=1", f"run.out_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bits_per_byte_counts_the_bytes_each_target_stands_for():
    logits = torch.zeros(1, 4, 3)                               # uniform over 3 tokens: ln 3 nats each
    targets = torch.tensor([[0, 1, 2, 1]])
    token_bytes = torch.tensor([1, 2, 0])                       # token 2 (end of document) is no text
    nats, tokens, text_bytes = token_loss_sums(logits, targets, token_bytes)
    assert (tokens, text_bytes) == (4, 5) and nats == pytest.approx(4 * math.log(3))
    metrics = lm_metrics(nats, tokens, text_bytes)
    assert metrics["bits_per_byte"] == pytest.approx(4 * math.log(3) / (math.log(2) * 5))
    assert metrics["perplexity"] == pytest.approx(3.0)


@pytest.mark.parametrize("reset", [True, False])
def test_packed_documents_restart_at_every_end_of_document_token(tmp_path, reset):
    """A JSONL corpus packs documents into rows; with data.reset_at_documents (the default) a
    document's logits do not depend on the documents before it in its row."""
    from titans_seq.engine.config import load_recipe
    from titans_seq.engine.registry import get_task

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"d{i} " + "abcdefgh"[i % 8] * (2 + i % 5)}) + "\n"
                              for i in range(400)))
    recipe = load_recipe("lm_tiny", [*TINY_LM, "model.variant=mag", f"data.path={corpus}",
                                     f"data.cache_dir={tmp_path / 'cache'}", f"data.reset_at_documents={reset}",
                                     "data.val_fraction=0.05", "data.test_fraction=0.05"])
    task = get_task("lm")(recipe.task, recipe.data)
    torch.manual_seed(0)
    model = task.build_model(recipe.model.backbone()).eval()
    inputs, _ = task.datasets()["train"][3]
    eos = task.tokenizer.eos_id
    ends = (inputs == eos).nonzero().flatten().tolist()
    assert len(ends) >= 2, "the test needs a row holding a whole document"
    start, end = ends[0] + 1, ends[1] + 1                      # a whole document inside the row
    with torch.no_grad():
        packed = model(inputs[None])[0, start:end]
        alone = model(inputs[None, start:end])[0]
        assert torch.allclose(packed, alone, atol=1e-5) == reset
        state, pieces = None, []                        # read in pieces cut right after an end token
        for a, b in ((0, start), (start, end - 2), (end - 2, len(inputs))):
            logits, state = model(inputs[None, a:b], state=state, return_state=True)
            pieces.append(logits)
        assert torch.allclose(torch.cat(pieces, 1), model(inputs[None]), atol=1e-5)
