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
