"""Generation and streaming carry the Backbone state: the incremental path equals one parallel forward pass."""
import pytest
import torch

from titans_seq import TitansConfig
from titans_seq.tasks.language_model import LanguageModel
from titans_seq.errors import UserError
from titans_seq.tasks.lm.generation import (LoadedModel, check_fits, generate, read_in_pieces, sample_next,
                                            stream_metrics)
from titans_seq.tasks.lm.tokenizers import ByteTokenizer

VARIANTS = ["lmm", "mac", "mag", "mal", "swa", "transformer"]


def tiny_model(variant):
    torch.manual_seed(0)
    config = TitansConfig(variant=variant, d_model=16, n_layers=2, n_heads=2, chunk_size=4, segment_len=8,
                          window=6, n_persistent=2)
    return LanguageModel(257, config).double().eval()


@pytest.mark.parametrize("variant", VARIANTS)
def test_reading_in_pieces_equals_one_forward_pass(variant):
    model = tiny_model(variant)
    ids = torch.randint(0, 257, (2, 29))
    with torch.no_grad():
        full = model(ids)
        for piece in (1, 5, 12):
            pieces, _ = read_in_pieces(model, ids, piece)
            assert torch.allclose(pieces, full, rtol=0, atol=1e-10), piece


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_generation_with_state_equals_recomputing_the_whole_prefix(variant):
    model = tiny_model(variant)
    prompt = torch.randint(0, 257, (11,)).tolist()
    new = generate(model, prompt, max_new_tokens=14, temperature=0)
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(14):
            ids.append(model(torch.tensor([ids]))[0, -1].argmax().item())
    assert new == ids[len(prompt):]


def test_sampling_respects_top_k_top_p_and_the_seed():
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0]])
    draw = lambda **kw: {sample_next(logits, generator=torch.Generator().manual_seed(s), **kw).item()  # noqa: E731
                         for s in range(200)}
    assert draw(temperature=0) == {0}
    assert draw(top_k=2) == {0, 1}
    assert draw(top_p=0.5) == {0}                     # the first token alone holds more than half the mass
    assert draw(temperature=1.0) >= {0, 1, 2}
    same = [sample_next(logits, generator=torch.Generator().manual_seed(7)).item() for _ in range(2)]
    assert same[0] == same[1]


def loaded(variant, context=None):
    return LoadedModel(tiny_model(variant), ByteTokenizer(), recipe=None, context=context)


@pytest.mark.parametrize("variant", ["mac", "transformer"])
def test_streaming_a_text_matches_the_parallel_loss(variant):
    text = b"the quick brown fox jumps over the lazy dog; " * 3
    ids = [256, *text]
    with torch.no_grad():
        logits = tiny_model(variant)(torch.tensor([ids[:-1]]))
        expected = torch.nn.functional.cross_entropy(logits[0].float(), torch.tensor(ids[1:])).item()
    blocks = iter([torch.tensor(list(text[:50])).numpy(), torch.tensor(list(text[50:])).numpy()])
    metrics = stream_metrics(loaded(variant), blocks, piece=16)
    assert metrics["tokens"] == len(text)
    assert metrics["loss"] == pytest.approx(expected, rel=1e-6)


def test_a_fixed_length_model_reads_independent_windows():
    ids = [256, *b"abcdefghij" * 10]
    model = tiny_model("transformer")
    with torch.no_grad():                              # windows of 32 inputs, each read from an empty state
        nats = sum(torch.nn.functional.cross_entropy(model(torch.tensor([ids[a:min(a + 32, 100)]]))[0].float(),
                                                     torch.tensor(ids[a + 1:a + 33]), reduction="sum").item()
                   for a in range(0, 100, 32))
    metrics = stream_metrics(loaded("transformer", context=32), iter([torch.tensor(ids[1:]).numpy()]), piece=64)
    assert metrics["tokens"] == 100
    assert metrics["loss"] == pytest.approx(nats / 100, rel=1e-6)


def test_a_prompt_longer_than_a_fixed_length_model_allows_is_a_user_error():
    check_fits(loaded("transformer", context=64), 40, 24)
    with pytest.raises(UserError, match="exceeds the 64 tokens"):
        check_fits(loaded("transformer", context=64), 60, 10)
    check_fits(loaded("mac"), 10 ** 6, 10 ** 6)      # Titans variants carry a fixed-size state instead
