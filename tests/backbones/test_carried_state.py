import pytest
import torch
import torch.nn.functional as F

from titans_seq import VARIANTS, TitansConfig
from titans_seq.tasks.language_model import CarriedStateLoss, LanguageModel, next_token_loss

VOCAB, T = 11, 13


def tiny_lm(variant):
    torch.manual_seed(0)
    config = TitansConfig(variant=variant, d_model=16, n_layers=2, n_heads=2, chunk_size=4, segment_len=8,
                          window=6, n_persistent=2)
    return LanguageModel(VOCAB, config).double()


def batches(count, size=2):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(VOCAB, (count, size, T + 1), generator=generator)
    return [(x[:, :-1], x[:, 1:]) for x in ids]


def loss_after(model, earlier, batch):
    """The loss of ``batch`` read right after the ``earlier`` batches, in one call."""
    inputs = torch.cat([*(x for x, _ in earlier), batch[0]], dim=1)
    logits = model(inputs)[:, -T:]
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[1].flatten())


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_carried_batch_continues_the_sequence_before_it(variant):
    model, data = tiny_lm(variant), batches(5)
    loss = CarriedStateLoss(batches=2)
    got = [loss(model, batch) for batch in data]
    # fresh, carried, carried, fresh (two in a row at most), carried
    expected = [loss_after(model, [], data[0]), loss_after(model, data[:1], data[1]),
                loss_after(model, data[:2], data[2]), loss_after(model, [], data[3]),
                loss_after(model, data[3:4], data[4])]
    for i, (a, b) in enumerate(zip(got, expected)):
        assert torch.allclose(a, b, rtol=1e-6, atol=0), i


def test_no_gradient_crosses_batches():
    model, data = tiny_lm("mac"), batches(2)
    loss = CarriedStateLoss(batches=4)
    loss(model, data[0]).backward()
    model.zero_grad()
    # had the state kept its graph, this would back-propagate into the freed graph of batch 0
    loss(model, data[1]).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    # the carried memory replaces the initial weights, which get no gradient from a carried batch
    assert all(g is None or not g.any() for name, g in grads.items() if name.endswith(("weights.0", "weights.1")))
    assert grads["embed.weight"].abs().sum() > 0


def test_a_batch_of_another_size_and_zero_batches_start_afresh():
    model = tiny_lm("lmm")
    first, smaller = batches(1)[0], batches(1, size=1)[0]
    loss = CarriedStateLoss(batches=3)
    loss(model, first)
    assert torch.allclose(loss(model, smaller), next_token_loss(model, smaller), rtol=1e-6, atol=0)
    plain = CarriedStateLoss(batches=0)
    plain(model, first)
    assert torch.equal(plain(model, smaller), next_token_loss(model, smaller))


def test_a_diverged_state_is_dropped():
    model, (first, second) = tiny_lm("mag"), batches(2)
    loss = CarriedStateLoss(batches=3)
    saved = model.embed.weight.data.clone()
    model.embed.weight.data[first[0][0, 0]] = float("inf")
    assert not torch.isfinite(loss(model, first))
    model.embed.weight.data.copy_(saved)
    assert torch.allclose(loss(model, second), next_token_loss(model, second), rtol=1e-6, atol=0)
