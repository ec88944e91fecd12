"""The write budget: coinciding keys share a chunk's budget, momentum counts in it, distinct keys keep their
steps, streaming is exact."""
import math

import pytest
import torch
import torch.nn.functional as F

from titans_seq.memory import NeuralMemory, neural_memory
from titans_seq.memory.write_budget import budgeted_lr


def test_coinciding_keys_share_the_budget_and_distinct_keys_keep_their_steps():
    n, theta, budget = 32, 0.1, 0.5
    same = F.normalize(torch.randn(1, 1, 1, 16), dim=-1).expand(1, n, 1, 16)
    lr = torch.full((1, n, 1), theta)
    scaled, _ = budgeted_lr(lr, torch.zeros_like(lr), same, budget, n, 0, None)
    assert scaled.sum() <= budget * (1 + math.log(n * theta / budget)) + 1e-6
    assert scaled[0, :5, 0].tolist() == pytest.approx([theta] * 5)        # within the budget: untouched
    assert scaled.sum() < 0.5 * n * theta
    orthogonal = torch.eye(n)[None, :, None, :]                          # no two keys overlap
    kept, _ = budgeted_lr(lr, torch.full_like(lr, 0.5), orthogonal, budget, n, 0, None)
    torch.testing.assert_close(kept, lr)


def test_momentum_counts_in_the_budget():
    """A write that momentum will re-apply 1 / (1 - eta) times spends that much of the budget."""
    n, theta, budget = 16, 0.05, 0.5
    same = F.normalize(torch.randn(1, 1, 1, 8), dim=-1).expand(1, n, 1, 8)
    lr = torch.full((1, n, 1), theta)
    plain, _ = budgeted_lr(lr, torch.zeros_like(lr), same, budget, n, 0, None)
    damped, _ = budgeted_lr(lr, torch.full_like(lr, 0.9), same, budget, n, 0, None)
    assert plain[0, :10, 0].tolist() == pytest.approx([theta] * 10)     # 10 * 0.05 = the budget
    assert damped[0, 0, 0] == pytest.approx(theta)                      # 0.05 / 0.1 = the budget at once
    assert damped[0, 1, 0] == pytest.approx(theta / 2) and damped[0, 2:, 0].max() < theta / 2
    assert (damped / 0.1).sum() <= budget * (1 + math.log(n * theta / 0.1 / budget)) + 1e-6


def test_a_budget_that_counts_momentum_keeps_repeated_keys_bounded():
    """Chunks of one repeated key, strong steps and momentum 0.9: the same budget spent on the raw
    steps alone lets momentum overshoot until the memory diverges; counted with momentum it stays bounded
    and still learns the key's value."""
    torch.manual_seed(0)
    B, T, H, D, n, budget = 1, 256, 1, 8, 16, 0.25
    k = F.normalize(torch.randn(B, 1, H, D), dim=-1).expand(B, T, H, D)
    v = torch.randn(B, 1, H, D).expand(B, T, H, D)
    lr, momentum, decay = torch.full((B, T, H), 0.5), torch.full((B, T, H), 0.9), torch.zeros(B, T, H)
    weights = [torch.randn(H, D, 4 * D) / D ** 0.5, torch.randn(H, 4 * D, D) / (4 * D) ** 0.5]

    def largest_weight_and_error(counted_momentum: torch.Tensor) -> tuple[float, float]:
        scaled, _ = budgeted_lr(lr, counted_momentum, k, budget, n, 0, None)
        y, state = neural_memory(k, k, v, scaled, momentum, decay, weights, chunk_size=n, backend="torch")
        return max(W.abs().max().item() for W in state.weights), (y[0, -1] - v[0, -1]).norm().item()

    assert not largest_weight_and_error(torch.zeros_like(momentum))[0] < 1e3   # diverged (or not finite)
    largest, error = largest_weight_and_error(momentum)
    assert largest < 10 and error < 0.1 * v[0, 0].norm()


def test_the_budget_starts_again_with_every_chunk():
    same = F.normalize(torch.ones(1, 1, 1, 8), dim=-1).expand(1, 16, 1, 8)
    scaled, _ = budgeted_lr(torch.full((1, 16, 1), 0.3), torch.zeros(1, 16, 1), same, 0.5, 8, 0, None)
    torch.testing.assert_close(scaled[:, :8], scaled[:, 8:])
    assert scaled[0, 0, 0] == pytest.approx(0.3) and scaled[0, 7, 0] < 0.1


def test_a_layer_with_a_budget_streams_exactly_and_stays_causal():
    torch.manual_seed(0)
    layer = NeuralMemory(32, 2, chunk_size=8, lr_max=0.5, chunk_budget=0.5).double()
    with torch.no_grad():   # strong momentum, so that the budget binds
        layer.to_gates.bias[2:4] = 2.0
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
