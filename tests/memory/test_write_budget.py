"""The write budget: coinciding keys share a chunk's budget, distinct keys keep their steps, streaming is exact."""
import math

import pytest
import torch
import torch.nn.functional as F

from titans_seq.memory import NeuralMemory
from titans_seq.memory.write_budget import budgeted_lr


def test_coinciding_keys_share_the_budget_and_distinct_keys_keep_their_steps():
    n, theta, budget = 32, 0.1, 0.5
    same = F.normalize(torch.randn(1, 1, 1, 16), dim=-1).expand(1, n, 1, 16)
    lr = torch.full((1, n, 1), theta)
    scaled, _ = budgeted_lr(lr, same, budget, n, 0, None)
    assert scaled.sum() <= budget * (1 + math.log(n * theta / budget)) + 1e-6
    assert scaled[0, :5, 0].tolist() == pytest.approx([theta] * 5)        # within the budget: untouched
    assert scaled.sum() < 0.5 * n * theta
    orthogonal = torch.eye(n)[None, :, None, :]                          # no two keys overlap
    kept, _ = budgeted_lr(lr, orthogonal, budget, n, 0, None)
    torch.testing.assert_close(kept, lr)


def test_the_budget_starts_again_with_every_chunk():
    same = F.normalize(torch.ones(1, 1, 1, 8), dim=-1).expand(1, 16, 1, 8)
    scaled, _ = budgeted_lr(torch.full((1, 16, 1), 0.3), same, 0.5, 8, 0, None)
    torch.testing.assert_close(scaled[:, :8], scaled[:, 8:])
    assert scaled[0, 0, 0] == pytest.approx(0.3) and scaled[0, 7, 0] < 0.1


def test_a_layer_with_a_budget_streams_exactly_and_stays_causal():
    torch.manual_seed(0)
    layer = NeuralMemory(32, 2, chunk_size=8, lr_max=0.5, chunk_budget=0.5).double()
    x = torch.randn(2, 29, 32, dtype=torch.float64)
    with torch.no_grad():
        y, _ = layer(x)
        for cuts in ([3, 11, 20], [8, 16, 24], [*range(1, 29)]):
            state, ys = None, []
            for a, b in zip([0, *cuts], [*cuts, 29]):
                out, state = layer(x[:, a:b], state)
                ys.append(out)
            torch.testing.assert_close(torch.cat(ys, 1), y, rtol=0, atol=1e-10)
        bumped = x.clone()
        bumped[:, 13] += 1.0
        torch.testing.assert_close(layer(bumped)[0][:, :13], y[:, :13], rtol=0, atol=0)
    unbounded = NeuralMemory(32, 2, chunk_size=8, lr_max=0.5).double()
    unbounded.load_state_dict(layer.state_dict())
    with torch.no_grad():
        assert not torch.allclose(unbounded(x)[0], y)                   # the budget did act
