"""The hand-written chunk backward (chunked_function.py) against autograd through chunked.py."""
import pytest
import torch

from titans_seq.memory import MemoryState
from titans_seq.memory.chunked import chunked_neural_memory

from .test_operator import DEPTH_DIMS, make_inputs, rel_err


def run(tensors, n_layers, autograd, state=None, **kw):
    q, k, v, lr, momentum, decay = tensors[:6]
    return chunked_neural_memory(q, k, v, lr, momentum, decay, tensors[6:6 + n_layers], state=state,
                                 autograd=autograd, **kw)


def outputs(y, state):
    return [y, *state.weights, *state.surprise, *state.chunk_weights]


def cotangents(tensors, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in tensors]


def gradients(fn, inputs):
    """fn's outputs and the gradients of a random projection of all of them w.r.t. ``inputs``."""
    outs = fn()
    loss = sum((o * c).sum() for o, c in zip(outs, cotangents(outs)))
    return outs, torch.autograd.grad(loss, inputs, allow_unused=True)


def assert_match(fn, inputs, tol=1e-10):
    """fn(autograd) for both paths: every output and every gradient agree to ``tol``."""
    fused, fused_grads = gradients(lambda: fn(False), inputs)
    ref, ref_grads = gradients(lambda: fn(True), inputs)
    for a, b in zip(fused, ref):
        assert rel_err(a, b) <= tol
    for i, (a, b) in enumerate(zip(fused_grads, ref_grads)):
        if a is None or b is None:   # an input that no output depends on (the Function returns zeros)
            assert all(g is None or not g.any() for g in (a, b))
            continue
        assert rel_err(a, b) <= tol, f"gradient of input {i}: {rel_err(a, b):.2e}"


def leaf_state(state: MemoryState) -> MemoryState:
    leaf = lambda ts: [t.detach().clone().requires_grad_() for t in ts]  # noqa: E731
    return MemoryState(leaf(state.weights), leaf(state.surprise), leaf(state.chunk_weights),
                       state.position, state.chunk_size)


def state_tensors(state):
    return [*state.weights, *state.surprise, *state.chunk_weights]


@pytest.mark.parametrize("backend, hand_written", [("torch", False), ("torch_recompute", True)])
def test_the_torch_recompute_backend_takes_the_hand_written_backward(backend, hand_written):
    from titans_seq.memory import neural_memory

    B, T, H, D = 1, 9, 1, 4
    q, k, v = (torch.randn(B, T, H, D, requires_grad=True) for _ in range(3))
    gates = [torch.rand(B, T, H) for _ in range(3)]
    weights = [torch.randn(H, D, D, requires_grad=True)]
    y, _ = neural_memory(q, k, v, *gates, weights, chunk_size=4, activation="silu", backend=backend)
    assert ("ChunkSweepBackward" in graph_names(y)) == hand_written


def graph_names(y):
    seen, stack = set(), [y.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack += [f for f, _ in node.next_functions]
    return {type(node).__name__ for node in seen}


def test_training_takes_the_hand_written_backward():
    tensors, n = make_inputs(T=9, requires_grad=True)
    y, _ = run(tensors, n, autograd=False, chunk_size=4)
    names = graph_names(y)
    assert "ChunkSweepBackward" in names and "CumprodBackward0" not in names


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activation", ["silu", "gelu", "relu"])
@pytest.mark.parametrize("T, chunk_size", [(21, 4), (16, 8), (5, 8), (13, 1)])
def test_matches_autograd_from_the_initial_weights(depth, activation, T, chunk_size):
    tensors, n = make_inputs(T=T, dims=DEPTH_DIMS[depth], seed=10 * depth + T, requires_grad=True)
    assert_match(lambda autograd: outputs(*run(tensors, n, autograd, chunk_size=chunk_size, activation=activation)),
                 tensors)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("first, second", [(6, 15), (5, 2), (8, 11), (3, 1)])
def test_matches_autograd_with_a_carried_state(depth, first, second):
    """The second call resumes a chunk part-way (first % 4 != 0), or starts on a boundary."""
    dims = DEPTH_DIMS[depth]
    earlier, n = make_inputs(T=first, dims=dims, seed=depth)
    with torch.no_grad():
        _, state = run(earlier, n, autograd=True, chunk_size=4)
    state = leaf_state(state)
    tensors, _ = make_inputs(T=second, dims=dims, seed=depth + 50, requires_grad=True)
    inputs = [*tensors[:6], *state_tensors(state)]
    assert_match(lambda autograd: outputs(*run(tensors, n, autograd, state=state, chunk_size=4)), inputs)


@pytest.mark.parametrize("depth", [1, 2])
def test_matches_autograd_through_two_calls(depth):
    """Gradients flow from the second call back through the state into the first one's inputs."""
    tensors, n = make_inputs(T=10, dims=DEPTH_DIMS[depth], seed=depth, requires_grad=True)
    more, _ = make_inputs(T=9, dims=DEPTH_DIMS[depth], seed=depth + 7, requires_grad=True)

    def two_calls(autograd):
        _, state = run(tensors, n, autograd, chunk_size=4)
        return outputs(*run(more, n, autograd, state=state, chunk_size=4))

    assert_match(two_calls, tensors + more[:6])


def test_gates_at_exactly_zero_and_one():
    tensors, n = make_inputs(T=16, dims=DEPTH_DIMS[2], seed=4)
    lr, momentum, decay = tensors[3:6]
    momentum[0, 2] = 0.0
    momentum[1, 5] = 1.0
    decay[0, 6] = 1.0
    decay[1, 9] = 0.0
    lr[0, 3] = 0.0
    for t in tensors:
        t.requires_grad_()
    assert_match(lambda autograd: outputs(*run(tensors, n, autograd, chunk_size=8)), tensors)


def test_float32_matches_autograd():
    tensors, n = make_inputs(T=40, dims=(8, 32, 8), seed=5, dtype=torch.float32, requires_grad=True)
    assert_match(lambda autograd: outputs(*run(tensors, n, autograd, chunk_size=16)), tensors, tol=1e-5)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gradcheck(depth):
    dims = DEPTH_DIMS[depth]
    earlier, n = make_inputs(B=1, T=3, H=1, dims=dims, seed=depth)
    with torch.no_grad():
        _, state = run(earlier, n, autograd=True, chunk_size=2)
    state = leaf_state(state)
    tensors, _ = make_inputs(B=1, T=4, H=1, dims=dims, seed=depth + 3, requires_grad=True)
    L = len(state.weights)

    def fn(*inputs):
        carried = MemoryState(list(inputs[6:6 + L]), list(inputs[6 + L:6 + 2 * L]), list(inputs[6 + 2 * L:]),
                              state.position, state.chunk_size)
        y, final = run(list(inputs[:6]) + tensors[6:], n, False, state=carried, chunk_size=2)
        return (y, *final.weights, *final.surprise)

    assert torch.autograd.gradcheck(fn, (*tensors[:6], *state_tensors(state)), fast_mode=True)


def mixed_norm_keys(tensors, seed):
    """Keys scaled to norms from 0.5 to 2: the bound by input norm is active on some tokens, not others."""
    g = torch.Generator().manual_seed(seed)
    k = tensors[1]
    with torch.no_grad():
        k.mul_(0.5 + 1.5 * torch.rand(k.shape[:-1], generator=g, dtype=k.dtype).unsqueeze(-1))
    return tensors


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activation", ["silu", "gelu"])
@pytest.mark.parametrize("T, chunk_size", [(21, 4), (5, 8)])
def test_steps_bounded_by_input_norm_match_autograd(depth, activation, T, chunk_size):
    tensors, n = make_inputs(T=T, dims=DEPTH_DIMS[depth], seed=3 * depth + T, requires_grad=True)
    tensors = mixed_norm_keys(tensors, seed=depth)
    norms = tensors[1].detach().norm(dim=-1)
    assert (norms > 1).any() and (norms < 1).any()
    assert_match(lambda autograd: outputs(*run(tensors, n, autograd, chunk_size=chunk_size, activation=activation,
                                               bound_by_input_norm=True)), tensors)


@pytest.mark.parametrize("depth", [1, 2])
def test_steps_bounded_by_input_norm_match_autograd_with_a_carried_state(depth):
    dims = DEPTH_DIMS[depth]
    earlier, n = make_inputs(T=6, dims=dims, seed=depth)
    with torch.no_grad():
        _, state = run(earlier, n, autograd=True, chunk_size=4, bound_by_input_norm=True)
    state = leaf_state(state)
    tensors, _ = make_inputs(T=11, dims=dims, seed=depth + 50, requires_grad=True)
    tensors = mixed_norm_keys(tensors, seed=depth + 1)
    inputs = [*tensors[:6], *state_tensors(state)]
    assert_match(lambda autograd: outputs(*run(tensors, n, autograd, state=state, chunk_size=4,
                                               bound_by_input_norm=True)), inputs)
