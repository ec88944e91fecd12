"""A bidirectional backbone against a reference that reverses each sequence by hand."""
import pytest
import torch

from titans_seq import VARIANTS, Backbone
from titans_seq.backbones.documents import Documents
from titans_seq.engine.config import load_recipe

from .test_backbone import small_model


def reference(model: Backbone, x: torch.Tensor) -> torch.Tensor:
    """Each block's mixer on the rows and on the rows flipped, averaged: one unpadded batch."""
    for block in model.blocks:
        h = block.mixer_norm(x)
        forward, _ = block.mixer(h, None)
        backward, _ = block.mixer(h.flip(1), None)
        x = x + (forward + backward.flip(1)) / 2
        x = x + block.mlp(block.mlp_norm(x))
    return model.norm(x)


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_the_reference_outputs_and_gradients(variant):
    x = torch.randn(2, 19, 32, dtype=torch.float64, requires_grad=True)
    model = small_model(variant, bidirectional=True)
    weights = torch.randn(2, 19, 32, dtype=torch.float64)
    (model(x) * weights).sum().backward()
    fast = [x.grad.clone(), *(p.grad.clone() for p in model.parameters())]
    x.grad = None
    model.zero_grad()
    (reference(model, x) * weights).sum().backward()
    slow = [x.grad, *(p.grad for p in model.parameters())]
    assert torch.allclose(model(x), reference(model, x), rtol=0, atol=1e-10)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("variant", ["lmm", "mac", "mag"])
def test_right_padding_changes_no_real_position(variant):
    """Rows of 19, 11 and 4 real tokens, padded with noise to 19: each row's real positions read as
    the row alone does, and no gradient reaches the padding."""
    model = small_model(variant, bidirectional=True)
    lengths = torch.tensor([19, 11, 4])
    x = torch.randn(3, 19, 32, dtype=torch.float64, requires_grad=True)
    y = model(x, lengths=lengths)
    real = torch.arange(19) < lengths.unsqueeze(1)
    y[real].square().sum().backward()
    assert torch.equal(x.grad[~real], torch.zeros_like(x.grad[~real]))
    with torch.no_grad():
        for row, n in enumerate(lengths.tolist()):
            alone = model(x[row:row + 1, :n])
            assert torch.allclose(y[row, :n], alone[0], rtol=0, atol=1e-10), row


def test_reads_ahead_where_a_causal_backbone_does_not():
    x = torch.randn(1, 16, 32, dtype=torch.float64)
    bumped = x.clone()
    bumped[:, -1] += 1.0
    with torch.no_grad():
        for bidirectional in (False, True):
            model = small_model("lmm", bidirectional=bidirectional)
            first_moves = not torch.equal(model(x)[:, 0], model(bumped)[:, 0])
            assert first_moves == bidirectional


@pytest.mark.parametrize("call", [dict(state=[None, None]), dict(return_state=True),
                                  dict(documents=Documents(torch.arange(16).unsqueeze(0) % 8 == 0))])
def test_refuses_a_state_and_packed_documents(call):
    model = small_model("lmm", bidirectional=True)
    with pytest.raises(ValueError, match="reads whole sequences"):
        model(torch.randn(1, 16, 32, dtype=torch.float64), **call)


def test_recipes_allow_it_where_nothing_predicted_lies_ahead():
    assert load_recipe("dna_mac", ["model.bidirectional=true"]).model.bidirectional
    assert load_recipe("forecast", ["model.bidirectional=true"]).model.bidirectional
