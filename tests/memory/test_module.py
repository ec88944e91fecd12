import pytest
import torch

from titans_seq.memory import NeuralMemory


def test_default_layer_is_stable_on_long_sequences():
    """With the default gates a fresh layer neither blows up nor forgets itself to zero over 4k tokens."""
    torch.manual_seed(0)
    layer = NeuralMemory(256, 4)
    with torch.no_grad():
        y, state = layer(torch.randn(1, 4096, 256))
    assert torch.isfinite(y).all()
    assert all(1e-3 < W.abs().max() < 10 for W in state.memory.weights)


def test_lr_max_defaults_to_the_inverse_chunk_size():
    assert NeuralMemory(32, 2, chunk_size=16).lr_max == 1 / 16
    assert NeuralMemory(32, 2, chunk_size=16, lr_max=0.3).lr_max == 0.3


def test_damped_momentum_keeps_the_memory_bounded_where_free_gates_diverge():
    """A 5-letter alphabet (DNA) repeats keys; learnt gates near theta = lr_max, momentum = 0.9 then diverge."""
    torch.manual_seed(0)
    letters = torch.randn(5, 64)
    x = letters[torch.randint(0, 5, (4, 512))] * 3

    def final_weights(damped: bool) -> float:
        torch.manual_seed(1)
        layer = NeuralMemory(64, 4, chunk_size=16, damped_momentum=damped)
        with torch.no_grad():     # gates the outer loop may learn: theta near lr_max, momentum 0.9
            layer.to_gates.bias.copy_(torch.tensor([4.0, 2.2, -6.9]).repeat_interleave(4))
            _, state = layer(x)
        return max(W.abs().max().item() for W in state.memory.weights)

    assert not final_weights(damped=False) < 1e3          # diverged (or not finite)
    assert final_weights(damped=True) < 10


def test_damped_momentum_scales_the_learning_rate_by_one_minus_momentum():
    x = torch.randn(2, 8, 32)
    free, damped = NeuralMemory(32, 2), NeuralMemory(32, 2, damped_momentum=True)
    damped.load_state_dict(free.state_dict())
    (lr_free, momentum, decay), (lr_damped, momentum_d, decay_d) = free.gates(x), damped.gates(x)
    assert torch.equal(momentum, momentum_d) and torch.equal(decay, decay_d)
    assert torch.allclose(lr_damped, lr_free * (1 - momentum)) and (lr_free <= free.lr_max).all()


def test_convolved_queries_are_forwards_queries_and_resume_from_their_cache():
    """queries(convolve=True) is the query third of forward's convolved projection, in one call or in pieces."""
    torch.manual_seed(0)
    layer = NeuralMemory(32, 2).double()
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    qkv, _ = layer.conv(layer.to_qkv(x))
    expected = torch.nn.functional.normalize(torch.nn.functional.silu(qkv[..., :32]).view(2, 11, 2, 16), dim=-1)
    q, cache = layer.queries(x, convolve=True)
    assert torch.allclose(q, expected)
    q1, cache1 = layer.queries(x[:, :4], convolve=True)
    q2, _ = layer.queries(x[:, 4:], cache1, convolve=True)
    assert torch.allclose(torch.cat((q1, q2), 1), q)
    bare, none = layer.queries(x)
    assert none is None and not torch.allclose(bare, q)


def test_decay_toward_init_keeps_the_initial_memory_where_decay_toward_zero_forgets_it():
    """With writes switched off (lr 0) and a strong decay, decay_target="init" leaves the learnt
    initial memory as it is, while the paper's decay toward zero wipes it out."""
    torch.manual_seed(0)
    x = torch.randn(1, 512, 32)

    def drift_and_init(target: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each layer's final weights less W_0, and W_0."""
        layer = NeuralMemory(32, 2, chunk_size=16, decay_target=target)
        with torch.no_grad():
            layer.to_gates.weight.zero_()
            layer.to_gates.bias.copy_(torch.tensor([-30.0, 0.0, -3.0]).repeat_interleave(2))   # decay 0.047
            _, state = layer(x)
        return [W[0] - W0 for W, W0 in zip(state.memory.weights, layer.weights)], list(layer.weights)

    kept, _ = drift_and_init("init")
    assert all(d.abs().max() < 1e-5 for d in kept)
    forgotten, init = drift_and_init("zero")
    assert all(torch.allclose(d, -W0, atol=1e-5) for d, W0 in zip(forgotten, init))


def test_decay_target_is_checked():
    with pytest.raises(ValueError, match="decay_target"):
        NeuralMemory(32, 2, decay_target="half")


def test_bounded_steps_reach_the_operator_and_stream_exactly():
    """bound_by_input_norm changes the layer's output (its hidden inputs pass norm 1) and, read in pieces
    through the state, gives the whole sequence's output."""
    torch.manual_seed(0)
    free = NeuralMemory(32, 2, chunk_size=4, lr_max=0.5).double()
    bounded = NeuralMemory(32, 2, chunk_size=4, lr_max=0.5, bound_by_input_norm=True).double()
    bounded.load_state_dict(free.state_dict())
    with torch.no_grad():
        for layer in (free, bounded):
            layer.weights[0].mul_(4.0)            # hidden activations of squared norm well above 1
    x = torch.randn(2, 19, 32, dtype=torch.float64)
    whole, _ = bounded(x)
    assert not torch.allclose(whole, free(x)[0], atol=1e-3)
    first, state = bounded(x[:, :6])
    second, _ = bounded(x[:, 6:], state)
    assert torch.allclose(torch.cat((first, second), 1), whole, atol=1e-12)
