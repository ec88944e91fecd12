"""lm-evaluation-harness support: the scorer against direct forward passes, and a harness task run end to end."""
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from titans_seq.cli import main
from titans_seq.tasks.lm.generation import generate
from titans_seq.tasks.lm.harness import HarnessScorer, generation_options, harness_model_class

from titans_seq.tasks.lm.tokenizers import ByteTokenizer

from .test_generation import loaded, tiny_model


def direct_loglikelihood(variant: str, context: bytes, continuation: bytes) -> tuple[float, bool]:
    """log p(continuation | EOS, context) from one parallel forward pass over the whole text."""
    ids = [256, *context, *continuation]
    with torch.no_grad():
        log_probs = F.log_softmax(tiny_model(variant)(torch.tensor([ids[:-1]]))[0], dim=-1)[-len(continuation):]
    target = torch.tensor(list(continuation))
    return log_probs.gather(-1, target[:, None]).sum().item(), bool((log_probs.argmax(-1) == target).all())


@pytest.mark.parametrize("variant", ["mac", "mag", "lmm", "transformer"])
def test_choices_read_from_one_context_state_score_as_whole_texts(variant):
    scorer = HarnessScorer(loaded(variant, context=64 if variant == "transformer" else None))
    context = "Question: where did the cat sit? Answer:"
    for choice in [" on the mat", " by the door", " x", " on the mat"]:     # the context's state is reused
        total, greedy = scorer.loglikelihood(context, choice)
        expected, expected_greedy = direct_loglikelihood(variant, context.encode(), choice.encode())
        assert total == pytest.approx(expected, rel=1e-9) and greedy == expected_greedy
    # a context's trailing space moves to the continuation; an empty continuation is certain
    assert scorer.loglikelihood(context + " ", "x")[0] == pytest.approx(direct_loglikelihood(
        variant, context.encode(), b" x")[0], rel=1e-9)
    assert scorer.loglikelihood(context, "") == (0.0, True)


def test_a_fixed_length_model_scores_the_last_window_of_a_long_context():
    scorer = HarnessScorer(loaded("transformer", context=16))
    context, choice = "a long context that does not fit in sixteen tokens", " yes"
    ids = [256, *context.encode(), *choice.encode()][-17:]
    with torch.no_grad():
        log_probs = F.log_softmax(tiny_model("transformer")(torch.tensor([ids[:-1]]))[0], dim=-1)[-4:]
    expected = log_probs.gather(-1, torch.tensor(list(choice.encode()))[:, None]).sum().item()
    assert scorer.loglikelihood(context, choice)[0] == pytest.approx(expected, rel=1e-9)


def test_rolling_loglikelihood_is_minus_the_summed_loss_of_the_text():
    text = "the quick brown fox jumps over the lazy dog"
    ids = [256, *text.encode()]
    with torch.no_grad():
        nats = F.cross_entropy(tiny_model("mac")(torch.tensor([ids[:-1]]))[0], torch.tensor(ids[1:]),
                               reduction="sum").item()
    assert HarnessScorer(loaded("mac")).loglikelihood_rolling(text) == pytest.approx(-nats, rel=1e-6)   # float32 sums


def test_generation_stops_at_the_first_until_string():
    scorer = HarnessScorer(loaded("mac"))
    free = scorer.generate_until("Q: 2+2? A:", until=[], max_tokens=12)
    assert free == ByteTokenizer().decode(generate(tiny_model("mac"), [256, *b"Q: 2+2? A:"], 12, temperature=0,
                                                   stop_id=256))
    marker = free[3:5]                     # a string greedy decoding is known to write
    cut = scorer.generate_until("Q: 2+2? A:", until=[marker], max_tokens=12)
    assert cut == free[:free.index(marker)]
    assert generation_options({"until": "\n\n", "max_gen_toks": 5, "do_sample": False, "temperature": 0.7}) == {
        "until": ["\n\n"], "max_tokens": 5, "temperature": 0.0, "top_k": 0, "top_p": 1.0}


def test_a_harness_task_runs_on_a_checkpoint(trained_lm, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    docs = [{"question": f"The cat sat on the {word}", "choices": [" mat.", " door."], "answer": i % 2}
            for i, word in enumerate(["mat", "rug", "bed", "box"])]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "cat_choice.yaml").write_text(f"""task: cat_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {tmp_path / 'docs.jsonl'}
  cache_dir: {tmp_path / 'hf_cache'}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
""")
    checkpoint, out = trained_lm("mag"), tmp_path / "results.json"
    args = ["lm-eval", "--checkpoint", str(checkpoint), "--tasks", "cat_choice", "--include-path",
            str(tmp_path / "tasks"), "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    assert "cat_choice" in capsys.readouterr().out
    acc = json.loads(out.read_text())["results"]["cat_choice"]["acc,none"]
    # the harness's accuracy is the share of documents whose answer our scorer likes best
    scorer = harness_model_class()(checkpoint=str(checkpoint), device="cpu").scorer
    best = [max(range(2), key=lambda c: scorer.loglikelihood(doc["question"], doc["choices"][c])[0]) for doc in docs]
    assert acc == pytest.approx(sum(b == doc["answer"] for b, doc in zip(best, docs)) / len(docs))

    assert main([*args[:3], "--tasks", "no_such_task"]) == 2
    assert capsys.readouterr().err.strip().endswith("unknown to lm-evaluation-harness: no_such_task "
                                                    "(local task YAMLs: --include-path DIR)")


def test_the_harness_model_answers_request_objects():
    model_class = harness_model_class()
    model = model_class.__new__(model_class)
    model.scorer = HarnessScorer(loaded("lmm"))
    requests = [SimpleNamespace(args=("Hello", " world")), SimpleNamespace(args=("Hello", " there"))]
    assert model.loglikelihood(requests) == [model.scorer.loglikelihood("Hello", " world"),
                                             model.scorer.loglikelihood("Hello", " there")]
    assert model.generate_until([SimpleNamespace(args=("Hi", {"until": ["\n"], "max_gen_toks": 4}))]) == [
        model.scorer.generate_until("Hi", ["\n"], 4)]
